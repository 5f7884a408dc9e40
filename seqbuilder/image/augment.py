"""Augmentation: handwriting-like variation of the digits, drawn from the block's generator.

>>> from seqbuilder import generate_numbers_sequence
>>> image = generate_numbers_sequence("0965", (-2, 4), 160, seed=7, augment="heavy")

The keys of the contract's "Augmentation" section are an
:class:`~seqbuilder.image.options.Augment` (with the presets ``none``, ``light`` and ``heavy``
in :data:`~seqbuilder.image.options.PRESETS`). The work happens in two places of
:func:`~seqbuilder.image.engine.generate_batch`:

- **Per digit, before composition** (:func:`transform_glyphs`): stroke width, then one affine
  map per digit (the sample's slant, the digit's rotation, scale and baseline shift, about the
  glyph centre) and its elastic field, folded into a single bilinear resampling of every glyph
  of the block. So ``digit_crop="ink"`` measures gaps between the transformed strokes, and
  negative gaps make transformed strokes touch. The pixel work runs in
  :func:`~seqbuilder.image.filters.transform` (numpy) or its compiled twin, which gives the
  same bytes (:mod:`~seqbuilder.image.kernels` chooses).
- **Per sample, after composition** (:func:`finish_images`): Gaussian blur, then additive
  Gaussian noise, then clipping to ``[0, 1]``.

Canvas: each digit stays in its 28 x 28 glyph; ink a transform carries past the glyph's edge is
cut off (the presets keep that rare and slight). Boxes: each digit's box is recomputed from its
transformed ink and placed where the digit lands, so it is exact for the image before blur and
noise; those two change pixel values only (a blurred stroke's soft edge may reach a pixel or
two past its box, and noise lies everywhere).

Draw order, after the engine's draws of MNIST samples and gaps (so ``labels``, ``lengths`` and
``source_index`` never change with augmentation): ``(B, 2)`` uniforms per sample (slant,
thickness) and ``(B, L, 5)`` per digit slot (rotation, scale, baseline, elastic window row and
column), drawn whenever a per-digit key is on; then composition's draws; then ``(B, 2)``
uniforms (blur, noise level) and the noise (chunk by chunk, see :func:`finish_images`),
whenever blur or noise is on. With every key off nothing is drawn, so ``augment="none"``
gives exactly the unaugmented bytes. Each key reads its own uniforms, so changing one key's
range leaves every other key's effect as it was.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from . import filters
from .compose import ImageArray, encode_values
from .filters import GLYPH
from .kernels import kernels
from .options import Augment, Range

CHUNK_SAMPLES = 32  # samples blurred and noised at once, for the same reason


def transform_glyphs(
    glyphs: npt.NDArray[np.uint8],
    valid: npt.NDArray[np.bool_] | None,
    params: Augment,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Apply the per-digit keys to every glyph of a block, and find their new ink boxes.

    Draws ``(B, 2)`` then ``(B, L, 5)`` uniforms (see the module docstring), whatever the
    number of valid digits, so a block's draws depend only on its shape.

    Args:
        glyphs: ``(B, L, 28, 28) uint8`` the MNIST glyph of each digit slot.
        valid: ``(B, L)`` which slots hold a digit, or None when all do; others are skipped.
        params: the keys; at least one per-digit key is on.
        rng: the generator.

    Returns:
        ``(glyphs, ink_boxes)``: new ``(B, L, 28, 28) uint8`` glyphs and ``(B, L, 4) int16``
        ``x0, y0, x1, y1`` of each one's ink (``0, 0, 0, 0`` where none is left).
    """
    n_samples, n_slots = glyphs.shape[:2]
    per_sample = rng.random((n_samples, 2))
    per_digit = rng.random((n_samples, n_slots, 5))
    mask = np.ones((n_samples, n_slots), bool) if valid is None else valid
    slots = np.flatnonzero(mask)  # (N,) the digit slots, flat
    sample_of = slots // n_slots
    digit = per_digit.reshape(-1, 5)[slots]  # (N, 5)

    change = None
    if params.thickness != (0.0, 0.0):
        change = _spread(per_sample[:, 1], params.thickness)[sample_of].astype(np.float32)
    slant = np.tan(np.radians(_spread(per_sample[:, 0], (-params.slant, params.slant))))
    inverse = _inverse_maps(
        slant[sample_of],
        np.radians(_spread(digit[:, 0], (-params.rotation, params.rotation))),
        _spread(digit[:, 1], params.scale),
    )
    shift = np.zeros((len(slots), 2), np.float32)
    shift[:, 1] = np.floor(digit[:, 2] * (2 * params.baseline + 1)) - params.baseline
    offsets = (digit[:, 3:5] * filters.PLANE).astype(np.intp)
    elastic = params.elastic
    planes = None
    if elastic.alpha > 0:
        planes = filters.elastic_planes(elastic.sigma, elastic.alpha)

    source = glyphs.reshape(-1, GLYPH, GLYPH)
    plan = filters.GlyphPlan(change, inverse if params.warps else None, shift, planes, offsets)
    out, boxes = kernels(len(slots)).transform(source, slots, plan)
    return out.reshape(glyphs.shape), boxes.reshape(n_samples, n_slots, 4)


def _spread(uniform: npt.NDArray[np.float64], bounds: Range) -> npt.NDArray[np.float64]:
    """Map uniforms on [0, 1) onto ``[low, high]``."""
    low, high = bounds
    return low + uniform * (high - low)


def _inverse_maps(
    shear: npt.NDArray[np.float64],
    angle: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """``(N, 2, 2)`` inverses of ``shear @ rotate @ scale`` on ``(x, y)``, y pointing down.

    The forward map scales by ``scale``, turns by ``angle`` (positive: counterclockwise as
    seen) and shears rows above the centre right by ``shear`` pixels per row (a forward slant).
    """
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    inverse = np.empty((len(angle), 2, 2), np.float32)
    inverse[:, 0, 0] = cos
    inverse[:, 0, 1] = cos * shear - sin
    inverse[:, 1, 0] = sin
    inverse[:, 1, 1] = sin * shear + cos
    return inverse


def finish_images(
    raw: npt.NDArray[np.uint8],
    boxes: npt.NDArray[np.int16],
    params: Augment,
    rng: np.random.Generator,
    *,
    background: str,
    dtype: type[np.uint8] | type[np.float32],
) -> ImageArray:
    """Blur and add noise to composed images, each sample with its own draws, then encode.

    The blur only visits the columns that hold ink (plus the kernel's reach): samples are
    taken in order of ink span (in whole tiles of :data:`~seqbuilder.image.filters.BLUR_TILE`
    columns; by index within one), :data:`CHUNK_SAMPLES` at a time, each chunk cropped to
    its widest span. Outside those columns a blurred image is exactly 0, so the result is the
    same as blurring every column, for a fraction of the cost when sequences are short.

    Args:
        raw: ``(B, 28, W) uint8`` composed images, white ink on black (value = raw / 255).
        boxes: ``(B, L, 4)`` each digit's ink box in ``raw`` (-1 for absent digits).
        params: the keys; blur or noise is on.
        rng: the generator: ``(B, 2)`` uniforms (blur sigma, noise level), then the noise,
            chunk by chunk in the order above.
        background: ``"black"`` or ``"white"``, applied after clipping to [0, 1].
        dtype: ``np.uint8`` (``round(value * 255)``) or ``np.float32``.

    Returns:
        ``(B, 28, W)`` of ``dtype``.
    """
    n_samples, height, width = raw.shape
    draws = rng.random((n_samples, 2))
    sigma = _spread(draws[:, 0], params.blur).astype(np.float32)
    level = (draws[:, 1] * params.noise).astype(np.float32)
    blurring = params.blur != (0.0, 0.0)
    radius = filters.blur_radius(params.blur[1])
    present = boxes[..., 0] >= 0
    first = np.where(present, boxes[..., 0], width).min(axis=1) - radius
    last = np.where(present, boxes[..., 2], 0).max(axis=1) + radius
    first, last = np.clip(first, 0, width), np.clip(last, 0, width)
    # Sorted by span in whole tiles (the blur's unit), so samples keep their order within one
    # tile count: chunks read and write neighbouring samples.
    span_tiles = -(-(last - first) // filters.BLUR_TILE)
    order = np.argsort(span_tiles, kind="stable") if blurring else np.arange(n_samples)
    # In that order, so each chunk's bands are a slice
    horizontal, vertical = filters.blur_bands(sigma[order], radius, height, gain=1 / 255)
    out = np.empty(raw.shape, dtype)
    # Room for a blurred crop's last tile, which may reach past the right edge; a chunk is
    # finished over its whole buffer, columns past W included: one flat pass per step.
    buffer = np.zeros(
        (min(CHUNK_SAMPLES, n_samples), height, width + filters.BLUR_TILE), np.float32
    )
    for start in range(0, n_samples, CHUNK_SAMPLES):
        chosen = order[start : start + CHUNK_SAMPLES]
        bands = slice(start, start + CHUNK_SAMPLES)
        chunk = buffer[: len(chosen)]
        values = chunk[:, :, :width]
        if blurring:
            left, right = int(first[chosen].min()), int(last[chosen].max())
            chunk[:, :, :left] = 0
            if right > left:
                crop = raw[chosen, :, left:right]
                tiles = -(-(right - left) // filters.BLUR_TILE) * filters.BLUR_TILE
                filters.apply_blur(
                    crop, horizontal[bands], vertical[bands],
                    out=chunk[:, :, left : left + tiles],
                )  # fmt: skip
            chunk[:, :, right:] = 0
        else:
            np.divide(raw[chosen], np.float32(255), out=values, dtype=np.float32)
            chunk[:, :, width:] = 0
        if params.noise > 0:
            values += filters.normal_noise(rng, values.shape, level[chosen])
            np.clip(chunk, 0, 1, out=chunk)
        elif dtype is np.float32:  # a blur's weights are >= 0 and sum to 1: rounding may pass 1
            np.minimum(chunk, 1, out=chunk)
        out[chosen] = encode_values(chunk, background, dtype, overwrite=True)[:, :, :width]
    return out
