"""The batch engine: draw the digit images and gaps of a block of sequences, then compose it.

Every random choice (which MNIST sample shows each digit, each gap, the augmentation, a random
offset) comes from one ``numpy.random.Generator``, drawn in a fixed order, so a seed fixes the
result. The single-image API and the dataset builder both call :func:`generate_batch`, so there
is one code path from draws to pixels. Pure: it never opens a file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import InvalidValueError
from ..mnist.load import MnistSource
from .augment import finish_images, transform_glyphs
from .compose import ImageArray, compose, slot_mask
from .options import Augment, ComposeOptions


class Batch(NamedTuple):
    """A composed block of samples and the draws that made it."""

    images: ImageArray  # (B, 28, W) uint8 or float32
    boxes: npt.NDArray[np.int16]  # (B, L, 4) x0, y0, x1, y1; -1 past each length
    source_index: npt.NDArray[np.int32]  # (B, L) MNIST index of each digit; -1 padded
    gaps: npt.NDArray[np.int64]  # (B, L - 1) drawn gaps (meaningless past each length)


def generate_batch(
    split: MnistSource,
    digits: npt.NDArray[np.integer[Any]],
    lengths: npt.NDArray[np.integer[Any]],
    spacing: tuple[int, int],
    width: int,
    options: ComposeOptions,
    rng: np.random.Generator,
    dtype: type[np.uint8] | type[np.float32] = np.float32,
    augment: Augment | None = None,
) -> Batch:
    """Draw the MNIST samples and gaps for a block of sequences, then compose them.

    The draws happen in this order: one ``(B, 2L - 1)`` block of uniform floats (per sample,
    first one per digit slot choosing its MNIST sample, then one per gap), then the per-digit
    augmentation's, then ``compose``'s random offsets, then the per-sample augmentation's
    (see :mod:`seqbuilder.image.augment`); changing the order changes every dataset. With no
    augmentation (None or all keys off) nothing is drawn for it and no pixel changes. An
    integer in ``[0, k)`` is taken as ``floor(u * k)``: uniform to within ``k / 2**53``, and
    one vectorised draw is several times faster than ``Generator.integers`` with per-element
    bounds.

    Args:
        split: the MNIST split to draw digit images from.
        digits: ``(B, L)`` digits, left-aligned; entries past each length are ignored.
        lengths: ``(B,)`` number of digits in each sample, each in ``1..L``.
        spacing: validated ``(min, max)`` gap range.
        width: output width.
        options: validated composition options.
        rng: the generator every random choice comes from.
        dtype: ``np.float32`` values in [0, 1] or ``np.uint8`` ``round(value * 255)``.
        augment: validated augmentation keys, or None.

    Returns:
        The composed :class:`Batch`.
    """
    lengths_64: npt.NDArray[np.int64] = np.asarray(lengths, np.int64)
    n_samples, n_slots = digits.shape
    # One draw of uniform floats serves both choices: the sample of each digit, then each gap.
    uniform = rng.random((n_samples, 2 * n_slots - 1))
    valid = slot_mask(lengths_64, n_slots)
    source_index = draw_sources(split, digits, valid, uniform[:, :n_slots])
    gaps = spacing[0] + (uniform[:, n_slots:] * (spacing[1] - spacing[0] + 1)).astype(np.int64)
    safe_index = source_index if valid is None else np.maximum(source_index, 0)
    glyphs, ink_boxes = split.images[safe_index], split.ink_boxes[safe_index]
    if augment is not None and augment.per_digit:
        glyphs, ink_boxes = transform_glyphs(glyphs, valid, augment, rng)
    # Blur and noise work on values, white ink on black; the background and dtype come last.
    finishing = augment is not None and augment.per_sample
    images, boxes = compose(
        glyphs,
        ink_boxes,
        lengths_64,
        gaps,
        width,
        options=replace(options, background="black") if finishing else options,
        rng=rng,
        dtype=np.uint8 if finishing else dtype,
    )
    if finishing:
        assert augment is not None
        images = finish_images(
            images, boxes, augment, rng, background=options.background, dtype=dtype
        )
    return Batch(images, boxes, source_index, gaps)


def draw_sources(
    split: MnistSource,
    digits: npt.NDArray[np.integer[Any]],
    valid: npt.NDArray[np.bool_] | None,
    uniform: npt.NDArray[np.float64],
) -> npt.NDArray[np.int32]:
    """Pick, uniformly and independently, an MNIST sample of each digit's label.

    Args:
        split: the MNIST split to draw from.
        digits: ``(B, L)`` labels; entries where ``valid`` is False are ignored.
        valid: ``(B, L)`` which slots hold a digit, or None when all do.
        uniform: ``(B, L)`` floats uniform on [0, 1), one per digit.

    Returns:
        ``(B, L) int32`` indices into ``split.images``; ``-1`` where ``valid`` is False.

    Raises:
        InvalidValueError: the split holds no sample of a requested label.
    """
    labels = digits if valid is None else np.where(valid, digits, 0)
    counts = split.label_counts[labels]
    if split.missing_labels and counts.min() < 1:
        missing = int(labels[counts < 1][0])
        raise InvalidValueError(
            f"MNIST {split.source} split at {split.location} has no digit {missing}"
        )
    chosen = split.label_order[split.label_starts[labels] + (uniform * counts).astype(np.int64)]
    return chosen if valid is None else np.where(valid, chosen, np.int32(-1))
