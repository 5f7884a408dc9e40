"""Vectorised image kernels for augmentation: warps, stroke width, blur and noise.

Each function works on a whole stack at once, ``(N, 28, 28)`` digit glyphs or ``(B, 28, W)``
samples, with per-item parameters as arrays: there is no Python loop over digits, samples or
pixels (the only loops run over a handful of filter steps); each step is a few long passes
over contiguous arrays (glyphs laid end to end) rather than many short strided ones, and no
matrix product is large enough for a BLAS to start threads. Numpy only; nothing touches a
file, and the only random numbers not drawn from an ``rng`` argument are the elastic planes',
from a fixed seed.

- :func:`transform`: the per-digit step of augmentation (stroke width, warp, ink boxes), chunk
  by chunk; :mod:`~seqbuilder.image.compiled` has a compiled twin giving the same bytes.
- :func:`warp_glyphs`: one inverse mapping and bilinear sampling pass, from per-glyph affine
  maps and displacement fields, for every glyph of a block.
- :func:`elastic_planes`: the periodic planes of Gaussian-smoothed noise that each digit's
  elastic field is a window of (computed once per ``sigma`` and ``alpha``).
- :func:`change_stroke_width`: grey dilation (or erosion) with fractional, per-glyph radius.
- :func:`blur_bands`, :func:`apply_blur`: a Gaussian blur of per-sample sigma, as batched
  matrix products, horizontal then vertical (:func:`blur_samples` does both).
- :func:`normal_noise`: Gaussian noise from a 16-bit quantile table (a few times faster than
  ``Generator.standard_normal``, and as Gaussian as a uint8 image can tell).
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ..mnist.load import find_ink_boxes

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]

GLYPH = 28  # MNIST glyphs are GLYPH x GLYPH
CENTER = (GLYPH - 1) / 2  # the pixel-centre coordinate of the middle of a glyph
PLANE = 512  # side of the periodic noise plane elastic fields are cut from
_PLANE_SEED = 20030803  # fixes the plane, so a field depends only on its sigma and offset
BLUR_TILE = 16  # columns per matrix product of the horizontal blur
_NOISE_LEVELS = 1 << 16  # quantiles of the noise table: one uint16 draw per pixel


class GlyphPlan(NamedTuple):
    """What the per-digit step does to the ``N`` glyphs of a block that hold a digit."""

    change: FloatArray | None  # (N,) stroke-width changes (change_stroke_width), or None
    inverse: FloatArray | None  # (N, 2, 2) inverse linear maps (warp_glyphs), or None: no warp
    shift: FloatArray  # (N, 2) (x, y) translations, output pixels
    field: npt.NDArray[np.int16] | None  # elastic_planes' planes, or None: no elastic field
    offsets: npt.NDArray[np.intp]  # (N, 2) each glyph's window in the planes


CHUNK_GLYPHS = 256  # glyphs transform() handles at once


def transform(
    source: ByteArray, slots: npt.NDArray[np.intp], plan: GlyphPlan
) -> tuple[ByteArray, npt.NDArray[np.int16]]:
    """Change the stroke width of the glyphs at ``slots``, warp them, and find their ink boxes.

    :data:`CHUNK_GLYPHS` glyphs at a time: the temporaries of a chunk stay in the CPU's cache
    (about 3x faster than whole-block arrays); each step is vectorised over the chunk.

    Args:
        source: ``(M, 28, 28) uint8`` every glyph slot of a block.
        slots: ``(N,)`` the slots that hold a digit; the others come out blank.
        plan: what to do to each of the ``N`` glyphs.

    Returns:
        ``(glyphs, boxes)``: ``(M, 28, 28) uint8`` and ``(M, 4) int16`` ``x0, y0, x1, y1`` of
        each glyph's ink (``0, 0, 0, 0`` where none is, and for the slots not chosen).
    """
    change, inverse, shift, field, offsets = plan
    out = np.zeros_like(source)
    boxes = np.zeros((len(source), 4), np.int16)
    for start in range(0, len(slots), CHUNK_GLYPHS):
        part = slice(start, start + CHUNK_GLYPHS)
        chosen = source[slots[part]]
        if change is not None:
            chosen = change_stroke_width(chosen, change[part])
        if inverse is not None:
            chosen = warp_glyphs(chosen, inverse[part], shift[part], field, offsets[part])
        out[slots[part]] = chosen
        boxes[slots[part]] = find_ink_boxes(chosen)
    return out, boxes


def warp_glyphs(
    glyphs: ByteArray,
    inverse: FloatArray,
    shift: FloatArray,
    field: npt.NDArray[np.int16] | None = None,
    offsets: npt.NDArray[np.intp] | None = None,
) -> ByteArray:
    """Resample every glyph through its own map, in one bilinear pass.

    Output pixel ``q`` (``(x, y)`` about the glyph centre, less ``shift``) reads the source at
    ``inverse @ q + centre + field(q)``; a source position outside the glyph reads 0. The
    affine part is computed separably for all glyphs at once (:func:`_affine_coordinates`);
    the sampling is fixed point (1/256 pixel, :data:`FRACTION`), so the interpolation runs in
    small integers, within one grey level of an exact bilinear interpolation.

    Args:
        glyphs: ``(N, 28, 28) uint8`` source glyphs.
        inverse: ``(N, 2, 2)`` inverse linear maps, acting on ``(x, y)`` column vectors.
        shift: ``(N, 2)`` ``(x, y)`` translation of each glyph, in output pixels.
        field: from :func:`elastic_planes`, or None for no elastic field.
        offsets: ``(N, 2)`` the (row, column) of each glyph's field window in the planes.

    Returns:
        ``(N, 28, 28) uint8``.

    Raises:
        ValueError: more than :data:`MAX_WARP_GLYPHS` glyphs at once (pixel indices are int32;
            :func:`transform` passes a few hundred at a time).
    """
    n = len(glyphs)
    if n > MAX_WARP_GLYPHS:
        raise ValueError(f"warp_glyphs takes at most {MAX_WARP_GLYPHS} glyphs at once, got {n}")
    coordinates = _affine_coordinates(inverse, shift)  # (N, 2, 784) float32, 1/256 pixel
    if field is not None and offsets is not None:
        coordinates += _windows(field, offsets).transpose(1, 0, 2)
    # Clipped to [0, 29] pixels, anything beyond the glyph reads its zero padding; every
    # coordinate is then >= 0, so truncating it (after the affine map's + 1/2) rounds it.
    np.clip(coordinates, 0, (GLYPH + 1) * FRACTION, out=coordinates)
    fixed = coordinates.astype(np.int32)
    whole = fixed >> _BITS
    index = whole[:, 1] * np.int32(_SIDE)
    index += whole[:, 0]
    index += np.arange(0, n * _SIDE * _SIDE, _SIDE * _SIDE, dtype=np.int32)[:, None]
    fractions = fixed.view(np.uint32)
    fractions &= np.uint32(FRACTION - 1)
    packed = np.take(_neighbourhoods(glyphs), index)  # (N, 784) uint32: tl, tr, bl, br
    return _interpolate(packed, fractions[:, 0], fractions[:, 1]).reshape(n, GLYPH, GLYPH)


FRACTION = 256  # fixed-point steps per pixel of the warp
_BITS = 8  # log2(FRACTION)
_SIDE = GLYPH + 3  # padded glyph: one zero row/column before, two after
MAX_WARP_GLYPHS = (2**31 - 1) // (_SIDE * _SIDE)  # every padded pixel's index stays int32


def affine_maps(inverse: FloatArray, shift: FloatArray) -> FloatArray:
    """``(N, 2, 3) float32``: each glyph's map from an output pixel ``(x, y, 1)`` to its source.

    In 1/:data:`FRACTION` pixel of the padded glyph (one zero pixel before it), plus half a step
    (so truncating a non-negative position rounds it). Shared with the compiled warp.
    """
    inv = np.asarray(inverse, np.float64)
    centre = CENTER + np.asarray(shift, np.float64)  # (N, 2) the output's centre, less shift
    maps = np.empty((len(inv), 2, 3), np.float32)
    maps[:, :, :2] = inv * FRACTION
    # source = inv @ (pixel - centre) + CENTER + 1: the padding adds one pixel before the glyph
    maps[:, :, 2] = (CENTER + 1 - np.einsum("nij,nj->ni", inv, centre)) * FRACTION + 0.5
    return maps


def _affine_coordinates(inverse: FloatArray, shift: FloatArray) -> FloatArray:
    """``(N, 2, 784) float32`` each output pixel's source ``(x, y)``, from :func:`affine_maps`.

    Separable: ``(m1 * row + m2) + m0 * column``, float32 products and sums in that order.
    Each is one correctly rounded IEEE operation, so every machine (and the compiled warp, which
    does the same per pixel) gets the same bits; a matrix product would leave the order and
    fused multiply-adds to the BLAS of the machine.
    """
    maps = affine_maps(inverse, shift)
    steps = np.arange(GLYPH, dtype=np.float32)
    along_rows = maps[:, :, 1, None] * steps  # (N, 2, 28)
    along_rows += maps[:, :, 2, None]
    along_columns = maps[:, :, 0, None] * steps
    coordinates: FloatArray = along_rows[:, :, :, None] + along_columns[:, :, None, :]
    return coordinates.reshape(len(maps), 2, GLYPH * GLYPH)


def _neighbourhoods(glyphs: ByteArray) -> npt.NDArray[np.uint32]:
    """``(N * 31 * 31,)`` each padded pixel's 2x2 neighbourhood packed into one uint32.

    Byte order (little end first): top-left, top-right, bottom-left, bottom-right; so a single
    gather fetches all four neighbours of a sampling position. The glyphs are padded, then
    laid end to end, so each step is one pass over a flat array.
    """
    size = len(glyphs) * _SIDE * _SIDE
    padded = np.zeros(size + _SIDE + 1, np.uint32)
    padded[:size].reshape(-1, _SIDE, _SIDE)[:, 1 : GLYPH + 1, 1 : GLYPH + 1] = glyphs
    pairs = padded[1:] << np.uint32(8)
    pairs |= padded[:-1]  # left | right << 8
    quads = pairs[_SIDE : _SIDE + size] << np.uint32(16)
    quads |= pairs[:size]  # top pair | bottom pair << 16
    return quads


def _interpolate(
    packed: npt.NDArray[np.uint32], fx: npt.NDArray[np.uint32], fy: npt.NDArray[np.uint32]
) -> ByteArray:
    """Bilinear values from packed neighbourhoods and fixed-point fractions (same shapes).

    Two 16-bit lanes interpolate the top (tl, tr) and bottom (bl, br) pairs at once.
    """
    left = packed & np.uint32(0x00FF00FF)
    packed >>= 8
    packed &= np.uint32(0x00FF00FF)
    packed *= fx
    left *= np.uint32(FRACTION) - fx
    left += packed  # lanes: top and bottom edges, times FRACTION
    top = left & np.uint32(0xFFFF)
    left >>= 16
    left *= fy
    top *= np.uint32(FRACTION) - fy
    left += top
    left += np.uint32(FRACTION * FRACTION // 2)  # round half up
    left >>= 2 * _BITS
    return left.astype(np.uint8)


def _windows(planes: npt.NDArray[np.int16], offsets: npt.NDArray[np.intp]) -> npt.NDArray[np.int16]:
    """``(2, N, 784)`` copies of both planes' windows at each (row, column) offset."""
    windows = np.lib.stride_tricks.sliding_window_view(planes, (GLYPH, GLYPH), axis=(1, 2))
    picked: npt.NDArray[np.int16] = windows[:, offsets[:, 0], offsets[:, 1]]
    return picked.reshape(2, len(offsets), GLYPH * GLYPH)


@lru_cache(maxsize=4)
def elastic_planes(sigma: float, alpha: float) -> npt.NDArray[np.int16]:
    """Two periodic planes of displacement that each digit's elastic field is a window of.

    Each is ``PLANE x PLANE`` uniform noise on ``[-1, 1]`` smoothed by a unit-sum Gaussian of
    ``sigma`` pixels (periodically, by a product in the Fourier domain, so every window is
    alike) and scaled by ``alpha``: Simard et al.'s (2003) field, drawn by where its 28 x 28
    window sits (one uniform row and column per digit). Wrapped by 28 rows and columns, so
    any window is a plain slice; computed once per ``(sigma, alpha)`` and process. The noise
    comes from a fixed seed, so a field depends only on its keys and window.

    Returns:
        ``(2, PLANE + 28, PLANE + 28) int16``: ``dx`` and ``dy`` in 1/256 pixel.
    """
    noise = np.random.default_rng(_PLANE_SEED).uniform(-1, 1, (2, PLANE, PLANE))
    frequency = np.fft.fftfreq(PLANE)
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * frequency**2)  # a unit-sum Gaussian
    spectrum = np.fft.fft2(noise) * transfer[:, None] * transfer[None, :]
    smooth = np.fft.ifft2(spectrum).real * (alpha * FRACTION)
    # int16 halves the memory the random windows are read from (the warp's costliest read);
    # beyond +-100 pixels (only reached with a tiny sigma and a huge alpha) every displacement
    # leaves the glyph anyway.
    fixed = np.clip(np.rint(smooth), -100 * FRACTION, 100 * FRACTION).astype(np.int16)
    wrapped = np.pad(fixed, ((0, 0), (0, GLYPH), (0, GLYPH)), "wrap")
    wrapped.flags.writeable = False
    return wrapped


def change_stroke_width(glyphs: ByteArray, change: FloatArray) -> ByteArray:
    """Thicken (``change > 0``) or thin (``< 0``) the strokes of each glyph by ``change`` pixels.

    A stroke widens by 2 pixels per step of a 3x3 cross grey dilation; thinning is the same
    dilation of the inverted glyph (an erosion). A fractional change blends the two nearest
    steps (in 1/256 steps, integer arithmetic), so the width varies continuously. Beyond the
    glyph's edge counts as no ink for a dilation and as ink for an erosion.

    Args:
        glyphs: ``(N, 28, 28) uint8``.
        change: ``(N,)`` stroke-width change in pixels.

    Returns:
        ``(N, 28, 28) uint8``.
    """
    n = len(glyphs)
    flip, weights = stroke_steps(change)
    flip = flip[:, None, None]
    # Each glyph inside a ring of zeros, the glyphs end to end: a neighbour is then a flat
    # shift by 1 or by a row, one pass over the whole chunk, and the ring stops each dilation.
    padded = np.zeros((n, _RING, _RING), np.uint8)
    np.bitwise_xor(glyphs, flip, out=padded[:, 1:-1, 1:-1])
    previous = padded.reshape(n, -1)
    values = previous.astype(np.uint16)
    for step in range(weights.shape[1]):
        current = _dilate(previous)
        # current >= previous; the difference times a weight <= 256 fits uint16, and so does
        # the sum, which stays within [previous, current] once divided by 256.
        moved = np.multiply(current - previous, weights[:, step, None], dtype=np.uint16)
        moved += np.uint16(128)
        moved >>= 8
        values += moved
        previous = current
    result = values.reshape(n, _RING, _RING)[:, 1:-1, 1:-1].astype(np.uint8)
    result ^= flip
    return result


def stroke_steps(change: FloatArray) -> tuple[ByteArray, npt.NDArray[np.uint16]]:
    """The plan of :func:`change_stroke_width`, shared with the compiled one.

    Returns:
        ``(flip, weights)``: ``(N,)`` 255 where the glyph is thinned (its inverse is dilated:
        ``255 - x`` is ``x ^ 255`` for bytes), else 0; and ``(N, steps)`` each dilation step's
        weight in 1/256 (256: the whole step; 0 from a glyph's last step on).
    """
    radius = np.abs(np.asarray(change, np.float32)) / 2
    flip = np.where(np.asarray(change) < 0, np.uint8(255), np.uint8(0))
    steps = np.arange(int(np.ceil(radius.max(initial=0))), dtype=np.float32)
    weights = np.rint(np.clip(radius[:, None] - steps, 0, 1) * 256).astype(np.uint16)
    return flip, weights


_RING = GLYPH + 2  # a glyph and its ring of zeros


def _dilate(flat: ByteArray) -> ByteArray:
    """Grey dilation by a 3x3 cross of ``(N, 30 * 30)`` ringed glyphs; the new ring is zero.

    Each pixel's maximum with its 4 neighbours, as flat shifts over the whole chunk.
    """
    source = flat.reshape(-1)
    out = source.copy()
    for step in (1, _RING):
        np.maximum(out[step:], source[:-step], out=out[step:])
        np.maximum(out[:-step], source[step:], out=out[:-step])
    ringed = out.reshape(-1, _RING, _RING)
    ringed[:, [0, -1]] = 0
    ringed[:, :, [0, -1]] = 0
    return out.reshape(flat.shape)


def blur_radius(sigma: float) -> int:
    """The kernel half-width used for blurs up to ``sigma``: 3 sigma, at least 1 pixel."""
    return max(1, int(np.ceil(3 * sigma)))


def blur_bands(
    sigma: FloatArray, radius: int, height: int, gain: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """Return the banded matrices of :func:`apply_blur` for samples blurred by ``sigma``.

    Args:
        sigma: ``(B,)`` standard deviations in pixels, >= 0 (0: unchanged).
        radius: the kernels' half-width, from :func:`blur_radius` of the largest sigma.
        height: rows of the images.
        gain: a factor folded into the kernels (``1 / 255`` turns bytes into values).

    Returns:
        ``(horizontal, vertical)``: ``(B, 16 + 2R, 16)`` for tiles of columns and
        ``(B, H, H)`` for the rows; kernels sum to 1 (times ``gain``).
    """
    kernels = _gaussian_kernels(np.asarray(sigma, np.float32), radius)  # (B, 2R + 1)
    horizontal = _band(kernels * np.float32(gain), BLUR_TILE + 2 * radius, BLUR_TILE, radius)
    vertical = _band(kernels, height, height, 0).transpose(0, 2, 1)  # (B, H_out, H_in)
    return horizontal, vertical


def apply_blur(
    images: npt.NDArray[np.uint8] | FloatArray,
    horizontal: FloatArray,
    vertical: FloatArray,
    out: FloatArray | None = None,
) -> FloatArray:
    """Blur each sample by its banded matrices from :func:`blur_bands`, zero outside.

    Separable, and both passes are batched matrix products, so the cost is a few passes over
    the images whatever the sigmas. The horizontal one cuts each padded row into blocks of 16
    columns (a free reshape, no copies): an output tile of 16 columns is its own block times
    the band's first 16 rows, plus the next block's first columns times the band's other
    ``2R`` rows, one product per block offset over all blocks at once. The vertical one
    multiplies each ``(H, W)`` sample by an ``(H, H)`` band.

    Args:
        images: ``(B, H, W)`` uint8 or float32.
        horizontal: ``(B, 16 + 2R, 16)``.
        vertical: ``(B, H, H)``.
        out: where to write, ``(B, H, ceil(W / 16) * 16)`` (the last columns past ``W`` hold
            the blur's reach beyond the images); a new array if None.

    Returns:
        ``(B, H, W) float32``, a view of ``out`` when given.
    """
    n, height, width = images.shape
    reach = horizontal.shape[1] - BLUR_TILE  # 2R: the columns a tile reads past its own
    tiles = -(-width // BLUR_TILE)
    # Each row ends with enough zero blocks for its last tile's reach; their own outputs
    # (which read into the next row) are never used.
    blocks_per_row = tiles + -(-reach // BLUR_TILE)
    padded = np.zeros((n, height, blocks_per_row * BLUR_TILE), np.float32)
    padded[:, :, reach // 2 : reach // 2 + width] = images
    blocks = padded.reshape(n, height * blocks_per_row, BLUR_TILE)
    across = np.matmul(blocks, horizontal[:, :BLUR_TILE])
    for offset in range(1, blocks_per_row - tiles + 1):
        band = horizontal[:, offset * BLUR_TILE : (offset + 1) * BLUR_TILE]  # (B, <= 16, 16)
        across[:, :-offset] += np.matmul(blocks[:, offset:, : band.shape[1]], band)
    rows = across.reshape(n, height, blocks_per_row * BLUR_TILE)[:, :, : tiles * BLUR_TILE]
    result: FloatArray = np.matmul(vertical, rows, out=out)
    return result[:, :, :width]


def blur_samples(
    images: npt.NDArray[np.uint8] | FloatArray, sigma: FloatArray, radius: int, gain: float = 1.0
) -> FloatArray:
    """Blur each sample with a Gaussian of its own ``sigma`` (0: unchanged), zero outside.

    :func:`blur_bands` then :func:`apply_blur`, for a single call.

    Returns:
        ``(B, H, W) float32``, ``gain`` times the blurred images.
    """
    horizontal, vertical = blur_bands(sigma, radius, images.shape[1], gain)
    return apply_blur(images, horizontal, vertical)


def _gaussian_kernels(sigma: FloatArray, radius: int) -> FloatArray:
    """``(B, 2R + 1)`` unit-sum sampled Gaussians; sigma 0 gives the identity kernel."""
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    safe = np.maximum(sigma, np.float32(1e-6))[:, None]
    kernels: FloatArray = np.exp(-0.5 * (taps / safe) ** 2).astype(np.float32)
    kernels /= kernels.sum(axis=1, keepdims=True)
    return kernels


def _band(kernels: FloatArray, n_in: int, n_out: int, offset: int) -> FloatArray:
    """``(B, n_in, n_out)`` banded matrices: ``out[j] = sum_i in[i] * kernel[i - j - offset + R]``.

    ``offset=0`` centres output ``j`` on input ``j`` (the vertical pass, zero beyond the
    edges); ``offset=R`` centres it on input ``j + R`` (a tile of the padded horizontal pass).
    """
    band = np.zeros((len(kernels), n_in, n_out), np.float32)
    radius = kernels.shape[1] // 2
    columns = np.arange(n_out)
    for tap in range(kernels.shape[1]):  # one diagonal per tap: 2R + 1 <= 25 of them
        rows = columns + tap + offset - radius
        inside = (rows >= 0) & (rows < n_in)
        band[:, rows[inside], columns[inside]] = kernels[:, tap, None]
    return band


def normal_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: FloatArray) -> FloatArray:
    """Draw Gaussian noise of standard deviation ``scale`` (one per sample) in ``shape``.

    Each value is one of 65,536 equiprobable quantiles of the standard normal, picked by one
    uniform 16-bit draw: Gaussian to within 1/65,536 in probability, with tails cut at 4.4
    standard deviations, and about four times cheaper than ``Generator.standard_normal``.

    Args:
        rng: the generator.
        shape: ``(B, ...)`` shape of the noise.
        scale: ``(B,)`` standard deviation of each sample's noise.
    """
    picks = rng.integers(0, _NOISE_LEVELS, size=shape, dtype=np.uint16)
    noise = _normal_quantiles()[picks]
    noise *= np.asarray(scale, np.float32).reshape((-1,) + (1,) * (len(shape) - 1))
    return noise


@lru_cache(maxsize=1)
def _normal_quantiles() -> FloatArray:
    """The ``(65536,)`` midpoint quantiles of the standard normal, float32."""
    inverse = NormalDist().inv_cdf
    table = np.array([inverse((k + 0.5) / _NOISE_LEVELS) for k in range(_NOISE_LEVELS)], np.float32)
    table.flags.writeable = False
    return table
