"""Augmented builds through the real command line on real MNIST.

The default build's bytes are pinned to values computed before augmentation existed, so
``augment=none`` provably changes nothing. Augmented builds must be reproducible whatever the
worker count or shard split, carry their resolved keys in each file, and look the way
``seqbuilder preview`` shows them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from seqbuilder.cli import main

# In-process Hydra runs install logging handlers; every test here drops them afterwards.
pytestmark = pytest.mark.usefixtures("isolated_logging")

DATASETS = ("images", "labels", "lengths", "boxes", "source_index")
# sha256 of each dataset of `seqbuilder build +preset=tiny`, computed on main before the
# augment group existed: augment=none (the default) must keep every byte.
TINY_SHA256 = {
    "train": {
        "images": "7e34302f9b55f66a9a0c6d584d4b92668c803ce89fedd30867ae5d2d064bc8d8",
        "labels": "8c80a59c513989cc241b00b03117b5d88fdfafa9e01d183904dba436cfa1f4d6",
        "lengths": "abec21d583e3360a7ce7380c430f8296331a2f80ed15cbc5a979e07fe9128706",
        "boxes": "3fc3cf4c70988abf3d318d848345588a8b465ada9d225c4c40e1acf2510384ee",
        "source_index": "5e359fdd050075b45605f26b9e0f2c139eaa45812575aa5c48c0c4ec820acde0",
    },
    "test": {
        "images": "ea9908986eba1e028d337236ab85edcb4eba794883e1b0ce7239f382496b27dd",
        "labels": "0780a42216527228a8ccb159d199cd1d31a54c80afa7135e6b8f55dab28d7d6f",
        "lengths": "ee36148fb131caf96fff7bdebdb91ba3b05659b9680b15e6e165e3a3d01bd720",
        "boxes": "d9d563c7820b0b6257144a0b311804e559d9575c19a7759e5d0b754427df4b97",
        "source_index": "4be70df9da67afcb411e84189721a80f6ffae4df33bffc956722d746ca0008ce",
    },
    "val": {
        "images": "e9be64c74eab069aaab658fefd4c3e2681601ba4fda97549dbe60784298ee1a0",
        "labels": "0435e250b532ccb76a8300670e8169348f6d8f8075c1cb49ebf5787d97ffd3b7",
        "lengths": "51589a1b339183e43449f157b22d703f6fc8aaf1c003002d27751be488d651d2",
        "boxes": "70ba331e7fde4943ddd361ea78292db0c9420ce67fabf85570713aefa5e7938f",
        "source_index": "93a435d3a87068f8a592deba403d6b9fc066e1c4a2e6fd068de9a4eca57e4806",
    },
}
# The same for a build through the other code paths: ink crop, overlaps, random offsets,
# fit=auto and float32 storage (train only, width 120).
OTHER_PATHS = (
    "+preset=tiny", "~splits.test", "~splits.val", "gallery.count=0", "digit_crop=ink",
    "align=random", "fit=auto", "spacing.min=-4", "width=120", "storage.dtype=float32",
)  # fmt: skip
OTHER_PATHS_SHA256 = {
    "images": "78c2b4cffa32e34da8f0112524f3293e45f564914f674589710f7bbc833c01c1",
    "labels": "8c80a59c513989cc241b00b03117b5d88fdfafa9e01d183904dba436cfa1f4d6",
    "lengths": "abec21d583e3360a7ce7380c430f8296331a2f80ed15cbc5a979e07fe9128706",
    "boxes": "059728c3ffa9bd1a87753702b2c052cbcdf3956832bf83c9748f679a08d73c54",
    "source_index": "5e359fdd050075b45605f26b9e0f2c139eaa45812575aa5c48c0c4ec820acde0",
}
# Three 4096-sample blocks of short, narrow sequences: quick, and enough to deal work around.
SMALL = (
    "~splits.test", "gallery.count=0", "splits.train.count=9000",
    "sequences.max_length=3", "spacing.min=-3", "spacing.max=2", "width=90",
)  # fmt: skip
NOISY_HEAVY = ("augment=heavy", "augment.noise=0.05")


def digests(path: Path) -> dict[str, str]:
    with h5py.File(path, "r") as file:
        return {name: hashlib.sha256(file[name][()].tobytes()).hexdigest() for name in DATASETS}


def datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in DATASETS}


def test_the_default_build_keeps_every_byte_it_had_before_augmentation(
    tiny_run_dir: Path,
) -> None:
    for split, expected in TINY_SHA256.items():
        assert digests(tiny_run_dir / f"{split}.h5") == expected, split


def test_augment_none_keeps_the_bytes_of_the_other_composition_paths(
    run_build: Callable[..., Path],
) -> None:
    assert digests(run_build(*OTHER_PATHS, "augment=none") / "train.h5") == OTHER_PATHS_SHA256


@pytest.mark.slow
def test_an_augmented_build_is_byte_identical_with_1_or_2_workers(
    run_build: Callable[..., Path],
) -> None:
    one = run_build(*SMALL, *NOISY_HEAVY, "workers=1")
    two = run_build(*SMALL, *NOISY_HEAVY, "workers=2")

    assert digests(one / "train.h5") == digests(two / "train.h5")


@pytest.mark.slow
def test_shards_of_an_augmented_build_join_into_the_unsharded_build(
    run_build: Callable[..., Path],
) -> None:
    whole = datasets(run_build(*SMALL, *NOISY_HEAVY) / "train.h5")
    shards = [
        datasets(run_build(*SMALL, *NOISY_HEAVY, "shard.count=2", f"shard.index={i}") / "train.h5")
        for i in range(2)
    ]
    for name in DATASETS:
        joined = np.concatenate([shard[name] for shard in shards])
        assert joined.tobytes() == whole[name].tobytes(), name


def test_augmentation_keeps_labels_lengths_and_sources_and_records_its_keys(
    run_build: Callable[..., Path], tiny_run_dir: Path
) -> None:
    run_dir = run_build("+preset=tiny", "augment=heavy", "augment.slant=12")
    for split in TINY_SHA256:
        plain, heavy = datasets(tiny_run_dir / f"{split}.h5"), datasets(run_dir / f"{split}.h5")
        for name in ("labels", "lengths", "source_index"):
            assert np.array_equal(plain[name], heavy[name]), (split, name)
        assert not np.array_equal(plain["images"], heavy["images"])
        with h5py.File(run_dir / f"{split}.h5", "r") as file:
            augment = yaml.safe_load(str(file.attrs["config"]))["augment"]
        assert augment["slant"] == 12.0
        assert augment["elastic"] == {"alpha": 30.0, "sigma": 4.0}
    card = (run_dir / "README.md").read_text(encoding="utf-8")
    assert "`augment.slant=12.0`" in card and "`augment.elastic.alpha=30.0`" in card
    plain_card = (tiny_run_dir / "README.md").read_text(encoding="utf-8")
    assert "No augmentation" in plain_card


def test_preview_draws_exactly_the_gallery_the_build_makes_and_writes_nothing_else(
    run_build: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overrides = ("+preset=tiny", "augment=heavy", "augment.noise=0.05", "gallery.count=8")
    run_dir = run_build(*overrides)
    capsys.readouterr()
    folder = tmp_path / "preview"
    folder.mkdir()
    monkeypatch.chdir(folder)

    code = main(["preview", *overrides[:2], "--count", "8", *overrides[2:], "--split", "val"])

    assert code == 0
    assert capsys.readouterr().out.strip() == "preview.png"
    assert [path.name for path in folder.iterdir()] == ["preview.png"]
    assert (folder / "preview.png").read_bytes() == (run_dir / "gallery_val.png").read_bytes()


def test_the_gallery_of_an_augmented_build_shows_the_variation(
    run_build: Callable[..., Path], tiny_run_dir: Path
) -> None:
    heavy = run_build("+preset=tiny", "augment=heavy")
    with (
        Image.open(heavy / "gallery_train.png") as a,
        Image.open(tiny_run_dir / "gallery_train.png") as b,
    ):
        assert a.size == b.size
        assert np.asarray(a).tobytes() != np.asarray(b).tobytes()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        pytest.param(["--count", "0"], r"--count 0 is too small", id="count-0"),
        pytest.param(["augment=extreme"], r"Could not find 'augment/extreme'", id="bad-group"),
        pytest.param(
            ["augment.elastic.sigma=-2"], r"augment\.elastic\.sigma \(-2\.0\)", id="bad-value"
        ),
        pytest.param(["--split", "dev"], r"--split 'dev' is not a split", id="bad-split"),
        pytest.param(["--colour", "red"], r"unrecognized arguments: --colour", id="bad-flag"),
    ],
)
def test_a_bad_preview_exits_2_with_one_line(
    argv: list[str],
    match: str,
    real_mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    monkeypatch.chdir(tmp_path)

    assert main(["preview", "+preset=tiny", *argv]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("seqbuilder: error: ")
    assert re.search(match, err), err
    assert list(tmp_path.iterdir()) == []


def test_image_augment_writes_an_augmented_png(
    real_mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    paths = {}
    for preset in ("none", "heavy"):
        paths[preset] = tmp_path / f"{preset}.png"
        argv = ["image", "0965", "0", "4", "140", "--seed", "1", "--augment", preset]
        assert main([*argv, "--output", str(paths[preset])]) == 0
    with Image.open(paths["none"]) as plain, Image.open(paths["heavy"]) as heavy:
        assert heavy.size == plain.size == (140, 28)
        assert np.asarray(heavy).tobytes() != np.asarray(plain).tobytes()
    assert main(["image", "12", "0", "4", "80", "--augment", "extreme"]) == 2
    assert "invalid choice: 'extreme'" in capsys.readouterr().err
