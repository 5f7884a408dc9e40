"""A stop signal at every phase of ``seqbuilder build`` ends it cleanly, deterministically.

Each test holds a real build still at a named phase (``seqbuilder.build.phases``: the build
writes a marker file there and waits) and signals it at exactly that moment: SIGINT to the
process group as Ctrl-C does, or SIGTERM to the main process as a cluster scheduler does. It
then checks what the contract promises: the build is gone within a few seconds with status
``128 + signal`` and one line on stderr saying what was kept and how to resume, no process of
it is left, no file under a final name is partial, the lock is free, and resuming with the
printed command gives exactly the data of an uninterrupted build.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from seqbuilder.build.plan import BLOCK_SAMPLES
from seqbuilder.store.schema import DATASETS
from tests.support.pause import pause_env, wait_for_phase

SEQBUILDER = str(Path(sys.executable).with_name("seqbuilder"))  # the console script
SPLITS = ("train", "test")
OVERRIDES = (
    "width=64",
    "spacing.max=2",
    "sequences.max_length=2",
    f"splits.train.count={3 * BLOCK_SAMPLES}",
    f"splits.test.count={2 * BLOCK_SAMPLES}",
    "gallery.count=4",
    "workers=2",
)
STOP_SECONDS = 5.0  # "within a few seconds"
PAUSE_TIMEOUT = 120.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("env")
    return dict(os.environ) | {
        "SEQBUILDER_DATA": str(real_mnist_dir),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }


@pytest.fixture(scope="module")
def reference(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of one uninterrupted build of ``OVERRIDES``."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = _build(env, run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def _build(env: dict[str, str], run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [SEQBUILDER, "build", *OVERRIDES, *extra, f"hydra.run.dir={run_dir}"]
    return subprocess.run(
        command, env=env, cwd=run_dir.parent, capture_output=True, text=True, timeout=300
    )


@dataclass
class _Held:
    """A build held at a phase, in its own session, with its stderr in a file."""

    process: subprocess.Popen[bytes]
    marker: Path
    stderr_path: Path

    def wait_for(self, phase: str) -> list[int]:
        """Wait until the build holds at ``phase``; return the pids of all its processes."""
        wait_for_phase(self.marker, self.process, phase, self.stderr, PAUSE_TIMEOUT)
        return [self.process.pid, *_descendants(self.process.pid)]

    def signal(self, signum: int, *, whole_group: bool) -> None:
        if whole_group:
            os.killpg(self.process.pid, signum)
        else:
            os.kill(self.process.pid, signum)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def _held(env: dict[str, str], run_dir: Path, phases: str) -> Iterator[_Held]:
    marker = run_dir.with_name("pause-marker")
    stderr_path = run_dir.with_name("stderr.txt")
    pause = pause_env(marker, phases)
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [SEQBUILDER, "build", *OVERRIDES, f"hydra.run.dir={run_dir}"],
            env=env | pause,
            cwd=run_dir.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    held = _Held(process, marker, stderr_path)
    try:
        yield held
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    """The pids of the live descendants of ``pid``, from the process table."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] not in "ZX":
                    parents[int(entry.name)] = int(stat[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def _one_line(stderr: str) -> str:
    """The one ``seqbuilder:`` line, which must be the last line, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    ours = [line for line in lines if line.startswith("seqbuilder:")]
    assert len(ours) == 1, stderr
    assert lines[-1] == ours[0], stderr
    return ours[0]


def _assert_no_partial_final_files(run_dir: Path) -> None:
    """Every ``<split>.h5`` under its final name holds all its samples."""
    for split, count in zip(SPLITS, (3 * BLOCK_SAMPLES, 2 * BLOCK_SAMPLES), strict=True):
        path = run_dir / f"{split}.h5"
        if path.exists():
            with h5py.File(path, "r") as file:
                assert len(file["lengths"]) == count
                assert int(file["lengths"][()].min()) >= 1, f"{path} holds unwritten samples"


def _assert_same_as_reference(run_dir: Path, reference: Path) -> None:
    for split in SPLITS:
        assert not (run_dir / f"{split}.h5.tmp").exists()
        with (
            h5py.File(run_dir / f"{split}.h5", "r") as built,
            h5py.File(reference / f"{split}.h5", "r") as expected,
        ):
            for name in DATASETS:
                np.testing.assert_array_equal(built[name][()], expected[name][()], err_msg=name)


def _resume_as_printed(line: str, env: dict[str, str], run_dir: Path) -> None:
    """Run the command the line prints (``resume with:`` or ``run it again:``) to the end."""
    marker = "resume with: " if "resume with: " in line else "run it again: "
    words = shlex.split(line.split(marker, 1)[1])
    assert words[:2] == ["seqbuilder", "build"]
    result = subprocess.run(
        [SEQBUILDER, *words[1:]], env=env, cwd=run_dir.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# (phase, what the line says was kept); "" where the build had not begun.
PHASES = [
    pytest.param("startup", "while starting; nothing was written", id="startup"),
    pytest.param("preflight", "before the build began; no data was written", id="preflight"),
    pytest.param("run-dir", "kept: nothing yet;", id="run-dir-locked"),
    pytest.param(
        "block:train:1", f"kept: {2 * BLOCK_SAMPLES} samples of train.h5;", id="in-a-split"
    ),
    pytest.param("finish:train", "kept: train.h5 complete;", id="finishing-a-file"),
    pytest.param(
        "block:test:0",
        f"kept: train.h5 complete, {BLOCK_SAMPLES} samples of test.h5;",
        id="second-split",
    ),
    pytest.param("gallery:test", "kept: train.h5 complete, test.h5 complete;", id="gallery"),
    pytest.param("card", "kept: train.h5 complete, test.h5 complete;", id="card"),
]
SIGNALS = [
    pytest.param(signal.SIGINT, True, id="sigint-to-group"),
    pytest.param(signal.SIGTERM, False, id="sigterm-to-main"),
]


@pytest.mark.parametrize(("signum", "whole_group"), SIGNALS)
@pytest.mark.parametrize(("phase", "kept"), PHASES)
def test_a_stop_signal_at_each_phase_ends_the_build_cleanly_and_it_resumes_to_the_same_data(
    phase: str,
    kept: str,
    signum: int,
    whole_group: bool,
    env: dict[str, str],
    reference: Path,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    with _held(env, run_dir, phase) as build:
        pids = build.wait_for(phase)
        build.signal(signum, whole_group=whole_group)
        try:
            build.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_SECONDS} s after {signal.Signals(signum).name}")
        assert build.process.returncode == 128 + signum, build.stderr()
        line = _one_line(build.stderr())
    assert line.startswith(f"seqbuilder: stopped by {signal.Signals(signum).name}"), line
    assert kept in line, line
    assert not [pid for pid in pids if _alive(pid)], "a process of the build outlived it"
    _assert_no_partial_final_files(run_dir)
    if "resume with: " in line:
        assert line.endswith(f"hydra.run.dir={run_dir} resume=true"), line
    _resume_as_printed(line, env, run_dir)  # also proves the lock was released
    _assert_same_as_reference(run_dir, reference)


def test_a_stop_signal_after_the_last_write_exits_0_at_once_with_the_build_complete(
    env: dict[str, str], reference: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with _held(env, run_dir, "done") as build:
        build.wait_for("done")
        build.signal(signal.SIGTERM, whole_group=False)
        build.process.wait(timeout=STOP_SECONDS)
        assert build.process.returncode == 0, build.stderr()
        assert "Traceback" not in build.stderr()
    assert (run_dir / "README.md").exists() and (run_dir / "dataset_info.json").exists()
    _assert_same_as_reference(run_dir, reference)


def test_a_second_signal_while_stopping_leaves_no_orphan_and_a_sound_checkpoint(
    env: dict[str, str], reference: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with _held(env, run_dir, "block:train:1,stopping") as build:
        pids = build.wait_for("block:train:1")
        assert len(pids) >= 3, "the build runs two worker processes"
        build.signal(signal.SIGINT, whole_group=True)
        build.wait_for("stopping")  # the first signal is being handled; workers still alive
        build.signal(signal.SIGTERM, whole_group=False)
        build.process.wait(timeout=STOP_SECONDS)
        assert build.process.returncode == 128 + signal.SIGINT, build.stderr()
        line = _one_line(build.stderr())
    assert f"kept: {2 * BLOCK_SAMPLES} samples of train.h5;" in line, line
    assert not [pid for pid in pids if _alive(pid)], "a process of the build outlived it"
    _resume_as_printed(line, env, run_dir)
    _assert_same_as_reference(run_dir, reference)


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_a_stop_signal_at_a_random_moment_ends_cleanly_or_completes(
    seed: int, env: dict[str, str], reference: Path, tmp_path: Path
) -> None:
    # A net under the phase tests: moments drawn from a fixed seed, whatever phase they hit.
    draw = random.Random(seed)
    delay, signum = draw.uniform(0.0, 3.0), draw.choice([signal.SIGINT, signal.SIGTERM])
    run_dir = tmp_path / "run"
    with _held(env, run_dir, "") as build:
        time.sleep(delay)
        pids = [build.process.pid, *_descendants(build.process.pid)]
        build.signal(signum, whole_group=signum == signal.SIGINT)
        build.process.wait(timeout=STOP_SECONDS)
        status = build.process.returncode
        stderr = build.stderr()
    assert status in (0, 128 + signum), stderr
    assert not [pid for pid in pids if _alive(pid)], "a process of the build outlived it"
    _assert_no_partial_final_files(run_dir)
    if status:
        _resume_as_printed(_one_line(stderr), env, run_dir)
    _assert_same_as_reference(run_dir, reference)
