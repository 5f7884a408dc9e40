"""One image at a time: the batch engine's draws and layout, sized for a single sample.

:func:`compose_one` gives exactly what :func:`~seqbuilder.image.engine.generate_batch` gives for a
batch of one without augmentation: the same draws from the generator, in the same order, and
the same float32 operations on the pixels (``tests/image/test_single.py`` pins both). It only
skips the work a batch needs and one image does not: ``(B, L)`` index arithmetic becomes Python
integers, each 28x28 glyph is copied onto the canvas with two slices, and the ink boxes are not
computed at all. With augmentation the public function uses the batch engine instead.

:func:`seeded_generator` gives the generator ``numpy.random.default_rng(seed)`` would give,
several times faster: numpy's ``SeedSequence(seed)`` hashes the seed, and the four PCG64 state
words are derived from its public ``pool`` in Python (numpy's ``generate_state`` spends most of
its time in an ``errstate`` context and in numpy scalars), then set through the bit generator's
public ``state`` on a generator kept per thread. The first use checks the result against
``PCG64(seed)``; should a numpy release ever seed differently, every call falls back to
``default_rng``.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ..errors import InvalidValueError
from ..mnist.load import MnistSource
from .compose import DIGIT_SIZE, _resample_weights
from .options import ComposeOptions

_BYTE_MAX = np.float32(255)
_SeedSequence = np.random.SeedSequence
_ONE = np.float32(1)

# numpy's SeedSequence.generate_state constants (numpy/random/bit_generator.pyx) and the PCG64
# 128-bit LCG multiplier (pcg64.h, PCG_DEFAULT_MULTIPLIER_128).
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MASK_32 = 0xFFFFFFFF
_MASK_128 = (1 << 128) - 1
_PCG_MULTIPLIER = 0x2360ED051FC65DA44385DF649FCCF645


def _hash_constants() -> tuple[tuple[int, int], ...]:
    """Return generate_state's (xor constant, multiplier) for each of its 8 words.

    Its running hash constant does not depend on the data, so the 8 pairs are fixed.
    """
    pairs, constant = [], _INIT_B
    for _ in range(8):
        following = (constant * _MULT_B) & _MASK_32
        pairs.append((constant, following))
        constant = following
    return tuple(pairs)


((_X0, _K0), (_X1, _K1), (_X2, _K2), (_X3, _K3), (_X4, _K4), (_X5, _K5), (_X6, _K6), (_X7, _K7)) = (
    _hash_constants()
)


def _state_words(pool: list[int]) -> tuple[int, int, int, int]:
    """Return ``SeedSequence.generate_state(4, np.uint64)`` from the sequence's ``pool``.

    Unrolled: this runs once per seeded call, and a loop costs twice as much.
    """
    p0, p1, p2, p3 = pool
    w0 = ((p0 ^ _X0) * _K0) & _MASK_32
    w1 = ((p1 ^ _X1) * _K1) & _MASK_32
    w2 = ((p2 ^ _X2) * _K2) & _MASK_32
    w3 = ((p3 ^ _X3) * _K3) & _MASK_32
    w4 = ((p0 ^ _X4) * _K4) & _MASK_32
    w5 = ((p1 ^ _X5) * _K5) & _MASK_32
    w6 = ((p2 ^ _X6) * _K6) & _MASK_32
    w7 = ((p3 ^ _X7) * _K7) & _MASK_32
    # each word ^= word >> 16; then little-endian pairs of 32-bit words, as numpy views them
    return (
        (w0 ^ w0 >> 16) | (w1 ^ w1 >> 16) << 32,
        (w2 ^ w2 >> 16) | (w3 ^ w3 >> 16) << 32,
        (w4 ^ w4 >> 16) | (w5 ^ w5 >> 16) << 32,
        (w6 ^ w6 >> 16) | (w7 ^ w7 >> 16) << 32,
    )


def _pcg64_state(seed: int) -> dict[str, Any]:
    """Return ``np.random.PCG64(seed).state`` for an int ``seed >= 0``."""
    words = _state_words(_SeedSequence(seed).pool.tolist())
    initial_state = words[0] << 64 | words[1]
    increment = ((words[2] << 64 | words[3]) << 1 | 1) & _MASK_128
    # pcg_setseq_128_srandom_r: state 0, one step, add the initial state, one more step
    state = (increment + initial_state) & _MASK_128
    state = (state * _PCG_MULTIPLIER + increment) & _MASK_128
    return {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": increment},
        "has_uint32": 0,
        "uinteger": 0,
    }


class _Local(threading.local):
    """Each thread's reusable generator: a call sets its state, so threads must not share it."""

    def __init__(self) -> None:
        self.bit_generator = np.random.PCG64(0)
        self.rng = np.random.Generator(self.bit_generator)


_LOCAL = _Local()
_SEEDING_CHECKED: list[bool] = []  # [] until the first call, then [whether the shortcut holds]


def seeded_generator(seed: int) -> np.random.Generator:
    """Return a generator in the state of ``np.random.default_rng(seed)``, for an int >= 0.

    The generator is reused by the next call in the same thread, which resets it: use it
    before calling again.
    """
    if not _SEEDING_CHECKED:
        _SEEDING_CHECKED.append(_pcg64_state(seed) == np.random.PCG64(seed).state)
    if not _SEEDING_CHECKED[0]:
        return np.random.default_rng(seed)
    local = _LOCAL
    local.bit_generator.state = cast(Any, _pcg64_state(seed))
    return local.rng


def compose_one(
    split: MnistSource,
    digits: list[int],
    spacing: tuple[int, int],
    width: int,
    options: ComposeOptions,
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Draw and compose one image, exactly as ``generate_batch`` does for a batch of one.

    Args:
        split: the MNIST split to draw digit images from.
        digits: the digits, each 0..9, at least one.
        spacing: validated ``(min, max)`` gap range.
        width: output width; under ``fit="pad"`` already checked to hold the widest
            composition.
        options: validated composition options.
        rng: the generator every random choice comes from.

    Returns:
        ``(28, width) float32`` image in ``[0, 1]``.

    Raises:
        InvalidValueError: the split holds no sample of a requested digit.
    """
    chosen, gaps = _draw(split, digits, spacing, rng)
    if options.digit_crop == "ink":
        box_lefts, natural = _ink_layout(split, chosen, gaps)
        overlapping = True
    else:  # each 28-column box follows the previous one by 28 + gap >= 1 columns
        box_lefts, left = [0], 0
        for gap in gaps:
            left += DIGIT_SIZE + gap
            box_lefts.append(left)
        natural = left + DIGIT_SIZE
        overlapping = spacing[0] < 0  # a plain copy where no gap can be negative

    fit = options.fit
    if fit == "pad" and natural > width:
        raise InvalidValueError(
            f"a composition needs {natural} columns, more than "
            f"image_width={width} (use fit='scale' or a wider image)"
        )
    padded = fit == "pad" or (fit == "auto" and natural <= width)
    free = width - natural if padded else 0
    align = options.align
    if align == "center":
        offset = free // 2
    elif align == "random":
        offset = int(rng.integers(0, free, endpoint=True))
    else:
        offset = 0
    canvas_width = width if padded else natural
    canvas = _place(split.images, chosen, box_lefts, offset, canvas_width, overlapping)

    values: npt.NDArray[np.float32]
    if padded:  # float32 raw / 255, as the engine's encode_values computes it
        values = canvas.astype(np.float32)
        values /= _BYTE_MAX  # in place and float32 throughout: cheaper than a casting divide
    else:
        values = canvas.astype(np.float32) @ _resample_weights(natural, width)
        values *= np.float32(1 / 255)
        np.clip(values, 0, 1, out=values)
    if options.background == "white":
        values = _ONE - values
    return values


def _draw(
    split: MnistSource, digits: list[int], spacing: tuple[int, int], rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """Draw each digit's MNIST sample and each gap as ``generate_batch`` does (one ``random``)."""
    n_digits = len(digits)
    uniform = rng.random(2 * n_digits - 1).tolist()
    order, starts, counts = split.label_lists
    if split.missing_labels:
        missing = next((d for d in digits if counts[d] < 1), None)
        if missing is not None:
            raise InvalidValueError(
                f"MNIST {split.source} split at {split.location} has no digit {missing}"
            )
    chosen = [order[starts[d] + int(u * counts[d])] for d, u in zip(digits, uniform, strict=False)]
    low, span = spacing[0], spacing[1] - spacing[0] + 1
    return chosen, [low + int(u * span) for u in uniform[n_digits:]]


def _ink_layout(split: MnistSource, chosen: list[int], gaps: list[int]) -> tuple[list[int], int]:
    """Return where each ink-cropped digit's 28-column box starts, and the natural width."""
    box_lefts, natural, x = [], 0, 0  # x: the left column of the digit's ink
    boxes = split.ink_boxes[chosen].tolist()
    for (x0, _, x1, _), gap in zip(boxes, [*gaps, 0], strict=True):
        box_lefts.append(x - x0)
        natural = max(natural, x + x1 - x0)
        # a digit narrower than the overlap never pulls the next one left of itself
        x += max(x1 - x0 + gap, 0)
    return box_lefts, natural


def _place(
    images: npt.NDArray[np.uint8],
    chosen: list[int],
    box_lefts: list[int],
    offset: int,
    canvas_width: int,
    overlapping: bool,
) -> npt.NDArray[np.uint8]:
    """Copy each chosen glyph onto a black ``(28, canvas_width)`` canvas at ``offset + left``.

    Where digits can overlap they combine by maximum, and a window may reach past either edge
    (ink crop): only the part on the canvas is copied. Otherwise each box is a plain copy.
    """
    canvas = np.zeros((DIGIT_SIZE, canvas_width), np.uint8)
    if not overlapping:  # whole 28-column boxes side by side: each lies inside the canvas
        for index, left in zip(chosen, box_lefts, strict=True):
            canvas[:, offset + left : offset + left + DIGIT_SIZE] = images[index]
        return canvas
    for index, left in zip(chosen, box_lefts, strict=True):
        start = offset + left
        if 0 <= start <= canvas_width - DIGIT_SIZE:
            first, last, glyph = start, start + DIGIT_SIZE, images[index]
        else:
            first, last = max(start, 0), min(start + DIGIT_SIZE, canvas_width)
            glyph = images[index, :, first - start : last - start]
        target = canvas[:, first:last]
        np.maximum(target, glyph, out=target)
    return canvas
