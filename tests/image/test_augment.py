"""Augmentation on real MNIST: what each key does, its ranges, exact boxes and reproducibility.

Each key's effect is measured on the images it makes (ink angle, ink size, rows, stroke width,
sharpness, spread), never by reading the code's intermediate values. Geometry conventions are
pinned on synthetic glyphs whose answer is known (a bar, a dot). Boxes are checked by rendering
each digit alone: the same seed with an MNIST split whose other images are blanked draws
exactly the same choices, so only that digit's ink is left in the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from seqbuilder import generate_numbers_sequence
from seqbuilder.errors import InvalidTypeError, InvalidValueError
from seqbuilder.image import filters
from seqbuilder.image.augment import finish_images, transform_glyphs
from seqbuilder.image.engine import Batch, generate_batch
from seqbuilder.image.options import PRESETS, Augment, ComposeOptions, Elastic
from seqbuilder.image.sequence import parse_augment
from seqbuilder.mnist.load import MnistSource, load_mnist

# sha256 of generate_numbers_sequence("0965", (0, 10), 160, seed=7) before augmentation existed.
UNAUGMENTED_0965_SHA256 = "726c976e3f701ebc19b2438399c7a37175a4e4244de5f4423899b2b2b5c489ec"
# Every per-digit key on, blur and noise off: the final image is the composite the boxes describe.
GEOMETRY = dataclasses.replace(PRESETS["heavy"], blur=(0.0, 0.0), noise=0.0)
COPIES = 2000  # transformed copies of one MNIST digit, to measure a key's spread


@pytest.fixture
def train(
    real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> MnistSource:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    return load_mnist("train")


def copies_of(split: MnistSource, index: int, count: int = COPIES) -> npt.NDArray[np.uint8]:
    """``(count, 1, 28, 28)``: one MNIST image in every slot of a one-digit block."""
    return np.broadcast_to(split.images[index], (count, 1, 28, 28)).copy()


def transformed(glyphs: npt.NDArray[np.uint8], params: Augment, seed: int = 0) -> Any:
    images, boxes = transform_glyphs(glyphs, None, params, np.random.default_rng(seed))
    return images[:, 0], boxes[:, 0]


def moments(images: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float64]]:
    """Per image: ink centre, spread and the shear and angle of its ink (intensity moments)."""
    weights = images.astype(np.float64)
    mass = weights.sum(axis=(1, 2))
    ys, xs = np.mgrid[0:28, 0:28]
    cx = (weights * xs).sum(axis=(1, 2)) / mass
    cy = (weights * ys).sum(axis=(1, 2)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    vxx = (weights * dx * dx).sum(axis=(1, 2)) / mass
    vyy = (weights * dy * dy).sum(axis=(1, 2)) / mass
    vxy = (weights * dx * dy).sum(axis=(1, 2)) / mass
    return {
        "mass": mass,
        "cy": cy,
        "radius": np.sqrt(vxx + vyy),
        # x moves right per row moved up: the forward lean of the ink
        "lean": -vxy / vyy,
        # the principal axis, in degrees counterclockwise from vertical
        "angle": np.degrees(0.5 * np.arctan2(2 * vxy, vxx - vyy)),
    }


def stroke_width(images: npt.NDArray[np.uint8]) -> float:
    """Mean length of the horizontal runs of ink (pixels >= 128): a stroke-width measure."""
    ink = images >= 128
    starts = ink[..., 1:] & ~ink[..., :-1]
    runs = starts.sum() + ink[..., 0].sum()
    return float(ink.sum() / runs)


# --- the presets and parsing ---------------------------------------------------------------------


def test_none_is_the_identity_and_the_others_are_not() -> None:
    assert PRESETS["none"].is_identity
    assert Augment().is_identity and parse_augment(None) == Augment()
    assert not PRESETS["light"].is_identity and not PRESETS["heavy"].is_identity


def test_a_mapping_sets_its_keys_and_leaves_the_others_off() -> None:
    params = parse_augment({"rotation": 8, "elastic": {"alpha": 30, "sigma": 4}, "scale": [1, 2]})

    assert params == Augment(rotation=8.0, elastic=Elastic(30.0, 4.0), scale=(1.0, 2.0))
    assert parse_augment("heavy") is PRESETS["heavy"]


BAD_AUGMENTS = [
    pytest.param(
        "extreme",
        InvalidValueError,
        r"augment='extreme' is not a preset, expected "
        r"one of 'none', 'light', 'heavy'",
        id="unknown-preset",
    ),
    pytest.param(
        {"rotate": 5},
        InvalidValueError,
        r"augment has no key 'rotate', expected some of slant, rotation, scale",
        id="unknown-key",
    ),
    pytest.param(
        {"elastic": {"alpha": 1, "sigma": -1}},
        InvalidValueError,
        r"augment\.elastic\.sigma \(-1\.0\) must be in \[0, 16\]",
        id="negative-sigma",
    ),
    pytest.param(
        {"elastic": {"alpha": 30, "sigma": 0}},
        InvalidValueError,
        r"augment\.elastic\.sigma \(0\) must be > 0 when augment\.elastic\.alpha",
        id="alpha-without-sigma",
    ),
    pytest.param(
        {"elastic": {"alfa": 3}},
        InvalidValueError,
        r"augment\.elastic has no key 'alfa', expected some of alpha, sigma",
        id="unknown-elastic-key",
    ),
    pytest.param(
        {"scale": (1.2, 0.9)},
        InvalidValueError,
        r"augment\.scale \(\[1\.2, 0\.9\]\) must have min <= max",
        id="scale-min-max",
    ),
    pytest.param(
        {"scale": (0, 1)},
        InvalidValueError,
        r"augment\.scale \(\[0\.0, 1\.0\]\) must lie in \(0, 3\]",
        id="scale-zero",
    ),
    pytest.param(
        {"blur": (1, 0.5)},
        InvalidValueError,
        r"augment\.blur \(\[1\.0, 0\.5\]\) must have min <= max",
        id="blur-min-max",
    ),
    pytest.param(
        {"thickness": (-9, 0)},
        InvalidValueError,
        r"augment\.thickness \(\[-9\.0, 0\.0\]\) must lie in \[-4, 4\]",
        id="thickness-too-thin",
    ),
    pytest.param(
        {"rotation": -5},
        InvalidValueError,
        r"augment\.rotation \(-5\.0\) must be >= 0",
        id="rotation-negative",
    ),
    pytest.param(
        {"slant": 60},
        InvalidValueError,
        r"augment\.slant \(60\.0\) must be in \[0, 45\]",
        id="slant-too-wide",
    ),
    pytest.param(
        {"noise": 1.5},
        InvalidValueError,
        r"augment\.noise \(1\.5\) must be in \[0, 1\]",
        id="noise-above-1",
    ),
    pytest.param(
        {"baseline": 20},
        InvalidValueError,
        r"augment\.baseline \(20\) must be an integer in 0\.\.14",
        id="baseline-20",
    ),
    pytest.param(
        {"baseline": 1.5},
        InvalidTypeError,
        r"augment\.baseline is 1\.5, expected an integer",
        id="baseline-float",
    ),
    pytest.param(
        {"scale": 1.1},
        InvalidTypeError,
        r"augment\.scale is 1\.1, expected \[min, max\]",
        id="scale-not-pair",
    ),
    pytest.param(
        {"rotation": "8"},
        InvalidTypeError,
        r"augment\.rotation is '8', expected a number",
        id="rotation-string",
    ),
    pytest.param(
        {"noise": float("nan")},
        InvalidValueError,
        r"augment\.noise is nan, expected a finite number",
        id="noise-nan",
    ),
    pytest.param(
        {"elastic": 3},
        InvalidTypeError,
        r"augment\.elastic is 3, expected a mapping of alpha and sigma",
        id="elastic-not-mapping",
    ),
    pytest.param(
        7,
        InvalidTypeError,
        r"augment=7 is not None, a preset name or a mapping",
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("value", "error", "match"), BAD_AUGMENTS)
def test_a_bad_augment_argument_is_rejected_naming_the_key(
    value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        parse_augment(value)


def test_the_api_rejects_a_bad_augment_before_loading_mnist(tmp_path: Path) -> None:
    # No MNIST anywhere: the augment check must come first.
    with pytest.raises(ValueError, match=r"augment\.elastic\.sigma \(-1\.0\)"):
        generate_numbers_sequence(
            "12", (0, 2), 60, augment={"elastic": {"alpha": 1, "sigma": -1}}, data_dir=tmp_path
        )


# --- augment=none changes nothing ----------------------------------------------------------------


def test_augment_none_gives_the_bytes_of_the_unaugmented_api(train: MnistSource) -> None:
    for augment in (None, "none", {}):
        image = generate_numbers_sequence("0965", (0, 10), 160, seed=7, augment=augment)
        assert hashlib.sha256(image.tobytes()).hexdigest() == UNAUGMENTED_0965_SHA256


def test_augment_none_draws_nothing_from_the_generator(train: MnistSource) -> None:
    digits, lengths = np.array([[0, 9, 6], [1, 2, 0]]), np.array([3, 2])
    states = []
    for augment in (None, PRESETS["none"]):
        rng = np.random.default_rng(3)
        generate_batch(train, digits, lengths, (0, 4), 100, ComposeOptions(), rng, augment=augment)
        states.append(rng.bit_generator.state)
    assert states[0] == states[1]


def test_augmentation_never_changes_the_digits_or_their_mnist_sources(
    train: MnistSource,
) -> None:
    rng = np.random.default_rng(0)
    digits, lengths = rng.integers(0, 10, (300, 5)), rng.integers(1, 6, 300)
    plain, heavy = (
        generate_batch(
            train, digits, lengths, (-3, 4), 200, ComposeOptions(), np.random.default_rng(5),
            augment=PRESETS[name],
        )
        for name in ("none", "heavy")
    )  # fmt: skip
    assert np.array_equal(plain.source_index, heavy.source_index)
    assert np.array_equal(plain.gaps, heavy.gaps)
    assert not np.array_equal(plain.images, heavy.images)


# --- each key's effect, on real MNIST -----------------------------------------------------------


def test_slant_is_one_shear_per_sample_shared_by_its_digits_and_moves_the_ink_angle(
    train: MnistSource,
) -> None:
    # Two copies of the same "1" in each of 2000 samples: both lean alike within a sample.
    one = int(np.flatnonzero(train.labels == 1)[0])
    glyphs = np.broadcast_to(train.images[one], (COPIES, 2, 28, 28)).copy()
    images, _ = transform_glyphs(glyphs, None, Augment(slant=20.0), np.random.default_rng(0))
    first, second = moments(images[:, 0])["lean"], moments(images[:, 1])["lean"]
    original = moments(train.images[one : one + 1])["lean"][0]

    assert np.allclose(first, second, atol=0.02)
    shear = first - original  # the lean added, in pixels per row: tan of the slant
    assert np.degrees(np.arctan(shear)).min() == pytest.approx(-20, abs=2)
    assert np.degrees(np.arctan(shear)).max() == pytest.approx(20, abs=2)


def test_rotation_turns_each_digit_within_its_range(train: MnistSource) -> None:
    one = int(np.flatnonzero(train.labels == 1)[0])
    images, _ = transformed(copies_of(train, one), Augment(rotation=10.0))
    turned = moments(images)["angle"] - moments(train.images[one : one + 1])["angle"][0]

    assert turned.min() == pytest.approx(-10, abs=1.5)
    assert turned.max() == pytest.approx(10, abs=1.5)
    assert abs(np.mean(turned)) < 1


def test_scale_resizes_each_digit_within_its_range(train: MnistSource) -> None:
    images, _ = transformed(copies_of(train, 0), Augment(scale=(0.8, 1.2)))
    ratio = moments(images)["radius"] / moments(train.images[:1])["radius"][0]

    assert ratio.min() == pytest.approx(0.8, abs=0.03)
    assert ratio.max() == pytest.approx(1.2, abs=0.03)


def test_baseline_shifts_each_digit_by_whole_rows_within_its_range(train: MnistSource) -> None:
    images, boxes = transformed(copies_of(train, 0), Augment(baseline=3))
    original = train.images[0]
    shifts = boxes[:, 1] - train.ink_boxes[0, 1]

    assert set(shifts.tolist()) == {-3, -2, -1, 0, 1, 2, 3}
    for image, shift in zip(images[:50], shifts[:50], strict=True):
        assert np.array_equal(image, np.roll(original, int(shift), axis=0))


def test_thickness_widens_and_thins_the_strokes_by_about_its_pixels(train: MnistSource) -> None:
    glyphs = train.images[:1000, None]
    width = {
        change: stroke_width(transformed(glyphs, Augment(thickness=(change, change)))[0])
        for change in (-1.0, 0.0, 2.0)
    }
    base = stroke_width(train.images[:1000])

    assert width[0.0] == pytest.approx(base)
    assert 1.2 < width[2.0] - base < 2.8
    assert -1.5 < width[-1.0] - base < -0.3


def test_elastic_fields_have_the_spread_of_smoothed_uniform_noise() -> None:
    # Uniform noise on [-1, 1] (variance 1/3) smoothed by a unit-sum 2-D Gaussian of sigma
    # keeps a variance of 1 / (3 * 4 * pi * sigma**2); times alpha, in 1/256 pixel.
    planes = filters.elastic_planes(4.0, 34.0).astype(np.float64) / filters.FRACTION
    expected = 34.0 / np.sqrt(3 * 4 * np.pi * 4.0**2)

    assert planes.std() == pytest.approx(expected, rel=0.1)
    assert abs(planes.mean()) < 0.1 * expected


def test_elastic_distortion_moves_ink_locally_but_keeps_the_digit_in_place(
    train: MnistSource,
) -> None:
    images, _ = transformed(copies_of(train, 0, 300), Augment(elastic=Elastic(34.0, 4.0)))
    changed = moments(images)
    original = moments(train.images[:1])

    assert (np.abs(images.astype(int) - train.images[0]).max(axis=(1, 2)) > 100).all()
    # a smooth field also moves a digit a little as a whole (about a pixel), never far
    assert np.abs(changed["cy"] - original["cy"][0]).mean() < 1.5
    assert changed["mass"].mean() == pytest.approx(original["mass"][0], rel=0.1)


def test_blur_spreads_a_point_by_its_sigma() -> None:
    point = np.zeros((3, 28, 60), np.float32)
    point[:, 14, 30] = 1
    blurred = filters.blur_samples(point, np.array([0.0, 1.0, 1.5], np.float32), radius=5)
    ys, xs = np.mgrid[0:28, 0:60]

    assert np.array_equal(blurred[0], point[0])
    # (a sampled Gaussian's spread matches its sigma from about 1 pixel up)
    for image, sigma in zip(blurred[1:], (1.0, 1.5), strict=True):
        assert image.sum() == pytest.approx(1, abs=1e-5)
        assert np.sqrt((image * (xs - 30) ** 2).sum()) == pytest.approx(sigma, rel=0.05)
        assert np.sqrt((image * (ys - 14) ** 2).sum()) == pytest.approx(sigma, rel=0.05)


def test_blurring_only_the_inked_columns_equals_blurring_every_column(
    train: MnistSource,
) -> None:
    rng = np.random.default_rng(12)
    digits, lengths = rng.integers(0, 10, (150, 6)), rng.integers(1, 7, 150)
    options = ComposeOptions(align="random")
    blurred = dataclasses.replace(GEOMETRY, blur=(0.2, 1.3))
    batch = generate_batch(
        train, digits, lengths, (-2, 6), 200, options, np.random.default_rng(3), np.uint8,
        augment=GEOMETRY,
    )  # fmt: skip
    finished = finish_images(
        batch.images, batch.boxes, blurred, np.random.default_rng(4), background="black",
        dtype=np.float32,
    )  # fmt: skip
    sigma = 0.2 + np.random.default_rng(4).random((150, 2))[:, 0] * 1.1
    radius = filters.blur_radius(1.3)
    everywhere = filters.blur_samples(batch.images, sigma.astype(np.float32), radius, 1 / 255)

    assert np.allclose(finished, np.minimum(everywhere, 1), atol=1e-6)


def test_noise_is_gaussian_with_one_level_per_sample_in_its_range() -> None:
    grey = np.full((400, 28, 100), 128, np.uint8)
    boxes = np.full((400, 1, 4), -1, np.int16)
    noisy = finish_images(
        grey, boxes, Augment(noise=0.1), np.random.default_rng(0), background="black",
        dtype=np.float32,
    )  # fmt: skip
    deviations = (noisy - np.float32(128 / 255)).std(axis=(1, 2))

    assert deviations.max() <= 0.1 * 1.05 and deviations.min() < 0.005
    assert np.histogram(deviations, bins=4, range=(0, 0.1))[0].min() > 70  # uniform levels
    samples = filters.normal_noise(np.random.default_rng(1), (1, 200_000), np.ones(1, np.float32))
    assert samples.std() == pytest.approx(1, abs=0.01)
    assert np.mean(np.abs(samples) > 1.96) == pytest.approx(0.05, abs=0.003)


# --- the geometry conventions, on glyphs whose answer is known ----------------------------------


def bar() -> npt.NDArray[np.uint8]:
    """A vertical bar, rows 4..23 of columns 13 and 14."""
    glyph = np.zeros((1, 1, 28, 28), np.uint8)
    glyph[0, 0, 4:24, 13:15] = 255
    return glyph


def test_a_positive_slant_leans_the_top_right_and_the_identity_warp_is_exact() -> None:
    glyph = bar()
    ones = np.ones((1, 2, 2), np.float32) * np.eye(2, dtype=np.float32)
    still = filters.warp_glyphs(glyph[:, 0], ones, np.zeros((1, 2), np.float32))
    shear = np.array([[[1.0, 0.5], [0.0, 1.0]]], np.float32)  # inverse of x' = x - 0.5 y
    leaning = filters.warp_glyphs(glyph[:, 0], shear, np.zeros((1, 2), np.float32))
    columns = np.argmax(leaning[0] > 127, axis=1)

    assert np.array_equal(still, glyph[:, 0])
    assert columns[5] > columns[22]  # top row right of the bottom row


def test_the_warp_refuses_more_glyphs_than_its_int32_coordinates_can_address() -> None:
    count = filters.MAX_WARP_GLYPHS + 1
    glyphs = np.broadcast_to(np.zeros((28, 28), np.uint8), (count, 28, 28))
    inverse = np.broadcast_to(np.eye(2, dtype=np.float32), (count, 2, 2))

    with pytest.raises(ValueError, match=rf"at most {count - 1} glyphs at once, got {count}"):
        filters.warp_glyphs(glyphs, inverse, np.zeros((count, 2), np.float32))


# --- boxes: exact, checked by rendering each digit alone -----------------------------------------


def render_alone(
    split: MnistSource, batch: Batch, slot: int, run: Any
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Rerun ``run`` on a split holding only the images drawn for ``slot``: (images, usable).

    A sample is usable when none of its other digits drew one of those images too.
    """
    kept = np.unique(batch.source_index[:, slot][batch.source_index[:, slot] >= 0])
    images = np.zeros_like(split.images)
    images[kept] = split.images[kept]
    alone = run(dataclasses.replace(split, images=images))
    others = np.delete(batch.source_index, slot, axis=1)
    usable = ~np.isin(others, kept).any(axis=1) & (batch.source_index[:, slot] >= 0)
    return alone.images, usable


def ink_extent(image: npt.NDArray[Any], background: str) -> list[int]:
    ink = image > 0 if background == "black" else image < image.max()
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(ComposeOptions(), id="pad-center"),
        pytest.param(ComposeOptions(align="random", background="white"), id="random-white"),
        pytest.param(ComposeOptions(fit="auto", align="left"), id="auto-left"),
    ],
)
def test_each_box_encloses_exactly_its_digits_ink_rendered_alone(
    train: MnistSource, options: ComposeOptions
) -> None:
    rng = np.random.default_rng(11)
    digits, lengths = rng.integers(0, 10, (200, 5)), rng.integers(1, 6, 200)

    def run(split: MnistSource) -> Batch:
        return generate_batch(
            split, digits, lengths, (-6, 3), 150, options, np.random.default_rng(2), np.uint8,
            augment=GEOMETRY,
        )  # fmt: skip

    batch = run(train)
    checked = 0
    for slot in range(5):
        images, usable = render_alone(train, batch, slot, run)
        for index in np.flatnonzero(usable):
            expected = ink_extent(images[index], options.background)
            assert batch.boxes[index, slot].tolist() == expected, (index, slot)
            checked += 1
    assert checked > 500


def test_boxes_describe_the_ink_before_blur_and_noise(train: MnistSource) -> None:
    rng = np.random.default_rng(4)
    digits, lengths = rng.integers(0, 10, (100, 4)), rng.integers(1, 5, 100)
    noisy = dataclasses.replace(GEOMETRY, blur=(0.5, 1.0), noise=0.1)
    clean, blurred = (
        generate_batch(
            train, digits, lengths, (0, 4), 130, ComposeOptions(), np.random.default_rng(9),
            augment=params,
        )
        for params in (GEOMETRY, noisy)
    )  # fmt: skip
    assert np.array_equal(clean.boxes, blurred.boxes)
    assert not np.array_equal(clean.images, blurred.images)


def test_an_ink_cropped_single_digit_box_is_its_whole_ink(train: MnistSource) -> None:
    rng = np.random.default_rng(6)
    digits = rng.integers(0, 10, (300, 1))
    options = ComposeOptions(digit_crop="ink", align="random")
    batch = generate_batch(
        train, digits, np.ones(300, int), (0, 0), 40, options, rng, np.uint8, augment=GEOMETRY
    )
    for image, box in zip(batch.images, batch.boxes[:, 0], strict=True):
        assert box.tolist() == ink_extent(image, "black")


def test_negative_gaps_with_ink_crop_make_transformed_strokes_touch(train: MnistSource) -> None:
    rng = np.random.default_rng(8)
    digits, lengths = rng.integers(0, 10, (200, 2)), np.full(200, 2)
    options = ComposeOptions(digit_crop="ink")
    batch = generate_batch(
        train, digits, lengths, (-2, -2), 80, options, rng, np.uint8, augment=GEOMETRY
    )
    # Each second digit's ink starts 2 columns before the first one's ends.
    assert np.array_equal(batch.boxes[:, 1, 0], batch.boxes[:, 0, 2] - 2)


# --- values and reproducibility ------------------------------------------------------------------


@pytest.mark.parametrize("background", ["black", "white"])
@pytest.mark.parametrize("fit", ["pad", "scale"])
def test_values_stay_in_0_1_and_the_same_seed_gives_the_same_array(
    train: MnistSource, background: str, fit: str
) -> None:
    strong = {"blur": [0.5, 2.0], "noise": 0.5, "thickness": [2, 3], "scale": [1.2, 1.5]}
    kwargs: dict[str, Any] = {"background": background, "fit": fit, "augment": strong}
    first = generate_numbers_sequence("0965", (-5, 5), 130, seed=3, **kwargs)
    again = generate_numbers_sequence("0965", (-5, 5), 130, seed=3, **kwargs)
    other = generate_numbers_sequence("0965", (-5, 5), 130, seed=4, **kwargs)

    assert first.dtype == np.float32 and first.shape == (28, 130)
    assert first.min() >= 0 and first.max() <= 1
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_uint8_output_is_the_rounded_float_output(train: MnistSource) -> None:
    digits, lengths = np.array([[3, 1, 4, 1]]), np.array([4])
    arrays = [
        generate_batch(
            train, digits, lengths, (0, 3), 130, ComposeOptions(background="white"),
            np.random.default_rng(1), dtype, augment=PRESETS["heavy"],
        ).images
        for dtype in (np.float32, np.uint8)
    ]  # fmt: skip
    assert np.array_equal(np.rint(arrays[0] * np.float32(255)).astype(np.uint8), arrays[1])
