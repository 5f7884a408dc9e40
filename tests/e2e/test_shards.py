"""Sharded builds and ``seqbuilder merge``, through the real command line on real MNIST.

A split is cut into 4096-sample blocks and every shard builds a contiguous range of whole blocks.
The oracle is an unsharded build of the same configuration and seed: merged shards must equal it
array for array. The train split below has five blocks (the last one short), so three or four
shards hold different numbers of blocks; the test split has one block, so most shards hold none
of it. Builds run as subprocesses (``python -m seqbuilder``), as a user runs them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from seqbuilder import SequenceDataset, SequenceStream
from seqbuilder.cli import main

# In-process Hydra runs install logging handlers; every test here drops them afterwards.
pytestmark = pytest.mark.usefixtures("isolated_logging")

BLOCK = 4096
DATASETS = ("images", "labels", "lengths", "boxes", "source_index")
TRAIN_COUNT, TEST_COUNT = 4 * BLOCK + 123, 100
SHARDED = (
    f"splits.train.count={TRAIN_COUNT}",
    f"splits.test.count={TEST_COUNT}",
    "sequences.max_length=2",
    "spacing.max=2",
    "width=60",
    "gallery.count=0",
    "storage.compression_level=1",
)
# shard.count=3 deals the train blocks [0, 1), [1, 3), [3, 5) and the test block to shard 2.
THREE_SHARD_COUNTS = {"train": [BLOCK, 2 * BLOCK, BLOCK + 123], "test": [0, 0, TEST_COUNT]}
SEQBUILDER = (sys.executable, "-m", "seqbuilder")


def cli_env(real_mnist_dir: Path, root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEQBUILDER_DATA": str(real_mnist_dir),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }


def run_all(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> None:
    """Run ``commands`` side by side; each must succeed."""
    processes = [
        subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    for command, process in zip(commands, processes, strict=True):
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"{' '.join(command)} exited {process.returncode}: {err}"


def build_command(run_dir: Path, *overrides: str) -> list[str]:
    return [*SEQBUILDER, "build", *overrides, f"hydra.run.dir={run_dir}"]


def read_datasets(path: Path) -> dict[str, npt.NDArray[Any]]:
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in DATASETS}


def assert_same_datasets(first: Path, second: Path) -> None:
    a, b = read_datasets(first), read_datasets(second)
    for name in DATASETS:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), f"{name} differs"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seqbuilder: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shards")


@pytest.fixture(scope="module")
def env(real_mnist_dir: Path, root: Path) -> dict[str, str]:
    return cli_env(real_mnist_dir, root)


@pytest.fixture(scope="module")
def builds(root: Path, env: dict[str, str]) -> dict[str, Path]:
    """The unsharded build, its three shards, and shard 0 of another seed, built side by side."""
    runs = {
        "whole": build_command(root / "whole", *SHARDED, "workers=2"),
        **{
            f"shard{index}": build_command(
                root / f"shard{index}",
                *SHARDED,
                "workers=1",
                "shard.count=3",
                f"shard.index={index}",
            )
            for index in range(3)
        },
        "seed1-shard0": build_command(
            root / "seed1-shard0", *SHARDED, "workers=1", "seed=1", "shard.count=3", "shard.index=0"
        ),
    }
    run_all(list(runs.values()), root, env)
    return {name: root / name for name in runs}


@pytest.fixture(scope="module")
def merged(root: Path, env: dict[str, str], builds: dict[str, Path]) -> Path:
    """``seqbuilder merge`` of the three shards, by the real command."""
    output = root / "merged"
    shards = [str(builds[f"shard{index}"]) for index in (2, 0, 1)]  # any order
    result = subprocess.run(
        [*SEQBUILDER, "merge", *shards, "--output", str(output)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(output / "test.h5"), str(output / "train.h5")]
    return output


# --- shard + merge equals the single build ------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_shards_hold_contiguous_runs_of_whole_blocks_one_holding_nothing_of_a_small_split(
    builds: dict[str, Path], split: str
) -> None:
    starts, counts = [], []
    for index in range(3):
        with h5py.File(builds[f"shard{index}"] / f"{split}.h5", "r") as file:
            counts.append(int(file["lengths"].shape[0]))
            starts.append(int(file.attrs["sample_start"]))
            assert int(file.attrs["shard_index"]) == index
            assert int(file.attrs["shard_count"]) == 3

    assert counts == THREE_SHARD_COUNTS[split]
    assert starts == [sum(counts[:index]) for index in range(3)]


@pytest.mark.parametrize("split", ["train", "test"])
def test_merged_shards_equal_the_unsharded_build_array_for_array(
    builds: dict[str, Path], merged: Path, split: str
) -> None:
    assert_same_datasets(merged / f"{split}.h5", builds["whole"] / f"{split}.h5")


def test_the_merged_file_maps_the_shards_in_place_without_copying(
    builds: dict[str, Path], merged: Path
) -> None:
    path = merged / "train.h5"
    with h5py.File(path, "r") as file:
        assert all(file[name].is_virtual for name in DATASETS)
        sources = {source.file_name for source in file["images"].virtual_sources()}
    assert {(merged / source).resolve() for source in sources} == {
        (builds[f"shard{index}"] / "train.h5").resolve() for index in range(3)
    }
    assert path.stat().st_size < (builds["whole"] / "train.h5").stat().st_size / 20


def test_sequence_dataset_reads_the_merged_file_like_the_unsharded_one(
    builds: dict[str, Path], merged: Path
) -> None:
    # the samples on both sides of every shard boundary, and the ends
    indices = [0, BLOCK - 1, BLOCK, 3 * BLOCK - 1, 3 * BLOCK, TRAIN_COUNT - 1]
    with (
        SequenceDataset(merged / "train.h5") as joined,
        SequenceDataset(builds["whole"] / "train.h5") as whole,
    ):
        assert len(joined) == len(whole) == TRAIN_COUNT
        for index in indices:
            image, label = joined[index]
            expected_image, expected_label = whole[index]
            assert image.dtype == np.float32
            assert np.array_equal(image, expected_image), index
            assert np.array_equal(label, expected_label), index


def test_batch_reads_of_the_merged_file_equal_the_unsharded_build(
    builds: dict[str, Path], merged: Path
) -> None:
    joined = SequenceDataset(merged / "train.h5")
    assert joined.chunk_samples == 8  # the shard files' chunks, from the build config
    indices = np.random.default_rng(0).permutation(TRAIN_COUNT)[:3000]

    got = joined.batch(indices)

    expected = SequenceDataset(builds["whole"] / "train.h5").batch(indices)
    for a, b in zip(got, expected, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("index", range(3))
def test_a_stream_of_a_shard_config_yields_that_shard_s_file(
    builds: dict[str, Path], real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    stream = SequenceStream([*SHARDED, "shard.count=3", f"shard.index={index}"])
    shard = SequenceDataset(builds[f"shard{index}"] / "train.h5")

    parts = list(stream.batches(1000))

    assert len(stream) == len(shard) == THREE_SHARD_COUNTS["train"][index]
    expected = shard.batch(range(len(shard)))
    for field, array in enumerate(expected):
        assert np.concatenate([part[field] for part in parts]).tobytes() == array.tobytes()


def test_info_summarises_the_merged_file_with_the_unsharded_counts(
    builds: dict[str, Path], merged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(merged / "train.h5")]) == 0
    joined = capsys.readouterr().out
    assert main(["info", str(builds["whole"] / "train.h5")]) == 0
    whole = capsys.readouterr().out

    assert f"{TRAIN_COUNT} samples of 28 x 60" in joined
    for key in ("lengths:", "digits:", "seed:", "source:"):
        assert [line for line in joined.splitlines() if line.startswith(key)] == [
            line for line in whole.splitlines() if line.startswith(key)
        ], key


@pytest.mark.parametrize("split", ["train", "test"])
def test_gallery_of_the_merged_file_is_the_gallery_of_the_unsharded_one(
    builds: dict[str, Path],
    merged: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    split: str,
) -> None:
    pngs = []
    for name, path in (
        ("joined", merged / f"{split}.h5"),
        ("whole", builds["whole"] / f"{split}.h5"),
    ):
        output = tmp_path / f"{name}.png"
        assert main(["gallery", str(path), "--count", "12", "--output", str(output)]) == 0
        assert capsys.readouterr().out.strip() == str(output)
        with Image.open(output) as image:
            pngs.append(np.asarray(image))

    assert pngs[0].shape == pngs[1].shape
    assert np.array_equal(pngs[0], pngs[1])


# --- merge errors -------------------------------------------------------------------------------


MERGE_ERRORS = [
    pytest.param(
        ["shard0", "shard2"], r"shards \[0, 2\] given, expected each of 0\.\.2 once", id="missing"
    ),
    pytest.param(
        ["shard0", "shard1", "shard1", "shard2"],
        r"shards \[0, 1, 1, 2\] given, expected each of 0\.\.2 once",
        id="repeated",
    ),
    pytest.param(
        ["seed1-shard0", "shard1", "shard2"],
        r"shard1.*built with another seed than .*seed1-shard0",
        id="other-seed",
    ),
    pytest.param(["empty"], r"empty: holds no <split>\.h5 files", id="no-h5-files"),
    pytest.param(["file.txt"], r"file\.txt: not a directory", id="not-a-directory"),
    pytest.param(["absent"], r"absent: not a directory", id="no-such-directory"),
]


@pytest.mark.parametrize(("runs", "match"), MERGE_ERRORS)
def test_a_bad_merge_exits_2_with_one_line_and_writes_no_file(
    builds: dict[str, Path],
    root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    runs: list[str],
    match: str,
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no splits here\n")
    (tmp_path / "file.txt").write_text("not a run\n")
    paths = [str(builds.get(run, tmp_path / run)) for run in runs]
    output = tmp_path / "out"

    code = main(["merge", *paths, "--output", str(output)])

    assert code == 2
    assert re.search(match, one_error_line(capsys.readouterr().err))
    assert not output.exists() or not list(output.glob("*.h5*"))


def test_merging_an_already_merged_directory_exits_2_with_one_line(
    merged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # e.g. `seqbuilder merge multirun/*/ --output ...` when an earlier merge went in there too
    code = main(["merge", str(merged), "--output", str(tmp_path / "again")])

    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert re.search(r"merged/(test|train)\.h5", line)


def test_merging_into_a_shards_own_run_directory_is_refused_and_keeps_the_shard(
    builds: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [tmp_path / f"shard{index}" for index in range(3)]
    for index, run in enumerate(runs):
        shutil.copytree(builds[f"shard{index}"], run)
    before = {path.name: sha256(path) for path in runs[0].glob("*.h5")}

    code = main(["merge", *map(str, runs), "--output", str(runs[0])])

    # compared as bytes: a shard file overwritten by a virtual file mapping itself crashes h5py
    after = {path.name: sha256(path) for path in runs[0].glob("*.h5")}
    assert after == before, "merge replaced shard 0's own files: its samples are gone"
    assert code == 2
    one_error_line(capsys.readouterr().err)


# --- a joblib multirun ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_four_shard_joblib_multirun_merges_into_the_unsharded_build(
    builds: dict[str, Path], env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    command = [
        *SEQBUILDER,
        "build",
        "-m",
        "hydra/launcher=shards_local",
        "hydra.launcher.n_jobs=2",
        "shard.count=4",
        "shard.index=0,1,2,3",
        "workers=1",
        *SHARDED,
        f"hydra.sweep.dir={sweep}",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "joblib" in (sweep / "multirun.yaml").read_text()
    runs = sorted(path for path in sweep.iterdir() if path.is_dir())
    assert [run.name for run in runs] == ["0", "1", "2", "3"]
    with h5py.File(runs[3] / "train.h5", "r") as file:
        assert file["lengths"].shape == (BLOCK + 123,)  # blocks 3 and 4

    output = tmp_path / "merged"
    assert main(["merge", *map(str, runs), "--output", str(output)]) == 0, capsys.readouterr().err

    for split in ("train", "test"):
        assert_same_datasets(output / f"{split}.h5", builds["whole"] / f"{split}.h5")


# --- shard configuration ------------------------------------------------------------------------


BAD_SHARDS = [
    pytest.param(
        ["shard.count=3", "shard.index=3"], r"shard\.index \(3\)", id="index-equals-count"
    ),
    pytest.param(["shard.count=2", "shard.index=5"], r"shard\.index \(5\)", id="index-past-count"),
    pytest.param(["shard.index=-1"], r"shard\.index \(-1\)", id="index-negative"),
    pytest.param(["shard.count=0"], r"shard\.count \(0\)", id="count-zero"),
]


@pytest.mark.parametrize(("overrides", "match"), BAD_SHARDS)
def test_a_bad_shard_configuration_is_rejected_naming_the_key_before_any_run_directory(
    real_mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    match: str,
) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    run_dir = tmp_path / "run"

    code = main(["build", *SHARDED, *overrides, f"hydra.run.dir={run_dir}"])

    assert code == 2
    assert re.search(match, one_error_line(capsys.readouterr().err))
    assert not run_dir.exists()


# --- workers ------------------------------------------------------------------------------------


def stored_chunks(path: Path) -> list[tuple[int, bytes]]:
    with h5py.File(path, "r") as file:
        images = file["images"].id
        chunks = []
        for number in range(images.get_num_chunks()):
            mask, data = images.read_direct_chunk(images.get_chunk_info(number).chunk_offset)
            chunks.append((mask, bytes(data)))
    return chunks


@pytest.mark.parametrize(
    "chunk_samples",
    [
        pytest.param(12, id="chunks-of-12-compressed-by-the-parent"),
        pytest.param(8, id="chunks-of-8-compressed-by-the-workers"),
    ],
)
def test_workers_1_and_2_store_identical_gzip_files(
    run_build: Callable[..., Path], chunk_samples: int
) -> None:
    # three blocks of one narrow digit: the pool really runs, and the build stays quick
    overrides = (
        "~splits.test",
        "splits.train.count=9000",
        "sequences.max_length=1",
        "width=32",
        "gallery.count=0",
        "storage.compression=gzip",
        f"storage.chunk_samples={chunk_samples}",
    )
    one = run_build(*overrides, "workers=1") / "train.h5"
    two = run_build(*overrides, "workers=2") / "train.h5"

    with h5py.File(two, "r") as file:
        assert file["images"].chunks == (chunk_samples, 28, 32)
    assert_same_datasets(one, two)
    assert stored_chunks(one) == stored_chunks(two)


# --- a submitit multirun (the SLURM launcher's local twin) ---------------------------------------


@pytest.mark.slow
def test_a_two_shard_submitit_local_multirun_merges_into_the_unsharded_build(
    builds: dict[str, Path], env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # hydra-submitit-launcher's submitit_local runs each job as submitit runs a SLURM job (a
    # pickled task in its own process, with submitit's signal handling), on this machine.
    sweep = tmp_path / "sweep"
    command = [
        *SEQBUILDER,
        "build",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "shard.count=2",
        "shard.index=0,1",
        "workers=1",
        *SHARDED,
        f"hydra.sweep.dir={sweep}",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "submitit_local" in (sweep / "multirun.yaml").read_text()
    runs = sorted(path for path in sweep.iterdir() if path.is_dir() and path.name.isdigit())
    assert [run.name for run in runs] == ["0", "1"]

    output = tmp_path / "merged"
    assert main(["merge", *map(str, runs), "--output", str(output)]) == 0, capsys.readouterr().err

    for split in ("train", "test"):
        assert_same_datasets(output / f"{split}.h5", builds["whole"] / f"{split}.h5")
