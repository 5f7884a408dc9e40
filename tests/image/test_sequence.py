"""generate_numbers_sequence and generate_batch: the core contract on real and tiny MNIST."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from seqbuilder import generate_numbers_sequence
from seqbuilder.image.engine import Batch, generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist
from tests.support.idx_files import TINY_BOX, tiny_split

# Critical values of the chi-square distribution at p = 0.001, by degrees of freedom; the
# statistics below use fixed seeds, so a pass or a failure is repeatable.
CHI2_CRITICAL_P001 = {7: 24.322, 9: 27.877}

PAD_BOX_BLACK = ComposeOptions(fit="pad", align="center", digit_crop="box", background="black")

TINY_INK_LEFT = TINY_BOX[0]  # columns of a tiny digit's box left of its ink
TINY_INK_RIGHT = 28 - TINY_BOX[2]  # columns of a tiny digit's box right of its ink
TINY_INK_WIDTH = TINY_BOX[2] - TINY_BOX[0]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-xdg-cache")


@pytest.fixture
def real_train(
    real_mnist_dir: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> MnistSource:
    """Real MNIST train, found through $SEQBUILDER_DATA exactly as users find it."""
    # load_mnist caches per (source, data_dir, $SEQBUILDER_DATA, $XDG_CACHE_HOME); one empty
    # cache folder for the whole session keeps that key fixed, so the 60000 images are read
    # once rather than once per test.
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    return load_mnist("train")


@pytest.fixture
def tiny_dir(tiny_mnist_dir: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny MNIST (image i of train is filled with i + 1, of test with i + 101)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    return tiny_mnist_dir


def draw(
    split: MnistSource,
    digits: list[list[int]],
    spacing: tuple[int, int],
    width: int,
    *,
    options: ComposeOptions = PAD_BOX_BLACK,
    seed: int = 0,
) -> Batch:
    """Call generate_batch on rows of digits (left-aligned, -1 padded) with a seeded rng."""
    slots = max(len(row) for row in digits)
    block = np.array([row + [0] * (slots - len(row)) for row in digits], np.int64)
    lengths = np.array([len(row) for row in digits], np.int64)
    rng = np.random.default_rng(seed)
    return generate_batch(split, block, lengths, spacing, width, options, rng)


def as_float(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Return raw MNIST pixels as the contract's values, raw / 255 in float32."""
    return raw.astype(np.float32) / np.float32(255)


def ink_columns(image: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
    """Return the indices of the columns of a black-background image that hold ink."""
    return np.flatnonzero(image.any(axis=0))


def tiny_digits(image: npt.NDArray[np.float32]) -> list[tuple[int, int]]:
    """Locate tiny-MNIST digits in a black image composed with gaps >= 0.

    Returns:
        ``(first column of the digit's 28-column box, fill value)`` for each digit, left to
        right. Every tiny image's ink is a solid rectangle of one value, so each digit shows as
        one run of equal values along a row that crosses the ink.
    """
    row = np.rint(image[TINY_BOX[1]] * 255).astype(np.int64)
    found = []
    column = 0
    while column < row.size:
        if row[column] == 0:
            column += 1
            continue
        end = column
        while end < row.size and row[end] == row[column]:
            end += 1
        assert end - column == TINY_INK_WIDTH, f"ink run at column {column} is {end - column} wide"
        found.append((column - TINY_INK_LEFT, int(row[column])))
        column = end
    return found


def chi_square(counts: npt.NDArray[np.int64]) -> float:
    """Return Pearson's statistic of ``counts`` against equal expected counts."""
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


# --- shape, dtype, range and seeds -----------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "spacing", "width", "options"),
    [
        pytest.param([0, 9, 6, 5], (0, 10), 160, {}, id="spec-example"),
        pytest.param([7], (0, 0), 28, {}, id="one-digit-exact-width"),
        pytest.param("31415926", (-5, 3), 40, {"fit": "scale"}, id="scale-down"),
        pytest.param("42", (2, 2), 300, {"fit": "scale"}, id="scale-up"),
        pytest.param("2718", (0, 8), 90, {"fit": "auto", "digit_crop": "ink"}, id="auto-ink"),
        pytest.param("0965", (0, 10), 161, {"align": "random"}, id="random-align"),
        pytest.param("0965", (-27, 10), 200, {"background": "white"}, id="white-overlap"),
    ],
)
def test_result_is_float32_28_rows_by_image_width_in_the_unit_range(
    real_train: MnistSource,
    digits: Any,
    spacing: tuple[int, int],
    width: int,
    options: dict[str, str],
) -> None:
    image = generate_numbers_sequence(digits, spacing, width, seed=3, **options)
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.float32
    assert image.shape == (28, width)
    assert image.min() >= 0
    assert image.max() <= 1
    assert image.max() > 0.5  # some ink made it


def test_the_same_int_seed_gives_the_same_array(real_train: MnistSource) -> None:
    first = generate_numbers_sequence([0, 9, 6, 5], (0, 10), 160, seed=1234)
    second = generate_numbers_sequence([0, 9, 6, 5], (0, 10), 160, seed=1234)
    np.testing.assert_array_equal(first, second)


def test_other_seeds_give_other_arrays(real_train: MnistSource) -> None:
    images = [generate_numbers_sequence("0965", (0, 10), 160, seed=s).tobytes() for s in range(20)]
    assert len(set(images)) == 20


def test_a_numpy_integer_seed_acts_like_the_same_int(real_train: MnistSource) -> None:
    np.testing.assert_array_equal(
        generate_numbers_sequence("0965", (0, 10), 160, seed=np.int64(77)),
        generate_numbers_sequence("0965", (0, 10), 160, seed=77),
    )


def test_a_generator_seed_is_drawn_from_and_advanced(real_train: MnistSource) -> None:
    first = generate_numbers_sequence("0965", (0, 10), 160, seed=np.random.default_rng(5))
    again = generate_numbers_sequence("0965", (0, 10), 160, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    shared = np.random.default_rng(5)
    np.testing.assert_array_equal(
        generate_numbers_sequence("0965", (0, 10), 160, seed=shared), first
    )
    # The generator moved on, so the next call draws other digit images.
    following = generate_numbers_sequence("0965", (0, 10), 160, seed=shared)
    assert not np.array_equal(following, first)


def test_seed_none_draws_fresh_entropy(real_train: MnistSource) -> None:
    images = {generate_numbers_sequence("0965", (0, 10), 160).tobytes() for _ in range(5)}
    assert len(images) == 5


@pytest.mark.parametrize(
    "digits",
    [
        pytest.param((0, 9, 6, 5), id="tuple"),
        pytest.param(np.array([0, 9, 6, 5]), id="int64-array"),
        pytest.param(np.array([0, 9, 6, 5], np.uint8), id="uint8-array"),
        pytest.param(np.array([0, 9, 6, 5], np.int8), id="int8-array"),
        pytest.param([np.int32(0), np.int32(9), np.int32(6), np.int32(5)], id="numpy-scalars"),
        pytest.param("0965", id="string"),
    ],
)
def test_tuples_numpy_integers_and_strings_act_like_the_list(
    real_train: MnistSource, digits: Any
) -> None:
    np.testing.assert_array_equal(
        generate_numbers_sequence(digits, (0, 10), 160, seed=8),
        generate_numbers_sequence([0, 9, 6, 5], (0, 10), 160, seed=8),
    )


def test_numpy_integer_spacing_and_width_act_like_ints(real_train: MnistSource) -> None:
    np.testing.assert_array_equal(
        generate_numbers_sequence("0965", np.array([0, 10]), np.int64(160), seed=8),
        generate_numbers_sequence("0965", (0, 10), 160, seed=8),
    )


# --- every digit block is an MNIST image of its label -----------------------------------------


def test_every_digit_block_is_exactly_an_mnist_train_image_of_its_label(
    real_train: MnistSource,
) -> None:
    rng = np.random.default_rng(2024)
    digits = rng.integers(0, 10, (300, 5)).tolist()
    width = 28 * 5 + 4 * 6 + 9
    batch = draw(real_train, digits, (0, 6), width, seed=11)
    assert (real_train.labels[batch.source_index] == np.array(digits)).all()
    for image, sources, gaps in zip(batch.images, batch.source_index, batch.gaps, strict=True):
        natural = 28 * 5 + int(gaps.sum())
        starts = (width - natural) // 2 + np.concatenate([[0], np.cumsum(28 + gaps)])
        expected = np.zeros((28, width), np.float32)
        for start, source in zip(starts, sources, strict=True):
            expected[:, start : start + 28] = as_float(real_train.images[source])
        np.testing.assert_array_equal(image, expected)


def test_left_aligned_blocks_of_the_public_function_are_mnist_images_of_the_digits(
    real_train: MnistSource,
) -> None:
    # With align="left" and a fixed gap the block positions follow from the contract alone,
    # so each block can be looked up among all 60000 images by its bytes.
    index_of = {image.tobytes(): i for i, image in enumerate(real_train.images)}
    digits, gap = [3, 1, 4, 1, 5], 2
    for seed in range(20):
        image = generate_numbers_sequence(digits, (gap, gap), 200, seed=seed, align="left")
        raw = np.rint(image * 255).astype(np.uint8)
        for position, digit in enumerate(digits):
            start = position * (28 + gap)
            block = raw[:, start : start + 28]
            found = index_of.get(np.ascontiguousarray(block).tobytes())
            assert found is not None, f"seed {seed}: block {position} is no MNIST train image"
            assert real_train.labels[found] == digit
            np.testing.assert_array_equal(image[:, start : start + 28], as_float(block))
        assert not image[:, len(digits) * (28 + gap) - gap :].any()


@pytest.mark.parametrize(
    ("digits", "spacing", "width"),
    [
        pytest.param("0123456789", (0, 4), 320, id="all-digits"),
        pytest.param([9, 9, 9], (0, 0), 84, id="repeated-digit-no-room"),
        pytest.param((5,), (3, 7), 40, id="one-digit"),
        pytest.param("3141", (1, 12), 200, id="wide-gaps"),
    ],
)
def test_the_public_function_places_tiny_images_of_the_requested_digits_in_order(
    tiny_dir: Path, digits: Any, spacing: tuple[int, int], width: int
) -> None:
    images, labels = tiny_split("train")
    wanted = [int(d) for d in digits]
    for seed in range(10):
        image = generate_numbers_sequence(digits, spacing, width, seed=seed, data_dir=tiny_dir)
        found = tiny_digits(image)
        assert [int(labels[value - 1]) for _, value in found] == wanted
        expected = np.zeros((28, width), np.float32)
        for start, value in found:
            expected[:, start : start + 28] = as_float(images[value - 1])
        np.testing.assert_array_equal(image, expected)


# --- gaps ------------------------------------------------------------------------------------


def test_gaps_of_the_public_function_stay_in_the_closed_range_and_reach_both_ends(
    tiny_dir: Path,
) -> None:
    seen: set[int] = set()
    for seed in range(200):
        image = generate_numbers_sequence("123", (2, 5), 120, seed=seed, data_dir=tiny_dir)
        starts = [start for start, _ in tiny_digits(image)]
        seen.update(int(gap) for gap in np.diff(starts) - 28)
    assert seen == {2, 3, 4, 5}


def test_drawn_gaps_are_uniform_over_the_closed_range(real_train: MnistSource) -> None:
    low, high = -5, 4
    digits = [[1, 2, 3, 4, 5]] * 4000
    batch = draw(real_train, digits, (low, high), 200, seed=99)
    assert batch.gaps.min() == low
    assert batch.gaps.max() == high
    counts = np.bincount(batch.gaps.ravel() - low, minlength=high - low + 1)
    assert counts.size == high - low + 1
    assert chi_square(counts) < CHI2_CRITICAL_P001[counts.size - 1]


def test_drawn_gaps_match_the_ink_positions_in_the_image(real_train: MnistSource) -> None:
    batch = draw(real_train, [[7, 0, 2]] * 50, (0, 9), 120, seed=4)
    ink_x0 = real_train.ink_boxes[batch.source_index][..., 0]
    window_starts = batch.boxes[..., 0] - ink_x0
    np.testing.assert_array_equal(np.diff(window_starts, axis=1) - 28, batch.gaps)


# --- which MNIST samples are drawn -----------------------------------------------------------


def test_draws_of_one_digit_spread_over_many_of_its_mnist_samples(real_train: MnistSource) -> None:
    threes = np.flatnonzero(real_train.labels == 3)
    index_of = {real_train.images[i].tobytes(): int(i) for i in threes}
    hits = []
    for seed in range(2000):
        image = generate_numbers_sequence([3], (0, 0), 28, seed=seed)
        hits.append(index_of[np.rint(image * 255).astype(np.uint8).tobytes()])
    assert len(set(hits)) > 1000


def test_draws_are_uniform_over_the_samples_of_the_label(real_train: MnistSource) -> None:
    batch = draw(real_train, [[3]] * 20000, (0, 0), 28, seed=5)
    assert (real_train.labels[batch.source_index] == 3).all()
    # Rank of each drawn sample among the label's samples, in 10 equal bins.
    threes = np.flatnonzero(real_train.labels == 3)
    rank = np.searchsorted(threes, batch.source_index[:, 0])
    counts = np.bincount(rank * 10 // threes.size, minlength=10)
    assert chi_square(counts) < CHI2_CRITICAL_P001[9]


def test_source_test_draws_only_test_digits(tiny_dir: Path) -> None:
    test_images, test_labels = tiny_split("test")
    for seed in range(10):
        image = generate_numbers_sequence(
            "0123456789", (0, 2), 320, seed=seed, source="test", data_dir=tiny_dir
        )
        found = tiny_digits(image)
        assert all(value >= 101 for _, value in found)
        assert [int(test_labels[value - 101]) for _, value in found] == list(range(10))
        for start, value in found:
            np.testing.assert_array_equal(
                image[:, start : start + 28], as_float(test_images[value - 101])
            )


def test_the_default_source_draws_train_digits(tiny_dir: Path) -> None:
    for seed in range(10):
        image = generate_numbers_sequence("0123456789", (0, 2), 320, seed=seed, data_dir=tiny_dir)
        assert all(1 <= value <= 30 for _, value in tiny_digits(image))


def test_source_test_on_real_mnist_draws_test_images_of_the_label(
    real_train: MnistSource,
) -> None:
    test = load_mnist("test")
    sevens = {test.images[i].tobytes() for i in np.flatnonzero(test.labels == 7)}
    for seed in range(30):
        image = generate_numbers_sequence([7], (0, 0), 28, seed=seed, source="test")
        assert np.rint(image * 255).astype(np.uint8).tobytes() in sevens


# --- fit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [pytest.param(w, id=f"width-{w}") for w in (1, 17, 56, 97, 400)])
def test_fit_scale_gives_exactly_image_width_columns(real_train: MnistSource, width: int) -> None:
    image = generate_numbers_sequence("0965", (0, 10), width, seed=1, fit="scale")
    assert image.shape == (28, width)
    assert image.dtype == np.float32
    assert 0 <= image.min() <= image.max() <= 1


@pytest.mark.parametrize("width", [pytest.param(w, id=f"width-{w}") for w in (40, 70, 100)])
def test_fit_scale_keeps_the_ink_mass_in_proportion_to_the_width(
    real_train: MnistSource, width: int
) -> None:
    for seed in range(5):
        # The same seed draws the same digits and gaps whatever the layout options.
        left = ComposeOptions(align="left")
        natural = draw(real_train, [[0, 9, 6, 5]], (0, 10), 28 * 4 + 30, options=left, seed=seed)
        natural_width = 28 * 4 + int(natural.gaps.sum())
        natural_image = natural.images[0][:, :natural_width]
        scaled = generate_numbers_sequence([0, 9, 6, 5], (0, 10), width, seed=seed, fit="scale")
        ratio = scaled.sum() * natural_width / width / natural_image.sum()
        assert ratio == pytest.approx(1, abs=0.02)
        # The ink keeps its place relative to the width: its centre of mass does not move.
        centre = np.average(np.arange(width) + 0.5, weights=scaled.sum(axis=0)) / width
        natural_centre = np.average(
            np.arange(natural_width) + 0.5, weights=natural_image.sum(axis=0)
        )
        assert centre == pytest.approx(natural_centre / natural_width, abs=0.01)


def test_fit_auto_pads_the_compositions_that_fit_and_scales_the_others(
    real_train: MnistSource,
) -> None:
    digits, spacing, width = [0, 9, 6, 5], (0, 10), 130  # natural widths are 112..142
    padded = scaled = 0
    for seed in range(40):
        auto = generate_numbers_sequence(digits, spacing, width, seed=seed, fit="auto")
        drawn = draw(real_train, [digits], spacing, 200, seed=seed)
        if 28 * 4 + drawn.gaps.sum() <= width:
            pad = draw(real_train, [digits], spacing, width, seed=seed)
            np.testing.assert_array_equal(auto, pad.images[0])
            padded += 1
        else:
            scale = generate_numbers_sequence(digits, spacing, width, seed=seed, fit="scale")
            np.testing.assert_array_equal(auto, scale)
            scaled += 1
    assert padded > 5
    assert scaled > 5


def test_fit_auto_equals_fit_pad_when_every_composition_fits(real_train: MnistSource) -> None:
    for seed in range(10):
        np.testing.assert_array_equal(
            generate_numbers_sequence("0965", (-3, 10), 160, seed=seed, fit="auto"),
            generate_numbers_sequence("0965", (-3, 10), 160, seed=seed, fit="pad"),
        )


# --- align -----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [pytest.param(w, id=f"width-{w}") for w in (86, 87, 90, 131)])
def test_align_center_leaves_free_margins_equal_within_one_column(
    tiny_dir: Path, width: int
) -> None:
    for seed in range(10):
        image = generate_numbers_sequence("123", (0, 1), width, seed=seed, data_dir=tiny_dir)
        ink = ink_columns(image)
        left = ink[0] - TINY_INK_LEFT
        right = width - (ink[-1] + 1) - TINY_INK_RIGHT
        assert left >= 0
        assert right >= 0
        assert abs(left - right) <= 1


@pytest.mark.parametrize("width", [pytest.param(w, id=f"width-{w}") for w in (124, 125, 200)])
def test_align_center_with_ink_crop_centres_the_ink_within_one_column(
    real_train: MnistSource, width: int
) -> None:
    for seed in range(10):
        image = generate_numbers_sequence(
            "0965", (0, 4), width, seed=seed, digit_crop="ink", align="center"
        )
        ink = ink_columns(image)
        assert abs(ink[0] - (width - 1 - ink[-1])) <= 1


def test_align_left_puts_the_first_box_at_column_zero(tiny_dir: Path) -> None:
    for seed in range(10):
        image = generate_numbers_sequence(
            "123", (0, 3), 150, seed=seed, align="left", data_dir=tiny_dir
        )
        assert tiny_digits(image)[0][0] == 0


def test_align_left_with_ink_crop_starts_the_ink_at_column_zero(real_train: MnistSource) -> None:
    for seed in range(10):
        image = generate_numbers_sequence(
            "0965", (0, 4), 150, seed=seed, align="left", digit_crop="ink"
        )
        assert ink_columns(image)[0] == 0


def test_align_random_offsets_vary_over_every_free_column_and_stay_in_bounds(
    tiny_dir: Path,
) -> None:
    free = 10
    offsets = []
    for seed in range(300):
        image = generate_numbers_sequence(
            "12", (0, 0), 56 + free, seed=seed, align="random", data_dir=tiny_dir
        )
        found = tiny_digits(image)
        assert len(found) == 2
        offsets.append(found[0][0])
    assert set(offsets) == set(range(free + 1))


# --- digit_crop ------------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [pytest.param(g, id=f"gap-{g}") for g in (0, 1, 5, 13)])
def test_ink_crop_makes_the_gap_the_empty_columns_between_strokes(tiny_dir: Path, gap: int) -> None:
    for seed in range(5):
        image = generate_numbers_sequence(
            "47", (gap, gap), 120, seed=seed, digit_crop="ink", data_dir=tiny_dir
        )
        ink = ink_columns(image)
        between = np.diff(ink) - 1
        assert between[between > 0].tolist() == ([gap] if gap else [])
        assert ink.size == 2 * TINY_INK_WIDTH


@pytest.mark.parametrize("gap", [pytest.param(g, id=f"gap-{g}") for g in (0, 3, 8)])
def test_ink_crop_on_real_mnist_leaves_exactly_gap_empty_columns_between_digits(
    real_train: MnistSource, gap: int
) -> None:
    options = ComposeOptions(digit_crop="ink")
    batch = draw(real_train, [[1, 8, 0, 7]] * 100, (gap, gap), 200, options=options, seed=gap)
    for image, boxes in zip(batch.images, batch.boxes, strict=True):
        for left, right in pairwise(boxes):
            assert right[0] - left[2] == gap
            assert image[:, left[2] - 1].any()  # the left digit's last inked column
            assert image[:, right[0]].any()  # the right digit's first inked column
            assert not image[:, left[2] : right[0]].any()


# --- background ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fit": "pad"}, id="pad"),
        pytest.param({"fit": "scale"}, id="scale"),
        pytest.param({"digit_crop": "ink", "align": "random"}, id="ink-random"),
        pytest.param({"fit": "auto"}, id="auto"),
    ],
)
def test_white_background_is_one_minus_black_for_the_same_seed(
    real_train: MnistSource, options: dict[str, str]
) -> None:
    for seed in range(5):
        black = generate_numbers_sequence("0965", (-4, 10), 150, seed=seed, **options)
        white = generate_numbers_sequence(
            "0965", (-4, 10), 150, seed=seed, background="white", **options
        )
        assert white.dtype == np.float32
        np.testing.assert_array_equal(white, np.float32(1) - black)


# --- overlaps --------------------------------------------------------------------------------


def test_overlapping_digits_combine_by_pixel_wise_maximum(real_train: MnistSource) -> None:
    width = 140
    batch = draw(real_train, [[8, 3, 0, 6, 9]] * 100, (-20, -1), width, seed=21)
    assert batch.gaps.min() == -20
    for image, sources, gaps in zip(batch.images, batch.source_index, batch.gaps, strict=True):
        starts = np.concatenate([[0], np.cumsum(28 + gaps)])
        natural = int(starts[-1]) + 28
        reference = np.zeros((28, width), np.uint8)
        offset = (width - natural) // 2
        for start, source in zip(starts + offset, sources, strict=True):
            window = reference[:, start : start + 28]
            window[...] = np.maximum(window, real_train.images[source])
        np.testing.assert_array_equal(image, as_float(reference))


def test_overlapping_tiny_digits_show_the_larger_value_where_they_meet(tiny_dir: Path) -> None:
    # Neighbours 10 columns closer than their boxes: their 20-column inks overlap by 2 columns.
    for seed in range(10):
        image = generate_numbers_sequence("123", (-10, -10), 64, seed=seed, data_dir=tiny_dir)
        raw = np.rint(image[TINY_BOX[1]] * 255).astype(np.int64)
        ink = np.flatnonzero(raw)
        assert ink.tolist() == list(range(ink[0], ink[0] + 3 * TINY_INK_WIDTH - 2 * 2))
        row = raw[ink[0] :]
        one, two, three = row[0], row[20], row[38]  # fill values of the three drawn images
        assert [(value - 1) % 10 for value in (one, two, three)] == [1, 2, 3]
        assert row[:18].tolist() == [one] * 18
        assert row[18:20].tolist() == [max(one, two)] * 2
        assert row[20:36].tolist() == [two] * 16
        assert row[36:38].tolist() == [max(two, three)] * 2
        assert row[38:56].tolist() == [three] * 18


def test_the_largest_overlap_of_27_columns_is_accepted(real_train: MnistSource) -> None:
    image = generate_numbers_sequence("0965", (-27, -27), 31, seed=0)
    assert image.shape == (28, 31)
    assert image.any()


# --- bad arguments ---------------------------------------------------------------------------

GOOD = {"digits": [0, 9, 6, 5], "spacing_range": (0, 10), "image_width": 160}


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        pytest.param({"digits": []}, ValueError, r"digits=\[\] is empty", id="empty-list"),
        pytest.param({"digits": ""}, ValueError, r"digits='' is empty", id="empty-string"),
        pytest.param({"digits": np.array([], np.int64)}, ValueError, r"is empty", id="empty-array"),
        pytest.param(
            {"digits": [1, 10]},
            ValueError,
            r"^digits\[1\] is 10, expected an integer in 0\.\.9",
            id="digit-10",
        ),
        pytest.param(
            {"digits": [1, -1]},
            ValueError,
            r"^digits\[1\] is -1, expected an integer in 0\.\.9",
            id="digit-minus-1",
        ),
        pytest.param(
            {"digits": [1, 3.5]}, TypeError, r"digits\[1\] is 3\.5, expected an integer", id="3.5"
        ),
        pytest.param(
            {"digits": "09a5"}, ValueError, r"digits\[2\] is 'a', expected a decimal", id="09a5"
        ),
        pytest.param({"digits": None}, TypeError, r"digits=None is not a sequence", id="None"),
        pytest.param(
            {"digits": [True, False]}, TypeError, r"digits\[0\] is True, expected", id="bools"
        ),
        pytest.param(
            {"digits": np.array([[1, 2], [3, 4]])},
            ValueError,
            r"digits has shape \(2, 2\), expected a flat sequence",
            id="2d-array",
        ),
        pytest.param({"digits": 5}, TypeError, r"digits=5 is not a sequence", id="bare-int"),
        pytest.param(
            {"spacing_range": (5, 1)},
            ValueError,
            r"spacing_range=\(5, 1\): min must be <= max",
            id="min-above-max",
        ),
        pytest.param(
            {"spacing_range": (-28, 0)},
            ValueError,
            r"spacing_range min is -28, expected >= -27",
            id="min-minus-28",
        ),
        pytest.param(
            {"spacing_range": ("a", 1)},
            TypeError,
            r"spacing_range min is 'a', expected an integer",
            id="min-a-string",
        ),
        pytest.param(
            {"spacing_range": (0, 1.5)},
            TypeError,
            r"spacing_range max is 1\.5, expected an integer",
            id="max-float",
        ),
        pytest.param(
            {"spacing_range": 3}, TypeError, r"spacing_range=3 is not a pair", id="not-a-pair"
        ),
        pytest.param({"image_width": 0}, ValueError, r"image_width=0 is too small", id="width-0"),
        pytest.param(
            {"image_width": "100"},
            TypeError,
            r"image_width='100' is not an integer",
            id="width-string",
        ),
        pytest.param(
            {"image_width": 3.0}, TypeError, r"image_width=3\.0 is not an integer", id="width-3.0"
        ),
        pytest.param(
            {"fit": "stretch"},
            ValueError,
            r"fit='stretch' is not a valid option, expected one of 'pad', 'scale', 'auto'",
            id="fit-stretch",
        ),
        pytest.param(
            {"fit": ["pad"]},
            (TypeError, ValueError),
            r"fit=\['pad'\] is not a valid option",
            id="fit-a-list",
        ),
        pytest.param(
            {"align": "middle"},
            ValueError,
            r"align='middle' is not a valid option, expected one of 'center', 'left', 'random'",
            id="align-middle",
        ),
        pytest.param(
            {"digit_crop": "tight"},
            ValueError,
            r"digit_crop='tight' is not a valid option, expected one of 'box', 'ink'",
            id="digit-crop-tight",
        ),
        pytest.param(
            {"background": "grey"},
            ValueError,
            r"background='grey' is not a valid option, expected one of 'black', 'white'",
            id="background-grey",
        ),
        pytest.param(
            {"digits": [1, 2, 3], "spacing_range": (0, 4), "image_width": 91},
            ValueError,
            r"image_width=91 is too small: 3 digits with gaps up to 4 need at least 92 columns",
            id="pad-width-too-small",
        ),
        pytest.param(
            {"source": "val"},
            ValueError,
            r"source='val' is not an MNIST split, expected one of \('train', 'test'\)",
            id="source-val",
        ),
        pytest.param(
            {"seed": "x"},
            TypeError,
            r"seed='x' is not None, an int or a numpy\.random\.Generator",
            id="seed-string",
        ),
        pytest.param({"seed": -1}, ValueError, r"seed=-1 is negative", id="seed-minus-1"),
        pytest.param({"seed": 1.5}, TypeError, r"seed=1\.5 is not None", id="seed-float"),
    ],
)
def test_bad_arguments_raise_the_right_error_with_a_helpful_message(
    real_train: MnistSource,
    changes: dict[str, Any],
    error: type[Exception] | tuple[type[Exception], ...],
    match: str,
) -> None:
    arguments = {**GOOD, **changes}
    digits = arguments.pop("digits")
    spacing = arguments.pop("spacing_range")
    width = arguments.pop("image_width")
    with pytest.raises(error, match=match):
        generate_numbers_sequence(digits, spacing, width, **arguments)


def test_a_too_narrow_pad_width_is_rejected_before_any_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No MNIST is reachable (no $SEQBUILDER_DATA, empty cache, no mirrors), so loading it
    # first would fail differently: the width check must come before anything else.
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    rng = np.random.default_rng(3)
    untouched = np.random.default_rng(3)
    with pytest.raises(ValueError, match=r"need at least 124 columns"):
        generate_numbers_sequence("0965", (0, 4), 123, seed=rng)
    assert rng.random() == untouched.random()
