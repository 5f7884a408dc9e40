"""The composition engine: lay out a whole block of digit sequences at once.

``compose`` is pure numpy and knows nothing of MNIST files or seeds: it takes the digit images
already drawn, the gaps already drawn and a generator for the one choice it makes itself (the
offset of ``align="random"``), and returns the finished images with each digit's ink box. The
single-image API and the dataset builder both call it, so there is one composition code path.

How it stays fast: every digit of the block is copied with one fancy-indexed assignment of
28-pixel rows (a structured ``void`` view whose elements are a digit row's bytes), so there is
no Python loop over samples, pixels or columns; the loop over digit *slots* (at most the
sequence length) only runs when digits can overlap and must combine with ``np.maximum``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidValueError
from .options import ComposeOptions

DIGIT_SIZE = 28  # MNIST images are 28 x 28
MAX_OVERLAP = DIGIT_SIZE - 1  # the most columns two neighbouring digits may share

IntArray = npt.NDArray[np.int64]
ImageArray = npt.NDArray[Any]  # uint8 (0..255) or float32 (0..1) images

_ROW = np.dtype((np.void, DIGIT_SIZE))  # one 28-pixel row of a uint8 digit, as a single item
_BYTE_MAX = np.float32(255)


def widest_width(n_digits: int, max_gap: int) -> int:
    """Return the columns the widest possible composition of ``n_digits`` needs.

    Each digit advances the next by at most ``28 + max_gap`` columns (never backwards), so
    this bound holds for ``digit_crop="ink"`` too, where digits are narrower than 28.
    """
    return DIGIT_SIZE + (n_digits - 1) * max(DIGIT_SIZE + max_gap, 0)


def check_fits(n_digits: int, max_gap: int, width: int, fit: str, *, subject: str) -> None:
    """Under ``fit="pad"``, reject a width the widest possible composition would overflow.

    The one fit check of the API, the CLI and the build config.

    Args:
        n_digits: the most digits a sequence can have.
        max_gap: the largest gap.
        width: the output width.
        fit: ``"pad"``, ``"scale"`` or ``"auto"``; only ``"pad"`` can fail.
        subject: how the message names the width, e.g. ``"image_width=50"`` or ``"width (50)"``.

    Raises:
        InvalidValueError: the message gives the minimum width needed.
    """
    needed = widest_width(n_digits, max_gap)
    if fit == "pad" and needed > width:
        raise InvalidValueError(
            f"{subject} is too small: {n_digits} digits with gaps up to {max_gap} need at least "
            f'{needed} columns (use fit="scale" or fit="auto", or a wider image)'
        )


def compose(
    glyphs: npt.NDArray[np.uint8],
    ink_boxes: npt.NDArray[np.int16],
    lengths: IntArray,
    gaps: IntArray,
    width: int,
    *,
    options: ComposeOptions,
    rng: np.random.Generator,
    dtype: type[np.uint8] | type[np.float32] = np.float32,
) -> tuple[ImageArray, npt.NDArray[np.int16]]:
    """Compose a block of digit sequences into images of ``width`` columns.

    Args:
        glyphs: ``(B, L, 28, 28) uint8`` raw MNIST digit images; slots past a sample's length
            are ignored.
        ink_boxes: ``(B, L, 4)`` ``x0, y0, x1, y1`` of each glyph's ink inside its 28x28 box.
        lengths: ``(B,)`` number of digits of each sample, each in ``1..L``.
        gaps: ``(B, L - 1)`` gap in columns after each digit (negative: overlap).
        width: output width in columns.
        options: fit, align, digit_crop and background, already validated.
        rng: the generator for ``align="random"`` offsets.
        dtype: ``np.uint8`` gives ``round(value * 255)``, ``np.float32`` the value itself.

    Returns:
        ``(images, boxes)``: images ``(B, 28, width)`` of ``dtype``, values in ``[0, 1]`` (or
        ``0..255``); boxes ``(B, L, 4) int16`` ``x0, y0, x1, y1`` (end exclusive) of each
        digit's ink in output pixels, ``-1`` past a sample's length.

    Raises:
        InvalidValueError: ``fit="pad"`` and a composition is wider than ``width``.
    """
    n_samples, n_slots = glyphs.shape[:2]
    valid = slot_mask(lengths, n_slots)
    ink_crop = options.digit_crop == "ink"
    crop_width: IntArray | int
    if ink_crop:
        ink = ink_boxes.astype(np.int64)
        crop_start = ink[..., 0]
        ink_width = ink[..., 2] - crop_start
        crop_width = ink_width if valid is None else ink_width * valid
        # A digit narrower than the overlap never pulls the next one left of itself.
        steps = np.maximum(crop_width[:, :-1] + gaps, 0)
    elif valid is None:
        crop_width = DIGIT_SIZE
        steps = DIGIT_SIZE + gaps  # >= 1, since gaps are >= -27
    else:
        box_width = valid * DIGIT_SIZE
        crop_width = box_width
        steps = box_width[:, :-1] + gaps
    x = np.zeros((n_samples, n_slots), np.int64)  # left column of each digit's kept part
    np.add.accumulate(steps if valid is None else steps * valid[:, 1:], axis=1, out=x[:, 1:])
    # (B,) width of each composition; box-cropped digits end in order, so the last one's end.
    natural = (x + crop_width).max(axis=1) if ink_crop else x[:, -1] + DIGIT_SIZE

    if options.fit == "pad":
        if _largest(natural) > width:
            raise InvalidValueError(
                f"a composition needs {_largest(natural)} columns, more than "
                f"image_width={width} (use fit='scale' or a wider image)"
            )
        padded = None  # every sample is padded
        free = width - natural
    else:
        padded = natural <= width if options.fit == "auto" else np.zeros(n_samples, bool)
        free = np.where(padded, width - natural, 0)
    if options.align == "center":
        offset = free // 2
    elif options.align == "random":
        offset = rng.integers(0, free, endpoint=True)
    else:
        offset = np.zeros(n_samples, np.int64)

    # The 28-column window of each glyph starts this many columns left of its kept part.
    window = offset[:, None] + x
    if ink_crop:
        window -= crop_start
    overlapping = ink_crop or (n_slots > 1 and _smallest(gaps) < 0)
    boxes = _ink_boxes_in_output(ink_boxes, window, valid)

    if padded is None or padded.all():
        raw = _place(glyphs, window, valid, width, overlapping)
        return encode_values(raw, options.background, dtype), boxes
    canvas_width = int(natural.max())
    raw = _place(glyphs, window, valid, canvas_width, overlapping)
    images = np.empty((n_samples, DIGIT_SIZE, width), dtype)
    if padded.any():
        images[padded] = encode_values(raw[padded, :, :width], options.background, dtype)
    for natural_width in np.unique(natural[~padded]):
        chosen = np.flatnonzero(~padded & (natural == natural_width))
        scaled = _resample(raw[chosen, :, :natural_width], width)
        images[chosen] = encode_values(scaled, options.background, dtype)
        factor = width / natural_width
        xs = boxes[chosen][..., [0, 2]].astype(np.float64)
        xs[..., 0] = np.floor(xs[..., 0] * factor)
        xs[..., 1] = np.ceil(xs[..., 1] * factor)
        sub = boxes[chosen]
        sub[..., [0, 2]] = np.where(sub[..., [0, 2]] >= 0, np.clip(xs, 0, width), -1)
        boxes[chosen] = sub
    return images, boxes


def slot_mask(lengths: IntArray, n_slots: int) -> npt.NDArray[np.bool_] | None:
    """Return ``(B, L)``: which slots hold a digit; None when every slot does.

    None spares the masking in the common case of sequences of one length.
    """
    if _smallest(lengths) == n_slots:
        return None
    return np.arange(n_slots) < lengths[:, None]


def _smallest(values: npt.NDArray[Any]) -> int:
    """``values.min()``, cheaper for the single sample of the one-image API."""
    return int(values.flat[0]) if values.size == 1 else int(values.min())


def _largest(values: npt.NDArray[Any]) -> int:
    """``values.max()``, cheaper for the single sample of the one-image API."""
    return int(values.flat[0]) if values.size == 1 else int(values.max())


def _ink_boxes_in_output(
    ink: npt.NDArray[np.int16], window: IntArray, valid: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.int16]:
    """Shift each glyph's ink box to its window's place; ``-1`` for absent digits."""
    boxes = ink + window[..., None] * _X_ONLY
    if valid is not None:
        boxes[~valid] = -1
    return boxes.astype(np.int16)


_X_ONLY = np.array([1, 0, 1, 0], np.int64)  # shifts x0 and x1 of an (x0, y0, x1, y1) box


def _place(
    glyphs: npt.NDArray[np.uint8],
    window: IntArray,
    valid: npt.NDArray[np.bool_] | None,
    width: int,
    overlapping: bool,
) -> npt.NDArray[np.uint8]:
    """Copy every valid glyph onto a black canvas at its window, combining by maximum.

    Windows may reach up to 27 columns past either edge (ink crop), so the canvas carries a
    margin of one digit on each side that is cut off at the end.
    """
    n_samples, n_slots = window.shape
    margin = DIGIT_SIZE if overlapping else 0
    padded_width = width + 2 * margin
    canvas = np.zeros((n_samples, DIGIT_SIZE, padded_width), np.uint8)
    row_type = _ROW
    # rows[k] is the 28 bytes of the canvas that start at byte k.
    rows = np.ndarray(
        buffer=canvas, dtype=row_type, shape=(canvas.size - DIGIT_SIZE + 1,), strides=(1,)
    )
    # (B, L, 28) byte offset of each row of each glyph
    targets = window[..., None] + _row_starts(n_samples, padded_width, margin)
    glyph_rows = np.ascontiguousarray(glyphs).view(row_type)[..., 0]  # (B, L, 28)
    if not overlapping:
        if valid is None:
            rows[targets.ravel()] = glyph_rows.ravel()
        else:
            rows[targets[valid].ravel()] = glyph_rows[valid].ravel()
    else:
        for slot in range(n_slots):
            present = slice(None) if valid is None else valid[:, slot]
            targets_of_slot = targets[present, slot].ravel()
            current = rows[targets_of_slot].view(np.uint8)
            np.maximum(current, glyph_rows[present, slot].ravel().view(np.uint8), out=current)
            rows[targets_of_slot] = current.view(row_type)
    if margin:
        return canvas[:, :, margin : margin + width]
    return canvas


@lru_cache(maxsize=16)
def _row_starts(n_samples: int, padded_width: int, margin: int) -> IntArray:
    """Return the ``(B, 1, 28)`` byte offset of each row of each sample, past the left margin."""
    sample_starts = np.arange(n_samples, dtype=np.int64) * (DIGIT_SIZE * padded_width) + margin
    row_starts = np.arange(DIGIT_SIZE, dtype=np.int64) * padded_width
    starts = sample_starts[:, None, None] + row_starts
    starts.flags.writeable = False
    return starts


def encode_values(
    raw: ImageArray,
    background: str,
    dtype: type[np.uint8] | type[np.float32],
    *,
    overwrite: bool = False,
) -> ImageArray:
    """Convert raw bytes (or floats in [0, 1], ink on black) to ``dtype`` under ``background``.

    ``overwrite=True`` lets float32 input be used as scratch space (augmentation's blurred
    chunks), sparing two temporary arrays; the result is the same.

    Returns ``(B, 28, W)`` of ``dtype``: ``round(value * 255)`` for uint8, the value for float32.
    """
    if raw.dtype == np.uint8:
        if dtype is np.uint8:
            out_u8 = np.ascontiguousarray(raw)
            return np.subtract(255, out_u8, dtype=np.uint8) if background == "white" else out_u8
        values = raw / _BYTE_MAX  # float32, exactly as raw.astype(float32) / 255
    elif overwrite and raw.dtype == np.float32:
        values = raw
        if background == "white":
            np.subtract(np.float32(1), values, out=values)
        if dtype is np.uint8:
            np.multiply(values, np.float32(255), out=values)
            return np.rint(values, out=values).astype(np.uint8)
        return values
    else:
        values = raw.astype(np.float32, copy=False)
    if background == "white":
        values = np.float32(1) - values
    if dtype is np.uint8:
        return np.rint(values * np.float32(255)).astype(np.uint8)
    return values


def _resample(raw: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.float32]:
    """Resize ``(K, 28, w)`` raw images horizontally to ``width`` with antialiasing.

    Returns ``(K, 28, width) float32`` in ``[0, 1]``.
    """
    weights = _resample_weights(raw.shape[2], width)
    values = raw.astype(np.float32) @ weights
    values *= np.float32(1 / 255)
    return np.clip(values, 0, 1, out=values)


@lru_cache(maxsize=256)
def _resample_weights(source_width: int, width: int) -> npt.NDArray[np.float32]:
    """Return the ``(source_width, width)`` triangle-filter resampling matrix.

    The filter widens with the reduction factor when shrinking, as Pillow's antialiased
    ``BILINEAR`` does, so every source column contributes and thin strokes do not vanish.
    """
    scale = source_width / width
    support = max(scale, 1.0)
    centers = (np.arange(width) + 0.5) * scale  # in source pixel units
    source = np.arange(source_width) + 0.5
    distance = np.abs(source[:, None] - centers[None, :]) / support
    weights = np.clip(1.0 - distance, 0.0, None)
    weights /= weights.sum(axis=0, keepdims=True)
    result = weights.astype(np.float32)
    result.flags.writeable = False
    return result
