"""Vectorised image kernels for augmentation: warps, stroke width, blur and noise.

Each function works on a whole stack at once, ``(N, 28, 28)`` digit glyphs or ``(B, 28, W)``
samples, with per-item parameters as arrays: there is no Python loop over digits, samples or
pixels (the only loops run over a handful of filter steps). Numpy only; nothing here draws a
random number except from the ``rng`` it is given, and nothing touches a file.

- :func:`warp_glyphs`: one inverse mapping and bilinear sampling pass, from per-glyph affine
  maps and displacement fields, for every glyph of a block.
- :func:`elastic_fields`: smooth random displacement fields, cut from a periodic plane of
  Gaussian-smoothed uniform noise (computed once per ``sigma`` and process).
- :func:`change_stroke_width`: grey dilation (or erosion) with fractional, per-glyph radius.
- :func:`blur_samples`: a Gaussian blur of per-sample sigma, as two batched matrix products.
- :func:`normal_noise`: Gaussian noise from a 16-bit quantile table (a few times faster than
  ``Generator.standard_normal``, and as Gaussian as a uint8 image can tell).
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]

GLYPH = 28  # MNIST glyphs are GLYPH x GLYPH
CENTER = (GLYPH - 1) / 2  # the pixel-centre coordinate of the middle of a glyph
PLANE = 512  # side of the periodic noise plane elastic fields are cut from
_PLANE_SEED = 20030803  # fixes the plane, so a field depends only on its sigma and offset
_BLUR_TILE = 32  # columns per matrix product of the horizontal blur
_NOISE_LEVELS = 1 << 16  # quantiles of the noise table: one uint16 draw per pixel


def warp_glyphs(
    glyphs: ByteArray, inverse: FloatArray, shift: FloatArray, fields: FloatArray | None
) -> ByteArray:
    """Resample every glyph through its own map, in one bilinear pass.

    Output pixel ``q`` (``(x, y)`` about the glyph centre, after subtracting ``shift``) reads the
    source at ``inverse @ q + centre + field(q)``; a source position outside the glyph reads 0.

    Args:
        glyphs: ``(N, 28, 28) uint8`` source glyphs.
        inverse: ``(N, 2, 2)`` inverse linear maps, acting on ``(x, y)`` column vectors.
        shift: ``(N, 2)`` ``(x, y)`` translation of each glyph, in output pixels.
        fields: ``(N, 2, 28, 28)`` ``(dx, dy)`` displacement of the source position, or None.

    Returns:
        ``(N, 28, 28) uint8``, each value the rounded bilinear interpolation.
    """
    axis = np.arange(GLYPH, dtype=np.float32) - np.float32(CENTER)
    qx = axis[None, None, :] - shift[:, 0, None, None]  # (N, 1, 28)
    qy = axis[None, :, None] - shift[:, 1, None, None]  # (N, 28, 1)
    inv = inverse.astype(np.float32)
    # +1: coordinates in the zero-padded glyph, where the source starts at row and column 1
    sx = inv[:, 0, 0, None, None] * qx + inv[:, 0, 1, None, None] * qy + np.float32(CENTER + 1)
    sy = inv[:, 1, 0, None, None] * qx + inv[:, 1, 1, None, None] * qy + np.float32(CENTER + 1)
    if fields is not None:
        sx += fields[:, 0]
        sy += fields[:, 1]
    return _bilinear(glyphs, sx, sy)


def _bilinear(glyphs: ByteArray, sx: FloatArray, sy: FloatArray) -> ByteArray:
    """Sample ``glyphs`` at padded coordinates ``(sx, sy)``, zero outside; one gather.

    The glyphs are zero-padded by one row and column before and two after, and each pixel's
    2x2 neighbourhood is packed into one ``uint32``, so a single fancy index fetches all four
    neighbours of every output pixel. Coordinates are clipped to ``[0, 29]``, where anything
    beyond the glyph reads padding, so truncation is the floor and every index is in range.
    """
    n = len(glyphs)
    side = GLYPH + 3
    padded = np.zeros((n, side, side), np.uint8)
    padded[:, 1 : GLYPH + 1, 1 : GLYPH + 1] = glyphs
    quads = np.empty((n, side - 1, side - 1, 4), np.uint8)  # (top-left, tl+x, tl+y, tl+xy)
    quads[..., 0] = padded[:, :-1, :-1]
    quads[..., 1] = padded[:, :-1, 1:]
    quads[..., 2] = padded[:, 1:, :-1]
    quads[..., 3] = padded[:, 1:, 1:]
    np.clip(sx, 0, GLYPH + 1, out=sx)
    np.clip(sy, 0, GLYPH + 1, out=sy)
    x0, y0 = sx.astype(np.int32), sy.astype(np.int32)
    fx, fy = sx - x0, sy - y0
    index = y0
    index *= side - 1
    index += x0
    index += (np.arange(n, dtype=np.int32) * (side - 1) ** 2)[:, None, None]
    packed = quads.view(np.uint32).reshape(-1)[index]  # (N, 28, 28)
    corners = packed[..., None].view(np.uint8)  # (N, 28, 28, 4)
    top, right = corners[..., 0].astype(np.float32), corners[..., 1].astype(np.float32)
    right -= top
    right *= fx
    top += right  # the top edge, interpolated along x
    bottom, right = corners[..., 2].astype(np.float32), corners[..., 3].astype(np.float32)
    right -= bottom
    right *= fx
    bottom += right
    bottom -= top
    bottom *= fy
    top += bottom
    top += np.float32(0.5)  # round half up: values are >= 0
    return top.astype(np.uint8)


def elastic_fields(offsets: npt.NDArray[np.intp], sigma: float, alpha: float) -> FloatArray:
    """Return ``(N, 2, 28, 28)`` ``(dx, dy)`` displacement fields, in pixels.

    Field ``k`` is the ``28 x 28`` window at ``offsets[k]`` (row, column) of two periodic
    planes of uniform noise on ``[-1, 1]`` smoothed by a unit-sum Gaussian of ``sigma``
    pixels, times ``alpha``: Simard et al.'s (2003) fields, drawn by a window's position.

    Args:
        offsets: ``(N, 2)`` window corners, each in ``[0, PLANE)``.
        sigma: Gaussian smoothing, in pixels (> 0).
        alpha: scale of the displacement.
    """
    planes = _smoothed_planes(float(sigma))  # (2, PLANE + 28, PLANE + 28), wrapped
    windows = np.lib.stride_tricks.sliding_window_view(planes, (GLYPH, GLYPH), axis=(1, 2))
    fields = windows[:, offsets[:, 0], offsets[:, 1]]  # (2, N, 28, 28)
    return np.multiply(fields.transpose(1, 0, 2, 3), np.float32(alpha), dtype=np.float32)


@lru_cache(maxsize=4)
def _smoothed_planes(sigma: float) -> FloatArray:
    """Two ``PLANE x PLANE`` planes of smoothed noise, wrapped by 28 rows and columns.

    Smoothing is periodic (a product in the Fourier domain), so every window is statistically
    alike; the wrap lets any window be a plain slice.
    """
    noise = np.random.default_rng(_PLANE_SEED).uniform(-1, 1, (2, PLANE, PLANE))
    frequency = np.fft.fftfreq(PLANE)
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * frequency**2)  # a unit-sum Gaussian
    spectrum = np.fft.fft2(noise) * transfer[:, None] * transfer[None, :]
    smooth = np.fft.ifft2(spectrum).real.astype(np.float32)
    wrapped = np.pad(smooth, ((0, 0), (0, GLYPH), (0, GLYPH)), mode="wrap")
    wrapped.flags.writeable = False
    return wrapped


def change_stroke_width(glyphs: ByteArray, change: FloatArray) -> ByteArray:
    """Thicken (``change > 0``) or thin (``< 0``) the strokes of each glyph by ``change`` pixels.

    A stroke widens by 2 pixels per step of a 3x3 cross grey dilation (narrows: erosion); a
    fractional change blends the two nearest steps, so the width varies continuously.

    Args:
        glyphs: ``(N, 28, 28) uint8``.
        change: ``(N,)`` stroke-width change in pixels.

    Returns:
        ``(N, 28, 28) uint8``.
    """
    radius = np.asarray(change, np.float32) / 2
    values = glyphs.astype(np.float32)
    for sign, combine in ((1, np.maximum), (-1, np.minimum)):
        amount = np.clip(radius * sign, 0, None)
        previous = glyphs
        for step in range(int(np.ceil(amount.max(initial=0)))):
            current = _cross_filter(previous, combine)
            weight = np.clip(amount - step, 0, 1)[:, None, None]
            values += weight * (current.astype(np.float32) - previous)
            previous = current
    return np.rint(values, out=values).astype(np.uint8)


def _cross_filter(glyphs: ByteArray, combine: np.ufunc) -> ByteArray:
    """Combine each pixel with its 4 neighbours (zero outside the glyph) by ``combine``."""
    padded = np.zeros((len(glyphs), GLYPH + 2, GLYPH + 2), np.uint8)
    padded[:, 1:-1, 1:-1] = glyphs
    out: ByteArray = combine(glyphs, padded[:, :-2, 1:-1])
    combine(out, padded[:, 2:, 1:-1], out=out)
    combine(out, padded[:, 1:-1, :-2], out=out)
    combine(out, padded[:, 1:-1, 2:], out=out)
    return out


def blur_samples(images: FloatArray, sigma: FloatArray) -> FloatArray:
    """Blur each sample with a Gaussian of its own ``sigma`` (0: unchanged), zero outside.

    Separable: the vertical pass multiplies each ``(28, W)`` sample by a banded ``(28, 28)``
    matrix, the horizontal one multiplies tiles of columns by a banded matrix; both are
    batched matrix products, so the cost is a few passes over the block whatever the sigmas.

    Args:
        images: ``(B, H, W) float32``.
        sigma: ``(B,)`` standard deviations in pixels, >= 0.

    Returns:
        ``(B, H, W) float32``; a kernel sums to 1, so values stay within the input's range.
    """
    n, height, width = images.shape
    radius = max(1, int(np.ceil(3 * float(np.max(sigma, initial=0)))))
    kernels = _gaussian_kernels(np.asarray(sigma, np.float32), radius)  # (B, 2R + 1)
    vertical = _band(kernels, height, height)  # (B, H_in, H_out)
    out = np.matmul(vertical.transpose(0, 2, 1), images)
    tiles = -(-width // _BLUR_TILE)
    padded = np.zeros((n, height, tiles * _BLUR_TILE + 2 * radius), np.float32)
    padded[:, :, radius : radius + width] = out
    windows = np.lib.stride_tricks.sliding_window_view(padded, _BLUR_TILE + 2 * radius, axis=2)
    windows = windows[:, :, ::_BLUR_TILE].reshape(n, height * tiles, -1)
    horizontal = _band(kernels, _BLUR_TILE + 2 * radius, _BLUR_TILE, offset=radius)
    result: FloatArray = np.matmul(windows, horizontal).reshape(n, height, tiles * _BLUR_TILE)
    return np.ascontiguousarray(result[:, :, :width])


def _gaussian_kernels(sigma: FloatArray, radius: int) -> FloatArray:
    """``(B, 2R + 1)`` unit-sum sampled Gaussians; sigma 0 gives the identity kernel."""
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    safe = np.maximum(sigma, np.float32(1e-6))[:, None]
    kernels: FloatArray = np.exp(-0.5 * (taps / safe) ** 2).astype(np.float32)
    kernels /= kernels.sum(axis=1, keepdims=True)
    return kernels


def _band(kernels: FloatArray, n_in: int, n_out: int, offset: int = 0) -> FloatArray:
    """``(B, n_in, n_out)`` banded matrices: ``out[j] = sum_i in[i] * kernel[i - j - offset + R]``.

    ``offset=0`` centres output ``j`` on input ``j`` (the vertical pass, zero beyond the
    edges); ``offset=R`` centres it on input ``j + R`` (a tile of the padded horizontal pass).
    """
    radius = kernels.shape[1] // 2
    tap = np.arange(n_in)[:, None] - np.arange(n_out)[None, :] - offset + radius  # (n_in, n_out)
    inside = (tap >= 0) & (tap < kernels.shape[1])
    band: FloatArray = kernels[:, np.clip(tap, 0, kernels.shape[1] - 1)] * inside
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
