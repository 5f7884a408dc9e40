"""compose, the batch engine: a block equals its samples composed one by one, boxes, layouts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pytest

from seqbuilder.image.compose import compose, widest_width
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist

# Critical value of the chi-square distribution at p = 0.001 with 12 degrees of freedom.
CHI2_CRITICAL_P001_DF12 = 32.909

LENGTHS = np.array([5, 1, 3, 5, 2, 4, 5, 1, 3, 5, 2, 4], np.int64)
SLOTS = int(LENGTHS.max())
PAD_WIDTH = widest_width(SLOTS, 12)  # room for every composition of the block below
SCALE_WIDTH = 100  # some compositions of the block fit in it, others do not


class Block(NamedTuple):
    glyphs: npt.NDArray[np.uint8]  # (B, L, 28, 28)
    ink_boxes: npt.NDArray[np.int16]  # (B, L, 4)
    lengths: npt.NDArray[np.int64]  # (B,)
    gaps: npt.NDArray[np.int64]  # (B, L - 1)


@pytest.fixture(scope="session")
def real_split(real_mnist_dir: Path) -> MnistSource:
    return load_mnist("train", real_mnist_dir)


@pytest.fixture(scope="session")
def block(real_split: MnistSource) -> Block:
    """A block of real MNIST digits of mixed lengths, with gaps from -27 to 12."""
    rng = np.random.default_rng(7)
    sources = rng.integers(0, len(real_split.images), (LENGTHS.size, SLOTS))
    gaps = rng.integers(-12, 13, (LENGTHS.size, SLOTS - 1))
    gaps[0] = [0, 12, 3, 7]  # no overlap
    gaps[3] = -27  # the most overlap allowed
    gaps[1] = -27  # garbage in unused slots must be ignored
    return Block(real_split.images[sources], real_split.ink_boxes[sources], LENGTHS, gaps)


def run(
    block: Block,
    rows: slice | npt.NDArray[np.intp],
    width: int,
    options: ComposeOptions,
    dtype: type[np.uint8] | type[np.float32] = np.float32,
    slots: int = SLOTS,
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.int16]]:
    """Compose the chosen rows of ``block`` with their first ``slots`` digit slots."""
    return compose(
        block.glyphs[rows, :slots],
        block.ink_boxes[rows, :slots],
        block.lengths[rows],
        block.gaps[rows, : slots - 1],
        width,
        options=options,
        rng=np.random.default_rng(0),
        dtype=dtype,
    )


def full_ink_glyphs(count: int, slots: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Return ``(count, slots)`` glyphs that are solid 255, and their ink boxes."""
    glyphs = np.full((count, slots, 28, 28), 255, np.uint8)
    return glyphs, np.tile(np.array([0, 0, 28, 28], np.int16), (count, slots, 1))


ALL_OPTIONS = [
    pytest.param(
        ComposeOptions(fit, align, crop, background), id=f"{fit}-{align}-{crop}-{background}"
    )
    for fit, align, crop, background in itertools.product(
        ("pad", "scale", "auto"), ("center", "left"), ("box", "ink"), ("black", "white")
    )
]


# --- widest_width ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_digits", "max_gap", "expected"),
    [
        pytest.param(1, 50, 28, id="one-digit"),
        pytest.param(3, 4, 92, id="three-digits-gap-4"),
        pytest.param(4, 10, 142, id="spec-example"),
        pytest.param(4, 0, 112, id="touching"),
        pytest.param(4, -27, 31, id="overlap-max"),
    ],
)
def test_widest_width_is_the_width_at_the_largest_gaps(
    n_digits: int, max_gap: int, expected: int
) -> None:
    assert widest_width(n_digits, max_gap) == expected


# --- a block equals its samples --------------------------------------------------------------


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_a_block_equals_its_samples_composed_one_at_a_time(
    block: Block, options: ComposeOptions
) -> None:
    width = PAD_WIDTH if options.fit == "pad" else SCALE_WIDTH
    images, boxes = run(block, slice(None), width, options)
    assert images.shape == (LENGTHS.size, 28, width)
    assert images.dtype == np.float32
    assert boxes.shape == (LENGTHS.size, SLOTS, 4)
    assert boxes.dtype == np.int16
    for row, length in enumerate(LENGTHS):
        alone, alone_boxes = run(block, slice(row, row + 1), width, options)
        np.testing.assert_array_equal(images[row], alone[0], err_msg=f"sample {row}")
        np.testing.assert_array_equal(boxes[row], alone_boxes[0])
        # Without the unused slots at all, the sample comes out the same.
        trimmed, trimmed_boxes = run(block, slice(row, row + 1), width, options, slots=length)
        np.testing.assert_array_equal(images[row], trimmed[0], err_msg=f"sample {row} trimmed")
        np.testing.assert_array_equal(boxes[row, :length], trimmed_boxes[0])


def test_the_block_mixes_padded_and_scaled_samples_under_fit_auto(block: Block) -> None:
    used_gaps = np.where(np.arange(SLOTS - 1) < LENGTHS[:, None] - 1, block.gaps, 0)
    fits = 28 * LENGTHS + used_gaps.sum(axis=1) <= SCALE_WIDTH
    assert 0 < fits.sum() < fits.size
    auto, _ = run(block, slice(None), SCALE_WIDTH, ComposeOptions(fit="auto"))
    pad, _ = run(block, fits, SCALE_WIDTH, ComposeOptions(fit="pad"))
    scale, _ = run(block, ~fits, SCALE_WIDTH, ComposeOptions(fit="scale"))
    np.testing.assert_array_equal(auto[fits], pad)
    np.testing.assert_array_equal(auto[~fits], scale)


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_uint8_output_is_the_rounded_float_output(block: Block, options: ComposeOptions) -> None:
    width = PAD_WIDTH if options.fit == "pad" else SCALE_WIDTH
    values, values_boxes = run(block, slice(None), width, options)
    raw, raw_boxes = run(block, slice(None), width, options, dtype=np.uint8)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, np.rint(values * np.float32(255)).astype(np.uint8))
    np.testing.assert_array_equal(raw_boxes, values_boxes)


# --- boxes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("crop", [pytest.param(c, id=c) for c in ("box", "ink")])
@pytest.mark.parametrize("align", [pytest.param(a, id=a) for a in ("center", "left", "random")])
def test_each_box_lies_in_the_image_and_holds_its_digits_ink(
    block: Block, crop: str, align: str
) -> None:
    options = ComposeOptions(fit="pad", align=align, digit_crop=crop)
    images, boxes = run(block, slice(None), PAD_WIDTH, options)
    for row, length in enumerate(LENGTHS):
        assert (boxes[row, length:] == -1).all()
        for slot in range(length):
            x0, y0, x1, y1 = (int(v) for v in boxes[row, slot])
            ix0, iy0, ix1, iy1 = (int(v) for v in block.ink_boxes[row, slot])
            assert 0 <= x0 < x1 <= PAD_WIDTH
            assert (y0, y1) == (iy0, iy1)
            assert x1 - x0 == ix1 - ix0
            ink = block.glyphs[row, slot, iy0:iy1, ix0:ix1].astype(np.float32) / np.float32(255)
            shown = images[row, y0:y1, x0:x1]
            # Overlapping neighbours may add ink, never remove it (pixel-wise maximum).
            assert (shown >= ink).all(), f"sample {row} digit {slot}"
            if (block.gaps[row, : length - 1] >= 0).all() and crop == "box":
                np.testing.assert_array_equal(shown, ink)


@pytest.mark.parametrize("fit", [pytest.param(f, id=f) for f in ("scale", "auto")])
def test_boxes_of_resized_samples_stay_inside_the_image(block: Block, fit: str) -> None:
    for crop in ("box", "ink"):
        _, boxes = run(block, slice(None), SCALE_WIDTH, ComposeOptions(fit=fit, digit_crop=crop))
        for row, length in enumerate(LENGTHS):
            assert (boxes[row, length:] == -1).all()
            x0, y0, x1, y1 = boxes[row, :length].T
            assert (x0 >= 0).all()
            assert (x0 < x1).all()
            assert (x1 <= SCALE_WIDTH).all()
            assert (y0 >= 0).all()
            assert (y0 < y1).all()
            assert (y1 <= 28).all()


# --- layouts ---------------------------------------------------------------------------------


def test_ink_crop_overlaps_combine_by_maximum_like_plain_slicing(real_split: MnistSource) -> None:
    # Glyphs at least 12 columns wide and gaps down to -5: no step ever goes backwards.
    ink = real_split.ink_boxes.astype(np.int64)
    wide = np.flatnonzero(ink[:, 2] - ink[:, 0] >= 12)
    rng = np.random.default_rng(3)
    sources = rng.choice(wide, (50, 4))
    gaps = rng.integers(-5, 4, (50, 3))
    width = widest_width(4, 3)
    images, _ = compose(
        real_split.images[sources],
        real_split.ink_boxes[sources],
        np.full(50, 4, np.int64),
        gaps,
        width,
        options=ComposeOptions(align="left", digit_crop="ink"),
        rng=rng,
    )
    for image, row_sources, row_gaps in zip(images, sources, gaps, strict=True):
        reference = np.zeros((28, width), np.uint8)
        x = 0
        for slot, source in enumerate(row_sources):
            x0, _, x1, _ = ink[source]
            kept = real_split.images[source][:, x0:x1]
            target = reference[:, x : x + x1 - x0]
            target[...] = np.maximum(target, kept)
            x += int(x1 - x0) + (int(row_gaps[slot]) if slot < 3 else 0)
        np.testing.assert_array_equal(image, reference.astype(np.float32) / np.float32(255))


def test_align_left_starts_a_full_ink_digit_at_column_zero() -> None:
    glyphs, ink = full_ink_glyphs(1, 3)
    image, boxes = compose(
        glyphs,
        ink,
        np.array([3]),
        np.array([[2, 5]]),
        100,
        options=ComposeOptions(align="left"),
        rng=np.random.default_rng(0),
    )
    inked = np.flatnonzero(image[0].any(axis=0))
    assert inked[0] == 0
    assert inked.tolist() == [*range(28), *range(30, 58), *range(63, 91)]
    assert boxes[0].tolist() == [[0, 0, 28, 28], [30, 0, 58, 28], [63, 0, 91, 28]]


def test_align_random_offsets_are_uniform_over_the_free_columns() -> None:
    free = 12
    glyphs, ink = full_ink_glyphs(3900, 1)
    images, boxes = compose(
        glyphs,
        ink,
        np.ones(3900, np.int64),
        np.zeros((3900, 0), np.int64),
        28 + free,
        options=ComposeOptions(align="random"),
        rng=np.random.default_rng(12),
    )
    offsets = images.any(axis=1).argmax(axis=1)
    np.testing.assert_array_equal(offsets, boxes[:, 0, 0])
    counts = np.bincount(offsets, minlength=free + 1)
    assert counts.size == free + 1  # never past the last free column
    expected = counts.sum() / counts.size
    assert ((counts - expected) ** 2 / expected).sum() < CHI2_CRITICAL_P001_DF12


def test_fit_scale_antialiases_thin_strokes_instead_of_dropping_them() -> None:
    # Eight one-column strokes, 28 columns apart, shrunk 4x: sampling every fourth column would
    # hit all of them or none; an antialiasing filter spreads each over its neighbours.
    glyphs = np.zeros((1, 8, 28, 28), np.uint8)
    glyphs[..., 4:24, 13] = 255
    ink = np.tile(np.array([13, 4, 14, 24], np.int16), (1, 8, 1))
    image, _ = compose(
        glyphs,
        ink,
        np.array([8]),
        np.zeros((1, 7), np.int64),
        56,
        options=ComposeOptions(fit="scale"),
        rng=np.random.default_rng(0),
    )
    columns = image[0].sum(axis=0)
    stroke_mass = 20.0  # 20 rows of value 1 in one column
    per_digit = columns.reshape(8, 7).sum(axis=1)
    np.testing.assert_allclose(per_digit, stroke_mass / 4, rtol=0.05)
    assert image.max() < 0.5  # spread over several output columns, not copied


def test_fit_pad_rejects_a_composition_wider_than_the_image() -> None:
    glyphs, ink = full_ink_glyphs(2, 4)
    with pytest.raises(ValueError, match=r"a composition needs 142 columns, more than image_widt"):
        compose(
            glyphs,
            ink,
            np.array([4, 4]),
            np.array([[0, 0, 0], [10, 10, 10]]),
            141,
            options=ComposeOptions(fit="pad"),
            rng=np.random.default_rng(0),
        )
