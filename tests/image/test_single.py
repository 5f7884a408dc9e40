"""The single-image path: the same draws in the same order as the batch engine, pixel for pixel.

``generate_numbers_sequence`` composes one image without the batch engine (see
:mod:`seqbuilder.image.single`). The table below pins the outputs the engine gave before that
path existed (sha256 of the float32 bytes, real MNIST); the randomised test compares the two
paths directly over many argument combinations.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seqbuilder import generate_numbers_sequence
from seqbuilder.errors import InvalidValueError
from seqbuilder.image.engine import generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.image.sequence import parse_augment
from seqbuilder.image.single import compose_one, seeded_generator
from seqbuilder.mnist.load import MnistSource, _make_split, load_mnist
from tests.support.idx_files import tiny_split

# Outputs of the batch engine (seqbuilder 0dbe6e8, before the single-image path), per case:
# (digits, spacing_range, image_width, seed, options, sha256 of the float32 bytes).
PINNED = [
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        0,
        {},
        "5c257ca98a798432553dd9848a92afa94f0db4c574773efcfe4062141c29a62c",
        id="spec",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        1,
        {},
        "00999306b0f0f117acfb6ebccd3228003b632c811b2c3ab85a917a16b83764e9",
        id="spec-seed1",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        1099511627793,
        {},
        "4a8c269a2f29d7cabc9fdc436252dabf1f35f81ee475169f8925e277945386bb",
        id="spec-seed-big",
    ),
    pytest.param(
        "0965",
        (0, 10),
        160,
        5,
        {"align": "left"},
        "2fd0fb5c88f67671192c7fc0e718b9a12923aa81bbc7f3a0d263abe71a02a383",
        id="string-left",
    ),
    pytest.param(
        (3, 1, 4, 1, 5),
        (0, 4),
        180,
        6,
        {"align": "random"},
        "319455daff9edab83215d15d86893eca9a3a52a8a71a52e439e94e74401be983",
        id="tuple-random",
    ),
    pytest.param(
        [7],
        (0, 0),
        28,
        7,
        {},
        "5e9f01517ded419d42fb825928e414e14503a95fe671e958f96f8174a5e0cf44",
        id="one-digit-exact",
    ),
    pytest.param(
        [7],
        (0, 0),
        61,
        8,
        {"align": "random"},
        "1b0ab0b8e6d89a63fe86ea3d16ba9eccf9e21ae5bfc84b2a461b60dc5d11c079",
        id="one-digit-random",
    ),
    pytest.param(
        [3, 1, 4, 1, 5, 9],
        (-5, 4),
        190,
        9,
        {},
        "5748cad883d06245247ada6349f2bf384b3c1d2a82df6a75d4ca947e669f45b2",
        id="overlap",
    ),
    pytest.param(
        [2, 0, 2, 6],
        (-27, 3),
        121,
        10,
        {},
        "3d76cab8c8f8b8dc59f732b5418bade957471b0cbe68887199f6a11ac86a8169",
        id="overlap-max",
    ),
    pytest.param(
        [8, 8, 8],
        (-12, 6),
        120,
        11,
        {"align": "random", "background": "white"},
        "880f81325f264dfce84a860acc035b9b6e7ae816bd240a87184537ddeb447d15",
        id="overlap-white-random",
    ),
    pytest.param(
        [1, 2],
        (3, 3),
        59,
        12,
        {},
        "e7e14709b50b041abd1b8282c5bb06a93d1258d4364aeb46cd7378b8ccbc26eb",
        id="fixed-gap",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        13,
        {"background": "white"},
        "863b08b7f9181dc5ee968bee1b5e30aaa4f8c453133eb118c536ab477068c050",
        id="white",
    ),
    pytest.param(
        [1, 1, 1],
        (0, 5),
        120,
        14,
        {"digit_crop": "ink"},
        "c8d56ac78a5db45feb0f8e411158e75541b6259d773f89303e29a4b2b4144fff",
        id="ink",
    ),
    pytest.param(
        [1, 7, 4, 0],
        (-10, 2),
        120,
        15,
        {"digit_crop": "ink", "align": "left"},
        "c5b24794c3b87c8ba541018b8ca022c47239d814c8e6910d4f9bfd87913c8c98",
        id="ink-overlap-left",
    ),
    pytest.param(
        [9, 1],
        (2, 9),
        80,
        16,
        {"digit_crop": "ink", "align": "random", "background": "white"},
        "520ce66d11a519f458d05efea2d978c02b437395dc2f59a4f8a70d7bdfefae9d",
        id="ink-random-white",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        60,
        17,
        {"fit": "scale"},
        "65549ea9da11733dea414dccc4e84a797b3a2370bcf40b2a188e10902818b316",
        id="scale-down",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        18,
        {"fit": "scale"},
        "940cc09d2774c7f4e6f8e9a14f1f7b166ccc13a6ae4663e35b94157bb893f29b",
        id="scale-spec",
    ),
    pytest.param(
        [4, 2],
        (2, 2),
        300,
        19,
        {"fit": "scale"},
        "9f31c13170848fb3895c84eedb63df5ae288d7c7bd38e844de0c8ff9d2f6a03f",
        id="scale-up",
    ),
    pytest.param(
        "31415926",
        (-5, 3),
        40,
        20,
        {"fit": "scale", "background": "white"},
        "116b0c31489be5ecd73ae02e73c26915ba90feb4c09d977eef8f4cee5db0b096",
        id="scale-overlap-white",
    ),
    pytest.param(
        [2, 7, 1, 8],
        (0, 8),
        90,
        21,
        {"fit": "scale", "digit_crop": "ink"},
        "7aaaff1dc93fa83fe4455e2712d9c11011a08358b347e8bfd0087f06639f76b1",
        id="scale-ink",
    ),
    pytest.param(
        [5, 5],
        (0, 3),
        33,
        22,
        {"fit": "scale", "align": "random"},
        "892eb2a8b38c53bce8053d96fc8d7e6886f5a211033c1155603525065a91f0d9",
        id="scale-random-align",
    ),
    pytest.param(
        [2, 7, 1, 8],
        (0, 8),
        200,
        23,
        {"fit": "auto"},
        "586bf509cf8382023ea94d1c105c474d863f1af914e1ba2a798e59dd35f5f412",
        id="auto-pads",
    ),
    pytest.param(
        [2, 7, 1, 8],
        (0, 10),
        130,
        24,
        {"fit": "auto"},
        "1e01e12e1f5e89d1d0dee1f52424215b60e213012e23dea013717db6957e9a40",
        id="auto-a",
    ),
    pytest.param(
        [2, 7, 1, 8],
        (0, 10),
        130,
        25,
        {"fit": "auto", "align": "random"},
        "701484829d6c1e0646c3f396d6d86529e2ce92489b57cba9ac1ea78d7c5c81a9",
        id="auto-b",
    ),
    pytest.param(
        [2, 7, 1, 8],
        (0, 10),
        130,
        26,
        {"fit": "auto", "align": "left"},
        "f78026307f0d2649be3541ffec318c5cb2027726fb4d2e4397f5a8fd6dc7cb12",
        id="auto-c",
    ),
    pytest.param(
        [2, 7, 1, 8],
        (0, 8),
        90,
        27,
        {"fit": "auto", "digit_crop": "ink"},
        "ff78f5c1cb3944a19074698eea4e3729d6d92f4d752a6c3b2614bff0900c7be4",
        id="auto-ink",
    ),
    pytest.param(
        [6, 0],
        (0, 20),
        64,
        28,
        {"fit": "auto", "digit_crop": "ink", "align": "random", "background": "white"},
        "cc486e7a50e1c949051aba3e0444bf7e2262bcdbed221aa6c96dbb7115528f7f",
        id="auto-ink-random",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        29,
        {"source": "test"},
        "bd30e635dbfe1d49a50acb213ece4d1d2695fe32ed9ad85e8490ae03900bbe50",
        id="test-source",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (0, 10),
        160,
        30,
        {"augment": "light"},
        "66c68481f5793613adf5de18148bac8259f986f387ad4a1da09b8790d4eea5be",
        id="light",
    ),
    pytest.param(
        [0, 9, 6, 5],
        (-3, 10),
        100,
        31,
        {"augment": "heavy", "fit": "scale", "background": "white"},
        "e6db68c8300880363a6dc94dc437dc667c3ea5b459e9412ffd0865b385972068",
        id="heavy-scale-white",
    ),
    pytest.param(
        [4, 4],
        (0, 6),
        90,
        32,
        {"augment": "heavy", "digit_crop": "ink", "align": "random"},
        "9bbfb87456713af098f6e23e948127e484bb7d2df48491067ef2bd34763b31e3",
        id="heavy-ink-random",
    ),
]


@pytest.fixture
def real_train(
    real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> MnistSource:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "single-cache"))
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    return load_mnist("train")


@pytest.mark.parametrize(("digits", "spacing", "width", "seed", "options", "digest"), PINNED)
def test_outputs_equal_the_pinned_outputs_of_the_batch_engine(
    real_train: MnistSource,
    digits: Any,
    spacing: tuple[int, int],
    width: int,
    seed: int,
    options: dict[str, Any],
    digest: str,
) -> None:
    image = generate_numbers_sequence(digits, spacing, width, seed=seed, **options)
    assert image.shape == (28, width)
    assert image.dtype == np.float32
    assert image.flags.c_contiguous
    assert hashlib.sha256(image.tobytes()).hexdigest() == digest


def random_arguments(case: int) -> tuple[list[int], tuple[int, int], int, ComposeOptions]:
    """Draw one argument combination (digits, spacing, width, options) from ``case``."""
    rng = np.random.default_rng([2026, case])
    digits = [int(d) for d in rng.integers(0, 10, int(rng.integers(1, 9)))]
    low = int(rng.integers(-27, 12))
    high = low + int(rng.integers(0, 16))
    fit = ("pad", "scale", "auto")[case % 3]
    options = ComposeOptions(
        fit,
        str(rng.choice(["center", "left", "random"])),
        str(rng.choice(["box", "ink"])),
        str(rng.choice(["black", "white"])),
    )
    widest = 28 + (len(digits) - 1) * max(28 + high, 0)
    # pad needs the widest composition to fit; scale and auto take any width
    extra = int(rng.integers(0, 40)) if fit == "pad" else int(rng.integers(1 - widest, 60))
    width = widest + extra
    return digits, (low, high), width, options


@pytest.mark.parametrize("case", range(300))
def test_each_image_equals_the_batch_engine_with_the_same_seed(
    real_train: MnistSource, case: int
) -> None:
    digits, spacing, width, options = random_arguments(case)
    image = generate_numbers_sequence(
        digits,
        spacing,
        width,
        seed=case,
        fit=options.fit,
        align=options.align,
        digit_crop=options.digit_crop,
        background=options.background,
    )
    batch = generate_batch(
        real_train,
        np.array([digits]),
        np.array([len(digits)]),
        spacing,
        width,
        options,
        np.random.default_rng(case),
    )
    np.testing.assert_array_equal(image, batch.images[0], strict=True)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="pad"),
        pytest.param({"align": "random"}, id="pad-random"),
        pytest.param({"fit": "scale", "align": "random"}, id="scale-random"),
        pytest.param({"fit": "auto", "align": "random", "digit_crop": "ink"}, id="auto-ink"),
        pytest.param({"augment": "light", "align": "random"}, id="light"),
    ],
)
def test_a_generator_seed_is_drawn_from_and_left_as_the_batch_engine_leaves_it(
    real_train: MnistSource, options: dict[str, Any]
) -> None:
    ours, theirs = np.random.default_rng(41), np.random.default_rng(41)
    layout = {k: v for k, v in options.items() if k != "augment"}
    compose_options = ComposeOptions(**layout)
    digits = np.array([[4, 0, 4]])
    for _ in range(3):  # the second call starts from the state the first one left
        image = generate_numbers_sequence([4, 0, 4], (-3, 12), 130, seed=ours, **options)
        reference = generate_batch(
            real_train,
            digits,
            np.array([3]),
            (-3, 12),
            130,
            compose_options,
            theirs,
            augment=parse_augment(options.get("augment")),
        )
        np.testing.assert_array_equal(image, reference.images[0], strict=True)
    assert ours.bit_generator.state == theirs.bit_generator.state


@pytest.mark.parametrize(
    "seed", [0, 1, 2, 255, 2**31, 2**32 - 1, 2**32, 2**63 + 5, 2**64, 2**128 + 3, 10**40]
)
def test_a_seeded_generator_is_in_the_state_of_default_rng(seed: int) -> None:
    rng = seeded_generator(seed)
    assert rng.bit_generator.state == np.random.default_rng(seed).bit_generator.state
    assert rng.random(5).tolist() == np.random.default_rng(seed).random(5).tolist()


def test_each_thread_draws_from_its_own_seeded_generator() -> None:
    results: dict[int, list[float]] = {}

    def draw(seed: int) -> None:
        rng = seeded_generator(seed)
        barrier.wait()  # both threads have seeded before either draws
        results[seed] = rng.random(4).tolist()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=draw, args=(seed,)) for seed in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {s: np.random.default_rng(s).random(4).tolist() for s in (3, 4)}


def test_a_digit_missing_from_the_split_raises_the_batch_engines_error() -> None:
    images, labels = tiny_split("train")
    keep = labels != 7
    split = _make_split(
        images[keep], labels[keep], "train", "a folder without sevens", "images", "labels"
    )
    message = "MNIST train split at a folder without sevens has no digit 7"
    with pytest.raises(InvalidValueError, match=f"^{message}$"):
        compose_one(split, [1, 7], (0, 0), 56, ComposeOptions(), np.random.default_rng(0))
    with pytest.raises(InvalidValueError, match=f"^{message}$"):
        generate_batch(
            split,
            np.array([[1, 7]]),
            np.array([2]),
            (0, 0),
            56,
            ComposeOptions(),
            np.random.default_rng(0),
        )
