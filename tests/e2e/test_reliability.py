"""Reliability of ``seqbuilder build``: interrupts, resume, the run lock, disk and permissions.

Every build here is the real command in a subprocess on real MNIST, because what is under test
is the process itself: its exit status, its last line, its worker processes and the files it
leaves. A build that a test interrupts runs through ``_THROTTLED_BUILD``, which makes worker
block ``k`` of a split wait until ``(k + 1) * delay`` seconds after its pool started before
computing it, so blocks arrive one per ``delay`` and the test can signal the build at a chosen
point (after the first checkpoint, later in a split, in the second split) on a busy
machine; the blocks themselves are computed and written exactly as in any build. Resumed builds
are compared array for array with one uninterrupted build of the same configuration.

The test polls the unfinished ``<split>.h5.tmp`` of a live build through a copy of it (the
build holds the file, and HDF5's file lock keeps any other process from opening it), read with
``read_checkpoint``: the copy is what a crash at that instant would leave.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pytest

from seqbuilder.build.lock import LOCK_NAME
from seqbuilder.build.plan import BLOCK_SAMPLES
from seqbuilder.store.schema import DATASETS, read_checkpoint
from seqbuilder.store.writer import SplitWriter
from tests.support.pause import pause_env, wait_for_phase

SPLITS = ("train", "test")
BLOCKS_PER_SPLIT = 3
# Small and fast, but three blocks per split: enough points to interrupt at.
OVERRIDES = (
    "width=64",
    "spacing.max=2",
    "sequences.max_length=2",
    f"splits.train.count={BLOCKS_PER_SPLIT * BLOCK_SAMPLES}",
    f"splits.test.count={BLOCKS_PER_SPLIT * BLOCK_SAMPLES}",
    "gallery.count=0",
    "workers=2",
)
SEQBUILDER_BUILD = (sys.executable, "-m", "seqbuilder", "build")
# Seconds between the blocks of a throttled build (see _THROTTLED_BUILD); longer than the
# builder's checkpoint interval, so every block gets a checkpoint.
BLOCK_DELAY = 1.2
STOP_SECONDS = 2.0  # an interrupted build must be gone this soon
POLL_SECONDS = 0.02

# `seqbuilder build ARGS` with SIGINT handled as in a terminal (a shell's background job may
# inherit it ignored), optional worker delays and an optional file-size limit (a full disk:
# writes past it fail with EFBIG, "File too large", once SIGXFSZ is ignored).
_THROTTLED_BUILD = """
import functools, os, resource, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
limit = int(os.environ.get("TEST_FILE_SIZE_LIMIT", "0"))
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
delay = float(os.environ.get("TEST_BLOCK_DELAY", "0"))
if delay:
    import seqbuilder.build.pool as pool
    make_block, die_with_parent = pool.StoredBlockMaker.__call__, pool._die_with_parent
    born = time.monotonic()

    def start_worker():  # runs first in every worker: a split's workers start together
        global born
        born = time.monotonic()
        die_with_parent()

    def paced(self, block_id):
        time.sleep(max(0.0, born + delay * (block_id + 1) - time.monotonic()))
        return make_block(self, block_id)

    pool.StoredBlockMaker.__call__, pool._die_with_parent = paced, start_worker
from seqbuilder.cli import main
sys.exit(main(["build", *sys.argv[1:]]))
"""


def _build_env(mnist: Path, root: Path) -> dict[str, str]:
    return dict(os.environ) | {
        "SEQBUILDER_DATA": str(mnist),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }


@pytest.fixture
def env(real_mnist_dir: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a build subprocess: real MNIST, an empty cache, no mirrors."""
    return _build_env(real_mnist_dir, tmp_path)


def _run(run_dir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``seqbuilder build OVERRIDES EXTRA hydra.run.dir=RUN_DIR`` to the end."""
    command = [*SEQBUILDER_BUILD, *OVERRIDES, *extra, f"hydra.run.dir={run_dir}"]
    return _run_command(command, env, next(p for p in run_dir.parents if p.is_dir()))


def _run_command(
    command: list[str], env: dict[str, str], cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=env | (extra_env or {}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def reference(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of one uninterrupted build of ``OVERRIDES``."""
    root = tmp_path_factory.mktemp("reference")
    result = _run(root / "run", _build_env(real_mnist_dir, root))
    assert result.returncode == 0, result.stderr
    return root / "run"


@dataclass
class _Build:
    """A build running in its own process group, its stderr going to a file."""

    process: subprocess.Popen[bytes]
    run_dir: Path
    stderr_path: Path
    workers: list[int] = field(default_factory=list)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_checkpoint(self, split: str, samples: int, timeout: float = 90) -> int:
        """Wait until ``<split>.h5.tmp`` has a checkpoint of at least ``samples``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kept = _live_checkpoint(self.run_dir / f"{split}.h5")
            if kept is not None and kept[1] >= samples:
                self.workers = _children(self.process.pid)
                return kept[1]
            if self.process.poll() is not None:
                pytest.fail(
                    f"the build exited {self.process.returncode} before {split}.h5 had a "
                    f"checkpoint of {samples} samples: {self.stderr()}"
                )
            time.sleep(POLL_SECONDS)
        pytest.fail(f"no checkpoint of {samples} samples in {split}.h5.tmp within {timeout} s")


@contextlib.contextmanager
def _started(
    run_dir: Path, env: dict[str, str], *extra: str, delay: float = BLOCK_DELAY
) -> Iterator[_Build]:
    """Start a throttled build in a new session; on leaving, kill whatever of it is left."""
    stderr_path = run_dir.with_name(f"{run_dir.name}.stderr")
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _THROTTLED_BUILD, *OVERRIDES, *extra],
            env=env | {"TEST_BLOCK_DELAY": str(delay)},
            cwd=run_dir.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    build = _Build(process, run_dir, stderr_path)
    try:
        yield build
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        for pid in build.workers:  # orphaned workers of a build killed alone
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _live_checkpoint(path: Path) -> tuple[dict[str, object], int] | None:
    """Return ``read_checkpoint`` of a copy of the ``<path>.tmp`` that a live build holds."""
    copy = path.parent.with_name(f"{path.parent.name}.snapshot") / path.name
    copy.parent.mkdir(exist_ok=True)
    try:
        shutil.copyfile(path.with_name(f"{path.name}.tmp"), copy.with_name(f"{copy.name}.tmp"))
    except FileNotFoundError:  # not started yet, or renamed to its final name meanwhile
        return None
    return read_checkpoint(copy)


def _children(pid: int) -> list[int]:
    """Return the pids of the live child processes of ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and int(stat[1]) == pid and stat[0] not in "ZX":
                children.append(int(entry.name))
    return children


def _stat(pid: int) -> list[str] | None:
    """Return the fields of ``/proc/PID/stat`` after the command name (state, ppid, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not gone, not a zombie)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX"


def _lines(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr``, progress bar redraws (``\\r``) split apart."""
    return [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]


def _error_line(stderr: str) -> str:
    """Return the one ``seqbuilder:`` line of ``stderr``, checking it is the last and only one."""
    assert "Traceback" not in stderr
    assert "Error executing job" not in stderr  # Hydra's own line for a failed job
    lines = _lines(stderr)
    ours = [line for line in lines if line.startswith("seqbuilder:")]
    assert len(ours) == 1, stderr
    assert lines[-1] == ours[0], stderr
    return ours[0]


def _resumed_after(stdout: str, split: str) -> int:
    """Return the sample count a build's log says it resumed ``split`` after."""
    found = re.search(rf"resuming \S*{split}\.h5\.tmp after (\d+) samples", stdout)
    assert found, f"the build did not resume {split}.h5: {stdout}"
    return int(found.group(1))


def assert_same_as_reference(run_dir: Path, reference: Path) -> None:
    for split in SPLITS:
        assert not (run_dir / f"{split}.h5.tmp").exists()
        with (
            h5py.File(run_dir / f"{split}.h5", "r") as built,
            h5py.File(reference / f"{split}.h5", "r") as expected,
        ):
            for name in DATASETS:
                np.testing.assert_array_equal(
                    built[name][()], expected[name][()], err_msg=f"{split}.h5 {name}"
                )


# Kill and resume (stop signals at every phase: test_stop_signals.py).


@pytest.mark.slow
@pytest.mark.parametrize(
    ("split", "samples"),
    [
        pytest.param("train", BLOCK_SAMPLES, id="after-the-first-checkpoint"),
        pytest.param("train", 2 * BLOCK_SAMPLES, id="later-in-the-split"),
        pytest.param("test", BLOCK_SAMPLES, id="during-the-second-split"),
    ],
)
def test_a_build_killed_with_sigkill_resumes_from_its_checkpoint_to_the_same_data(
    split: str, samples: int, tmp_path: Path, env: dict[str, str], reference: Path
) -> None:
    run_dir = tmp_path / "run"
    with _started(run_dir, env, f"hydra.run.dir={run_dir}") as build:
        kept = build.wait_for_checkpoint(split, samples)
        os.killpg(build.process.pid, signal.SIGKILL)  # the build and its workers, as in a crash
        build.process.wait(timeout=STOP_SECONDS)
    assert not (run_dir / f"{split}.h5").exists()

    resumed = _run(run_dir, env, "resume=true")

    assert resumed.returncode == 0, resumed.stderr
    assert _resumed_after(resumed.stdout, split) >= kept // BLOCK_SAMPLES * BLOCK_SAMPLES
    assert_same_as_reference(run_dir, reference)


@pytest.fixture(scope="module")
def killed_run_dir(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory whose build was killed after its first train checkpoint. Read-only."""
    root = tmp_path_factory.mktemp("killed")
    run_dir = root / "run"
    marker = root / "paused"
    # Held just after the checkpoint is flushed (seqbuilder.build.phases), so the kill finds the
    # file as the checkpoint left it, not halfway through a later HDF5 write.
    env = _build_env(real_mnist_dir, root) | pause_env(marker, "checkpoint:train")
    with _started(run_dir, env, f"hydra.run.dir={run_dir}") as build:
        wait_for_phase(marker, build.process, "checkpoint:train", build.stderr)
        os.killpg(build.process.pid, signal.SIGKILL)
        build.process.wait(timeout=STOP_SECONDS)
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "key"),
    [
        pytest.param("seed=1", "seed", id="seed"),
        pytest.param("width=72", "width", id="width"),
        pytest.param("spacing.max=3", "spacing.max", id="spacing-max"),
        pytest.param("augment=heavy", "augment.baseline", id="augment"),
    ],
)
def test_resume_with_a_changed_key_is_refused_with_one_line_naming_it(
    override: str, key: str, killed_run_dir: Path, env: dict[str, str]
) -> None:
    before = read_checkpoint(killed_run_dir / "train.h5")
    assert before is not None

    result = _run(killed_run_dir, env, override, "resume=true")

    assert result.returncode == 2, result.stderr
    line = _error_line(result.stderr)
    assert line.startswith(f"seqbuilder: error: cannot resume train.h5: {key} differs"), line
    assert read_checkpoint(killed_run_dir / "train.h5") == before
    assert not (killed_run_dir / "train.h5").exists()


@pytest.mark.slow
def test_resume_with_another_number_of_workers_is_accepted_and_gives_the_same_data(
    tmp_path: Path, env: dict[str, str], reference: Path
) -> None:
    run_dir = tmp_path / "run"
    with _started(run_dir, env, f"hydra.run.dir={run_dir}") as build:
        build.wait_for_checkpoint("train", BLOCK_SAMPLES)
        os.killpg(build.process.pid, signal.SIGKILL)
        build.process.wait(timeout=STOP_SECONDS)

    resumed = _run(run_dir, env, "workers=1", "resume=true")

    assert resumed.returncode == 0, resumed.stderr
    assert _resumed_after(resumed.stdout, "train") >= BLOCK_SAMPLES
    assert_same_as_reference(run_dir, reference)


def test_resume_over_a_complete_split_keeps_it_untouched_and_builds_the_rest(
    tmp_path: Path, env: dict[str, str], reference: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy2(reference / "train.h5", run_dir / "train.h5")
    before = (run_dir / "train.h5").stat()

    resumed = _run(run_dir, env, "resume=true")

    assert resumed.returncode == 0, resumed.stderr
    after = (run_dir / "train.h5").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert_same_as_reference(run_dir, reference)


# One build per run directory.


@pytest.mark.slow
def test_a_second_build_into_the_run_directory_of_a_live_build_is_refused(
    tmp_path: Path, env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"
    marker = tmp_path / "paused"
    # The live build is held just after a checkpoint (seqbuilder.build.phases) for as long as
    # the second one takes, however slow the machine.
    held = env | pause_env(marker, "checkpoint:train")
    with _started(run_dir, held, f"hydra.run.dir={run_dir}") as build:
        wait_for_phase(marker, build.process, "checkpoint:train", build.stderr)
        kept = build.wait_for_checkpoint("train", BLOCK_SAMPLES)

        second = _run(run_dir, env)

        assert second.returncode == 2, second.stderr
        line = _error_line(second.stderr)
        assert "in use by another build" in line
        assert f"pid {build.process.pid}" in line
        assert build.process.poll() is None, "the refused build must leave the live one running"
        checkpoint = _live_checkpoint(run_dir / "train.h5")
        assert checkpoint is not None
        assert checkpoint[1] >= kept


@pytest.mark.slow
def test_a_worker_killed_midway_ends_the_build_with_one_line_not_a_hang(
    tmp_path: Path, env: dict[str, str], reference: Path
) -> None:
    run_dir = tmp_path / "run"
    with _started(run_dir, env, f"hydra.run.dir={run_dir}") as build:
        build.wait_for_checkpoint("train", BLOCK_SAMPLES)
        assert build.workers, "the build runs worker processes"

        os.kill(build.workers[0], signal.SIGKILL)
        build.process.wait(timeout=30)

        assert build.process.returncode == 2
        line = _error_line(build.stderr())
    assert "a worker process was killed by SIGKILL while making block" in line
    assert "resume with:" in line
    assert not (run_dir / "train.h5").exists()
    resumed = _run(run_dir, env, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_reference(run_dir, reference)


@pytest.mark.slow
def test_a_lock_left_by_a_build_killed_with_sigkill_does_not_block_the_next_build(
    tmp_path: Path, env: dict[str, str], reference: Path
) -> None:
    run_dir = tmp_path / "run"
    with _started(run_dir, env, f"hydra.run.dir={run_dir}") as build:
        build.wait_for_checkpoint("train", BLOCK_SAMPLES)
        os.kill(build.process.pid, signal.SIGKILL)  # `kill -9 PID`: the build process alone
        build.process.wait(timeout=STOP_SECONDS)
        assert (run_dir / LOCK_NAME).read_text().strip() == str(build.process.pid)

        following = _run(run_dir, env, "resume=true")

    assert following.returncode == 0, following.stderr
    assert_same_as_reference(run_dir, reference)


# Disk and permissions.


@pytest.mark.parametrize(
    "blocked",
    [
        pytest.param("run-dir", id="run-dir-below-a-regular-file"),
        pytest.param("split-file", id="split-tmp-name-taken-by-a-directory"),
    ],
)
def test_an_unwritable_output_ends_the_build_with_one_error_line(
    blocked: str, tmp_path: Path, env: dict[str, str]
) -> None:
    if blocked == "run-dir":
        (tmp_path / "a-file").write_text("not a directory\n")
        run_dir = tmp_path / "a-file" / "run"
    else:
        run_dir = tmp_path / "run"
        (run_dir / "train.h5.tmp").mkdir(parents=True)

    result = _run(run_dir, env)

    assert result.returncode == 2, result.stderr
    line = _error_line(result.stderr)
    assert line.startswith("seqbuilder: error: "), line
    if blocked == "split-file":
        assert "train.h5" in line
        assert not (run_dir / "train.h5").exists()


def _build_on_a_full_disk(run_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Build with train.h5 limited to about 1.6 blocks (RLIMIT_FSIZE): the disk fills up."""
    limit = {"TEST_FILE_SIZE_LIMIT": str(2 * 1024 * 1024)}  # a block of train.h5 is ~1.2 MB
    command = [sys.executable, "-c", _THROTTLED_BUILD, *OVERRIDES, f"hydra.run.dir={run_dir}"]
    return _run_command(command, env, run_dir.parent, extra_env=limit)


def test_a_full_disk_ends_the_build_with_exit_2_and_one_line_saying_how_to_resume(
    tmp_path: Path, env: dict[str, str]
) -> None:
    run_dir = tmp_path / "run"

    full = _build_on_a_full_disk(run_dir, env)

    line = _error_line(full.stderr)
    assert line.startswith("seqbuilder: error: writing train.h5 failed: "), line
    assert "File too large" in line
    assert "resume with" in line
    assert not (run_dir / "train.h5").exists()
    assert not (run_dir / "test.h5").exists()
    assert full.returncode == 2, f"exit status {full.returncode}: {full.stderr}"


@pytest.mark.slow
def test_a_build_stopped_by_a_full_disk_resumes_to_the_same_data_once_there_is_room(
    tmp_path: Path, env: dict[str, str], reference: Path
) -> None:
    run_dir = tmp_path / "run"
    full = _build_on_a_full_disk(run_dir, env)
    assert full.returncode != 0

    resumed = _run(run_dir, env, "resume=true")

    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_reference(run_dir, reference)


# The writer itself.

_ROWS, _WIDTH, _LENGTH, _CHUNK = 64, 16, 3, 8
_ATTRS = {
    "config": "seed: 0\n",
    "seed": 0,
    "split": "train",
    "source": "train",
    "source_sha256": "0" * 64,
    "background": "black",
}


def _block(number: int) -> tuple[npt.NDArray[np.generic], ...]:
    rng = np.random.default_rng(number)
    lengths = rng.integers(1, _LENGTH + 1, _ROWS).astype(np.int16)
    used = np.arange(_LENGTH) < lengths[:, None]
    labels = np.where(used, rng.integers(0, 10, (_ROWS, _LENGTH)), -1).astype(np.int8)
    boxes = np.where(used[..., None], rng.integers(0, 28, (_ROWS, _LENGTH, 4)), -1)
    source_index = np.where(used, rng.integers(0, 60_000, (_ROWS, _LENGTH)), -1)
    images = rng.integers(0, 256, (_ROWS, 28, _WIDTH), dtype=np.uint8)
    return images, labels, lengths, boxes.astype(np.int16), source_index.astype(np.int32)


def _writer(path: Path, blocks: int, resume_from: int = 0) -> SplitWriter:
    return SplitWriter(
        path,
        count=blocks * _ROWS,
        width=_WIDTH,
        max_length=_LENGTH,
        attrs=_ATTRS,
        chunk_samples=_CHUNK,
        resume_from=resume_from,
    )


def _assert_holds_blocks(path: Path, blocks: int) -> None:
    expected = [np.concatenate(arrays) for arrays in zip(*map(_block, range(blocks)), strict=True)]
    with h5py.File(path, "r") as file:
        for name, array in zip(DATASETS, expected, strict=True):
            np.testing.assert_array_equal(file[name][()], array, err_msg=name)


def test_a_writer_failing_before_any_checkpoint_deletes_its_tmp_file(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError, match="boom"), _writer(path, 3) as writer:
        writer.write(*_block(0))
        raise RuntimeError("boom")
    assert not writer.tmp_path.exists()
    assert not path.exists()
    assert read_checkpoint(path) is None


def test_a_writer_failing_after_a_checkpoint_keeps_it_and_resumes_from_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError, match="boom"), _writer(path, 3) as writer:
        writer.write(*_block(0))
        writer.checkpoint()
        writer.write(*_block(1))
        raise RuntimeError("boom")
    assert not path.exists()
    kept = read_checkpoint(path)
    assert kept is not None
    assert kept[1] == _ROWS
    assert kept[0]["split"] == "train"

    with _writer(path, 3, resume_from=kept[1]) as writer:
        assert writer.resumed == _ROWS
        writer.write(*_block(1))
        writer.write(*_block(2))

    assert not writer.tmp_path.exists()
    _assert_holds_blocks(path, 3)


@pytest.mark.parametrize(
    "keep_bytes",
    [
        pytest.param(lambda size: size // 2, id="truncated-to-half"),
        pytest.param(lambda size: 96, id="truncated-to-its-superblock"),
        pytest.param(lambda size: 0, id="truncated-to-nothing"),
    ],
)
def test_resume_from_a_damaged_tmp_file_starts_afresh_and_writes_a_correct_file(
    keep_bytes: Callable[[int], int], tmp_path: Path
) -> None:
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError, match="boom"), _writer(path, 3) as writer:
        writer.write(*_block(0))
        writer.write(*_block(1))
        writer.checkpoint()
        raise RuntimeError("boom")
    os.truncate(writer.tmp_path, keep_bytes(writer.tmp_path.stat().st_size))

    with _writer(path, 3, resume_from=2 * _ROWS) as writer:
        assert writer.resumed == 0
        for number in range(3):
            writer.write(*_block(number))

    _assert_holds_blocks(path, 3)
