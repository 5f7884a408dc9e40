"""End-to-end builds on real MNIST: what ``seqbuilder build`` writes, and that it is right.

The module's oracle for MNIST is its own reader of the IDX files (gzip, header, payload), kept
independent of ``seqbuilder.mnist`` so the checks never mirror the code they check. Most checks
share one ``+preset=tiny`` build made by the real command (``tiny_run_dir`` in conftest); the
rest build in-process through ``seqbuilder.cli.main`` into ``tmp_path``, or in a subprocess
where the process itself is under test (exit status, SIGKILL).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import multiprocessing
import operator
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest
import yaml
from PIL import Image

import seqbuilder
from seqbuilder import SequenceDataset
from seqbuilder.build.preflight import preflight
from seqbuilder.cli import main
from tests.support.bad_configs import BAD_CONFIGS, write_bad_sequence_file

# In-process Hydra runs install logging handlers; every test here drops them afterwards.
pytestmark = pytest.mark.usefixtures("isolated_logging")

# sha256 of the decompressed MNIST images payloads, from ../shared/mnist/README.md.
MNIST_IMAGES_SHA256 = {
    "train": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "test": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SEQBUILDER_BUILD = (sys.executable, "-m", "seqbuilder", "build")
DATASETS = ("images", "labels", "lengths", "boxes", "source_index")
# The tiny preset: split -> (MNIST source, samples); max_length 6, width 200, gaps 0..6.
TINY_SPLITS = {"train": ("train", 200), "test": ("test", 50), "val": ("train", 50)}
TINY_WIDTH, TINY_MAX_LENGTH = 200, 6
# Only the train split, no galleries: the quickest build that still goes through Hydra.
TRAIN_ONLY = ("~splits.test", "~splits.val", "gallery.count=0")
# chi-square critical values at p = 0.001 (a fixed seed makes each test deterministic anyway).
CHI2_CRITICAL_999 = {3: 16.266, 4: 18.467}


@dataclass(frozen=True)
class Mnist:
    """One MNIST split, read by the test's own IDX reader."""

    images: npt.NDArray[np.uint8]  # (N, 28, 28)
    labels: npt.NDArray[np.uint8]  # (N,)
    sha256: str  # of the decompressed images payload
    ink_left: npt.NDArray[np.int64]  # (N,) first column holding ink
    ink_top: npt.NDArray[np.int64]  # (N,) first row holding ink
    ink_width: npt.NDArray[np.int64]  # (N,) columns from the first to the last inked one
    ink_height: npt.NDArray[np.int64]  # (N,)


def _read_idx(folder: Path, name: str) -> tuple[npt.NDArray[np.uint8], bytes]:
    raw_path, gz_path = folder / name, folder / f"{name}.gz"
    data = raw_path.read_bytes() if raw_path.is_file() else gzip.decompress(gz_path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims), data


def _extent(ink: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    first = np.argmax(ink, axis=1)
    last = ink.shape[1] - np.argmax(ink[:, ::-1], axis=1)
    return first, last - first


@pytest.fixture(scope="module")
def mnist(real_mnist_dir: Path) -> dict[str, Mnist]:
    """Both real MNIST splits, by source name."""
    splits = {}
    for source, (images_name, labels_name) in MNIST_FILES.items():
        images, payload = _read_idx(real_mnist_dir, images_name)
        labels, _ = _read_idx(real_mnist_dir, labels_name)
        left, width = _extent(images.any(axis=1))
        top, height = _extent(images.any(axis=2))
        splits[source] = Mnist(
            images, labels, hashlib.sha256(payload).hexdigest(), left, top, width, height
        )
    return splits


def read_h5(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Every dataset of a built file, in memory."""
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in DATASETS}


def label_strings(data: dict[str, npt.NDArray[Any]]) -> list[str]:
    return [
        "".join(map(str, labels[:length]))
        for labels, length in zip(data["labels"], data["lengths"], strict=True)
    ]


def block_starts(data: dict[str, npt.NDArray[Any]], reference: Mnist) -> npt.NDArray[np.int64]:
    """(N, L) first column of each digit's 28-column block (box crop): box x0 minus ink x0."""
    index = np.maximum(data["source_index"], 0)
    return data["boxes"][:, :, 0].astype(np.int64) - reference.ink_left[index]


def assert_same_datasets(first: Path, second: Path) -> None:
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        for name in DATASETS:
            assert a[name].dtype == b[name].dtype, name
            assert a[name].shape == b[name].shape, name
            assert a[name][()].tobytes() == b[name][()].tobytes(), f"{name} differs"


@pytest.fixture
def mnist_env(real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the CLI sets it; keep it out of other tests


@pytest.fixture
def build(
    tmp_path: Path, mnist_env: None, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Path]:
    """Build ``+preset=tiny`` plus overrides in-process, into a fresh run directory.

    Hydra's flags (``-m``) must come before the first override, so the overrides lead.
    """
    numbers = itertools.count()

    def run(*overrides: str) -> Path:
        run_dir = tmp_path / f"run{next(numbers)}"
        code = main(["build", *overrides, "+preset=tiny", f"hydra.run.dir={run_dir}"])
        assert code == 0, capsys.readouterr().err
        return run_dir

    return run


def configured_chunk_samples(run_dir: Path) -> int:
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    return int(config["storage"]["chunk_samples"])


def subprocess_env(real_mnist_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEQBUILDER_DATA": str(real_mnist_dir),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }


# --- the run directory --------------------------------------------------------------------------


def test_the_run_directory_holds_each_split_its_gallery_and_hydra_folder(
    tiny_run_dir: Path,
) -> None:
    for split in TINY_SPLITS:
        assert (tiny_run_dir / f"{split}.h5").is_file()
        with Image.open(tiny_run_dir / f"gallery_{split}.png") as gallery:
            assert gallery.format == "PNG"
    config = yaml.safe_load((tiny_run_dir / ".hydra" / "config.yaml").read_text())
    assert config["width"] == TINY_WIDTH
    overrides = yaml.safe_load((tiny_run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "+preset=tiny" in overrides
    assert not list(tiny_run_dir.glob("*.tmp")), "no temporary file may outlive the build"


def test_dataset_info_records_schema_splits_checksums_versions_and_fingerprint(
    tiny_run_dir: Path,
) -> None:
    info = json.loads((tiny_run_dir / "dataset_info.json").read_text())

    assert set(info["schema"]["datasets"]) == set(DATASETS)
    assert {"config", "seed", "source_sha256", "width"} <= set(info["schema"]["attributes"])
    assert {name: split["count"] for name, split in info["splits"].items()} == {
        name: count for name, (_, count) in TINY_SPLITS.items()
    }
    for name, split in info["splits"].items():
        assert split["bytes"] == (tiny_run_dir / f"{name}.h5").stat().st_size
    assert info["source_sha256"] == MNIST_IMAGES_SHA256
    assert info["versions"]["seqbuilder"] == seqbuilder.__version__
    assert info["versions"]["h5py"] == h5py.__version__
    assert info["versions"]["numpy"] == np.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", info["fingerprint"])


def test_the_dataset_card_names_the_mnist_licence_and_the_command(tiny_run_dir: Path) -> None:
    card = (tiny_run_dir / "README.md").read_text(encoding="utf-8")

    assert "CC BY-SA 3.0" in card
    assert "seqbuilder build +preset=tiny" in card
    for split in TINY_SPLITS:
        assert f"{split}.h5" in card


# --- the HDF5 files -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", list(TINY_SPLITS))
def test_each_split_file_holds_the_contract_datasets_chunked_along_n(
    tiny_run_dir: Path, split: str
) -> None:
    count = TINY_SPLITS[split][1]
    length = TINY_MAX_LENGTH
    expected = {
        "images": ((count, 28, TINY_WIDTH), np.uint8),
        "labels": ((count, length), np.int8),
        "lengths": ((count,), None),
        "boxes": ((count, length, 4), np.int16),
        "source_index": ((count, length), np.int32),
    }
    with h5py.File(tiny_run_dir / f"{split}.h5", "r") as file:
        assert set(file.keys()) == set(DATASETS)
        for name, (shape, dtype) in expected.items():
            dataset = file[name]
            assert dataset.shape == shape, name
            if dtype is None:
                assert dataset.dtype.kind in "iu", name
            else:
                assert dataset.dtype == dtype, name
            assert dataset.chunks is not None, f"{name} is not chunked"
            assert dataset.chunks[1:] == shape[1:], f"{name} is not chunked along N only"
            assert dataset.compression == "gzip", name
        assert file["images"].chunks[0] == configured_chunk_samples(tiny_run_dir)
        assert file["images"].compression_opts == 1


@pytest.mark.parametrize("split", list(TINY_SPLITS))
def test_each_split_file_carries_the_contract_attributes(tiny_run_dir: Path, split: str) -> None:
    source = TINY_SPLITS[split][0]
    with h5py.File(tiny_run_dir / f"{split}.h5", "r") as file:
        attrs = {key: file.attrs[key] for key in file.attrs}

    assert int(attrs["format_version"]) >= 1
    assert attrs["seqbuilder_version"] == seqbuilder.__version__
    assert yaml.safe_load(attrs["config"])["width"] == TINY_WIDTH
    assert int(attrs["seed"]) == 0
    assert attrs["split"] == split
    assert attrs["source"] == source
    assert attrs["source_sha256"] == MNIST_IMAGES_SHA256[source]
    assert attrs["background"] == "black"
    assert int(attrs["height"]) == 28
    assert int(attrs["width"]) == TINY_WIDTH


def test_the_test_oracle_reads_genuine_mnist(mnist: dict[str, Mnist]) -> None:
    assert {source: split.sha256 for source, split in mnist.items()} == MNIST_IMAGES_SHA256


@pytest.mark.parametrize("split", list(TINY_SPLITS))
def test_labels_are_the_mnist_labels_of_their_source_images_padded_with_minus_one(
    tiny_run_dir: Path, mnist: dict[str, Mnist], split: str
) -> None:
    source = TINY_SPLITS[split][0]
    data = read_h5(tiny_run_dir / f"{split}.h5")
    lengths = data["lengths"].astype(np.int64)
    used = np.arange(TINY_MAX_LENGTH) < lengths[:, None]

    assert lengths.min() >= 1
    assert lengths.max() <= TINY_MAX_LENGTH
    assert (data["source_index"][used] >= 0).all()
    assert (data["source_index"][used] < len(mnist[source].labels)).all()
    np.testing.assert_array_equal(
        data["labels"][used], mnist[source].labels[data["source_index"][used]]
    )
    assert (data["labels"][~used] == -1).all()
    assert (data["source_index"][~used] == -1).all()
    assert (data["boxes"][~used] == -1).all()


@pytest.mark.parametrize("split", list(TINY_SPLITS))
def test_each_mnist_image_sits_where_its_box_says_and_nothing_else_is_drawn(
    tiny_run_dir: Path, mnist: dict[str, Mnist], split: str
) -> None:
    reference = mnist[TINY_SPLITS[split][0]]
    data = read_h5(tiny_run_dir / f"{split}.h5")
    starts = block_starts(data, reference)

    for sample, image in enumerate(data["images"]):
        canvas = np.zeros_like(image)
        for slot in range(int(data["lengths"][sample])):
            index = int(data["source_index"][sample, slot])
            x0, y0, x1, y1 = (int(v) for v in data["boxes"][sample, slot])
            left = int(starts[sample, slot])
            where = f"sample {sample} digit {slot}"
            assert y0 == reference.ink_top[index], where
            assert (x1 - x0, y1 - y0) == (reference.ink_width[index], reference.ink_height[index])
            assert 0 <= left <= TINY_WIDTH - 28, where
            np.testing.assert_array_equal(
                image[:, left : left + 28], reference.images[index], err_msg=where
            )
            canvas[:, left : left + 28] = reference.images[index]
        np.testing.assert_array_equal(image, canvas, err_msg=f"sample {sample} has stray ink")


# --- storage options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "compression", "level", "chunk"),
    [
        pytest.param(["storage.compression_level=9"], "gzip", 9, None, id="gzip-9"),
        pytest.param(["storage.compression=lzf"], "lzf", None, None, id="lzf"),
        pytest.param(["storage.compression=none"], None, None, None, id="none"),
        pytest.param(["storage.chunk_samples=5"], "gzip", 1, 5, id="chunk-5"),
    ],
)
def test_images_are_compressed_and_chunked_as_configured(
    build: Callable[..., Path],
    tiny_run_dir: Path,
    overrides: list[str],
    compression: str | None,
    level: int | None,
    chunk: int | None,
) -> None:
    run_dir = build(*TRAIN_ONLY, *overrides)

    with h5py.File(run_dir / "train.h5", "r") as file:
        images = file["images"]
        assert images.compression == compression
        assert images.compression_opts == level
        assert images.chunks == (chunk or configured_chunk_samples(run_dir), 28, TINY_WIDTH)
    assert_same_datasets(run_dir / "train.h5", tiny_run_dir / "train.h5")


def test_float32_storage_holds_the_uint8_values_divided_by_255(
    build: Callable[..., Path], tiny_run_dir: Path
) -> None:
    run_dir = build(*TRAIN_ONLY, "storage.dtype=float32")

    with h5py.File(run_dir / "train.h5", "r") as file:
        assert file["images"].dtype == np.float32
        images = file["images"][()]
    as_uint8 = read_h5(tiny_run_dir / "train.h5")["images"]
    assert images.min() >= 0.0
    assert images.max() <= 1.0
    np.testing.assert_array_equal(np.rint(images.astype(np.float64) * 255), as_uint8)


# --- randomness ---------------------------------------------------------------------------------


def chi_square(observed: npt.NDArray[np.int64]) -> float:
    expected = observed.sum() / len(observed)
    return float(((observed - expected) ** 2 / expected).sum())


def test_gaps_and_lengths_are_uniform_over_their_configured_ranges(
    build: Callable[..., Path], mnist: dict[str, Mnist]
) -> None:
    run_dir = build(
        *TRAIN_ONLY,
        "seed=11",
        "splits.train.count=3000",
        "sequences.min_length=2",
        "sequences.max_length=5",
        "spacing.min=1",
        "spacing.max=5",
        "width=160",  # 28 + 4 * (28 + 5): the widest sequence fits exactly
    )
    data = read_h5(run_dir / "train.h5")
    lengths = data["lengths"].astype(np.int64)
    starts = block_starts(data, mnist["train"])
    gaps = starts[:, 1:] - (starts[:, :-1] + 28)
    gaps = gaps[np.arange(1, 5) < lengths[:, None]]

    length_counts = np.bincount(lengths, minlength=6)
    gap_counts = np.bincount(gaps - 1, minlength=5)
    assert length_counts[:2].sum() == 0, "a length below sequences.min_length"
    assert len(length_counts) == 6, "a length above sequences.max_length"
    assert gaps.min() == 1
    assert gaps.max() == 5
    assert chi_square(length_counts[2:]) < CHI2_CRITICAL_999[3]
    assert chi_square(gap_counts) < CHI2_CRITICAL_999[4]


@pytest.mark.slow
def test_workers_1_and_2_write_byte_identical_datasets(build: Callable[..., Path]) -> None:
    # 9000 samples span three 4096-sample blocks; a narrow width keeps it quick.
    small = (
        "~splits.val",
        "gallery.count=0",
        "splits.train.count=9000",
        "splits.test.count=4200",
        "sequences.max_length=2",
        "spacing.max=2",
        "width=60",
    )
    one = build(*small, "workers=1")
    two = build(*small, "workers=2")

    for split in ("train", "test"):
        assert_same_datasets(one / f"{split}.h5", two / f"{split}.h5")


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(
    build: Callable[..., Path], tiny_run_dir: Path
) -> None:
    again = build()
    other = build("seed=1")

    for split in TINY_SPLITS:
        assert_same_datasets(again / f"{split}.h5", tiny_run_dir / f"{split}.h5")
        first, changed = read_h5(tiny_run_dir / f"{split}.h5"), read_h5(other / f"{split}.h5")
        for name in ("images", "source_index"):
            assert first[name].tobytes() != changed[name].tobytes(), f"{split} {name}"

    def fingerprint(run_dir: Path) -> str:
        return str(json.loads((run_dir / "dataset_info.json").read_text())["fingerprint"])

    assert fingerprint(again) == fingerprint(tiny_run_dir)
    assert fingerprint(other) != fingerprint(tiny_run_dir)
    # keys that do not change the data do not change the name of the data
    assert fingerprint(build("workers=2", "gallery.count=0")) == fingerprint(tiny_run_dir)


# --- sequences ----------------------------------------------------------------------------------


def test_the_list_option_draws_only_and_all_of_the_listed_strings(
    build: Callable[..., Path],
) -> None:
    listed = {"0965", "2024", "31415", "777", "8"}  # conf/sequences/list.yaml
    data = read_h5(build(*TRAIN_ONLY, "sequences=list") / "train.h5")

    assert set(label_strings(data)) == listed
    assert data["labels"].shape[1] == 5


def test_the_file_option_draws_the_lines_of_the_file(
    build: Callable[..., Path], tmp_path: Path
) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("12\n\n0345\n6789\n", encoding="utf-8")

    data = read_h5(build(*TRAIN_ONLY, "sequences=file", f"sequences.path={path}") / "train.h5")

    assert set(label_strings(data)) == {"12", "0345", "6789"}
    assert data["labels"].shape[1] == 4


def test_the_file_option_defaults_to_the_shipped_example(build: Callable[..., Path]) -> None:
    example = files("seqbuilder.conf").joinpath("sequences", "meter_readings.txt").read_text()

    data = read_h5(build(*TRAIN_ONLY, "sequences=file") / "train.h5")

    assert set(label_strings(data)) <= set(example.split())


def test_the_zipcodes_option_gives_five_digits_every_time(build: Callable[..., Path]) -> None:
    data = read_h5(build(*TRAIN_ONLY, "sequences=zipcodes") / "train.h5")

    assert (data["lengths"] == 5).all()
    assert (data["labels"] >= 0).all()


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_multirun_sweep_builds_one_run_directory_per_width(
    build: Callable[..., Path], tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    build(
        "-m",
        *TRAIN_ONLY,
        "sequences.max_length=2",
        "spacing.max=4",
        "width=64,96",
        f"hydra.sweep.dir={sweep}",
    )

    jobs = sorted(path for path in sweep.iterdir() if path.is_dir())
    assert [job.name for job in jobs] == ["0", "1"]
    for job, width in zip(jobs, (64, 96), strict=True):
        with h5py.File(job / "train.h5", "r") as file:
            assert file["images"].shape == (200, 28, width)


def test_cfg_job_prints_the_config_and_writes_nothing(
    tmp_path: Path, mnist_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"

    code = main(["build", "+preset=tiny", f"hydra.run.dir={run_dir}", "--cfg", "job"])

    printed = yaml.safe_load(capsys.readouterr().out)
    assert code == 0
    assert printed["width"] == TINY_WIDTH
    assert printed["splits"]["train"]["count"] == 200
    assert list(tmp_path.iterdir()) == []


BAD_BUILDS = [
    *BAD_CONFIGS,
    pytest.param(
        ["-m", "width=200,100"], r"width \(100\) is too small", id="one-bad-job-in-a-sweep"
    ),
]


@pytest.mark.parametrize(("overrides", "match"), BAD_BUILDS)
def test_a_bad_configuration_exits_2_with_one_line_and_creates_no_run_directory(
    tmp_path: Path,
    mnist_env: None,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    match: str,
) -> None:
    write_bad_sequence_file(tmp_path)
    before = set(tmp_path.iterdir())
    outputs = [f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"]

    argv = [item.format(tmp=tmp_path) for item in overrides]
    code = main(["build", *argv, "+preset=tiny", *outputs])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("seqbuilder: error: ")
    assert re.search(match, err), err
    assert set(tmp_path.iterdir()) == before


def test_a_build_without_mnist_exits_2_saying_where_it_looked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SEQBUILDER_DATA", str(empty))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")

    code = main(["build", "+preset=tiny", f"hydra.run.dir={tmp_path}/run"])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert re.match(r"seqbuilder: error: MNIST files not found .*SEQBUILDER_DATA", err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        pytest.param(["--no-such-flag"], r"--no-such-flag", id="unknown-flag"),
        pytest.param(
            ["+preset=tiny", "-m", "width=64,96"], r"width=64,96", id="flag-after-an-override"
        ),
    ],
)
def test_a_bad_build_argument_exits_2_with_one_line(
    tmp_path: Path,
    mnist_env: None,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    match: str,
) -> None:
    code = main(["build", *argv, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/s"])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("seqbuilder: error: ")
    assert re.search(match, err), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_console_command_reports_a_bad_configuration_in_one_line_without_traceback(
    tmp_path: Path, real_mnist_dir: Path
) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [*SEQBUILDER_BUILD, "+preset=tiny", "width=100", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=subprocess_env(real_mnist_dir, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "seqbuilder: error: width (100) is too small: 6 digits with gaps up to 6 need at least "
        '198 columns (use fit="scale" or fit="auto", or a wider image)'
    ]
    assert not run_dir.exists()


def _help_examples() -> list[list[str]]:
    # `seqbuilder build --help` ends with examples; each must be a build that would run.
    text = files("seqbuilder.conf").joinpath("hydra", "help", "seqbuilder.yaml").read_text()
    footer = yaml.safe_load(text)["footer"]
    lines = [line.split("#")[0].strip() for line in footer.splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("seqbuilder build")]


@pytest.mark.parametrize("argv", _help_examples(), ids=lambda argv: " ".join(argv) or "defaults")
def test_every_example_in_the_build_help_is_a_valid_build(argv: list[str], mnist_env: None) -> None:
    preflight(argv)


@pytest.mark.slow
def test_a_build_killed_midway_leaves_no_file_under_a_final_name(
    tmp_path: Path, real_mnist_dir: Path
) -> None:
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            *SEQBUILDER_BUILD,
            "+preset=tiny",
            "splits.train.count=500000",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=subprocess_env(real_mnist_dir, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "train.h5.tmp").exists():
            assert process.poll() is None, "the build ended before train.h5.tmp appeared"
            assert time.monotonic() < deadline, "train.h5.tmp never appeared"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)

    assert process.returncode == -signal.SIGKILL
    assert not list(run_dir.glob("*.h5")), sorted(p.name for p in run_dir.iterdir())
    assert not (run_dir / "dataset_info.json").exists()


# --- reading a built file -----------------------------------------------------------------------


def test_sequence_dataset_reads_every_sample_of_a_built_file(tiny_run_dir: Path) -> None:
    path = tiny_run_dir / "train.h5"
    data = read_h5(path)
    dataset = SequenceDataset(path)

    assert len(dataset) == 200
    for index in (0, 1, 57, 199, -1):
        image, label = dataset[index]
        assert image.dtype == np.float32
        assert image.shape == (28, TINY_WIDTH)
        np.testing.assert_array_equal(image, data["images"][index] / np.float32(255))
        assert label.dtype == np.int64
        length = int(data["lengths"][index])
        np.testing.assert_array_equal(label, data["labels"][index, :length])


def test_sequence_dataset_survives_pickle(tiny_run_dir: Path) -> None:
    dataset = SequenceDataset(tiny_run_dir / "test.h5")
    dataset[3]  # opens the file: the pickle must still carry only the path

    copy = pickle.loads(pickle.dumps(dataset))

    assert len(copy) == len(dataset)
    for index in (0, 3, 49):
        np.testing.assert_array_equal(copy[index][0], dataset[index][0])
        np.testing.assert_array_equal(copy[index][1], dataset[index][1])


@pytest.mark.slow
def test_sequence_dataset_works_in_spawned_worker_processes(tiny_run_dir: Path) -> None:
    dataset = SequenceDataset(tiny_run_dir / "val.h5")
    indices = [0, 7, 21, 49]
    dataset[0]  # an open handle in the parent must not leak into the workers

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        samples = pool.starmap(operator.getitem, [(dataset, index) for index in indices])

    for index, (image, label) in zip(indices, samples, strict=True):
        np.testing.assert_array_equal(image, dataset[index][0])
        np.testing.assert_array_equal(label, dataset[index][1])
