"""Send stop signals to real builds at random moments and tabulate what the user sees.

    python tools/signal_sweep.py --runs 50 --count 120000

Each run starts ``seqbuilder build`` (the console script of this environment) with
``splits.train.count`` and ``splits.test.count`` summing to ``--count``, waits a moment drawn
uniformly over one uninterrupted build's duration (from ``--seed``), then sends SIGINT to its
process group (as Ctrl-C does) or SIGTERM to its main process (as a scheduler does), drawn
alike. It checks the contract (status 0 or 128 + signal, at most one ``seqbuilder:`` line and
no traceback, no process left, no partial file under a final name) and, with ``--resume``,
that running the printed command gives the data of the uninterrupted build. It prints one row
per run and a table of outcomes by phase, and exits 1 if any run broke the contract.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

SEQBUILDER = str(Path(sys.executable).with_name("seqbuilder"))
DATASETS = ("images", "labels", "lengths", "boxes", "source_index")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--count", type=int, default=120_000, help="samples over both splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="resume each stopped build")
    args = parser.parse_args()
    train = args.count * 5 // 6
    overrides = [f"splits.train.count={train}", f"splits.test.count={args.count - train}"]
    root = Path(tempfile.mkdtemp(prefix="signal-sweep-"))
    start = time.monotonic()
    reference = root / "reference"
    _run([SEQBUILDER, "build", *overrides, f"hydra.run.dir={reference}"], check=True)
    duration = time.monotonic() - start
    print(f"uninterrupted build: {duration:.1f} s; signals drawn over [0, {duration:.1f}] s")
    draw = random.Random(args.seed)
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    broken = 0
    for number in range(args.runs):
        moment = draw.uniform(0, duration)
        signum = draw.choice([signal.SIGINT, signal.SIGTERM])
        run_dir = root / f"run{number}"
        phase, outcome, problem = _one_run(overrides, run_dir, moment, signum, reference, args)
        outcomes[phase, outcome] += 1
        broken += problem is not None
        name = signal.Signals(signum).name
        print(
            f"{number:3d} {name:7s} at {moment:5.2f} s: {phase:32s} {outcome:14s} {problem or 'ok'}"
        )
    print("\noutcomes by phase (phase, outcome: runs)")
    for (phase, outcome), runs in sorted(outcomes.items()):
        print(f"  {phase:32s} {outcome:14s} {runs}")
    print(f"\n{args.runs - broken} of {args.runs} runs kept the contract")
    return 1 if broken else 0


def _one_run(
    overrides: list[str],
    run_dir: Path,
    moment: float,
    signum: int,
    reference: Path,
    args: argparse.Namespace,
) -> tuple[str, str, str | None]:
    command = [SEQBUILDER, "build", *overrides, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    time.sleep(moment)
    family = [process.pid, *_descendants(process.pid)]
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    sent = time.monotonic()
    try:
        _, stderr_bytes = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return "?", "hang", "still running 30 s after the signal"
    took = time.monotonic() - sent
    stderr = stderr_bytes.decode(errors="replace")
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.startswith("seqbuilder:")]
    phase = _phase(lines[-1] if lines else "")
    outcome = "completed" if process.returncode == 0 else f"exit {process.returncode}"
    problem = None
    if process.returncode not in (0, 128 + signum):
        problem = f"status {process.returncode}"
    elif "Traceback" in stderr or len(lines) > (process.returncode != 0):
        problem = f"stderr: {stderr[-300:]!r}"
    elif any(_alive(pid) for pid in family):
        problem = "a process outlived the build"
    elif took > 5:
        problem = f"took {took:.1f} s to stop"
    elif not _final_files_complete(run_dir):
        problem = "a partial file under a final name"
    elif args.resume:
        if process.returncode:
            marker = "resume with: " if "resume with: " in lines[-1] else "run it again: "
            words = shlex.split(lines[-1].split(marker, 1)[1])
            _run([SEQBUILDER, *words[1:]], check=True)
        problem = _differs(run_dir, reference)
    return phase, outcome, problem


def _phase(line: str) -> str:
    if not line:
        return "after the last write"
    if "while starting" in line:
        return "start-up (imports)"
    if "before the build began" in line:
        return "preflight / Hydra start-up"
    kept = line.split("kept: ", 1)[-1].split(";", 1)[0]
    return {"nothing yet": "run directory locked"}.get(
        kept, re.sub(r"\d+ samples", "N samples", kept)
    )


def _final_files_complete(run_dir: Path) -> bool:
    for path in run_dir.glob("*.h5"):
        with h5py.File(path, "r") as file:
            if int(file["lengths"][()].min(initial=1)) < 1:
                return False
    return True


def _differs(run_dir: Path, reference: Path) -> str | None:
    for split in ("train", "test"):
        with (
            h5py.File(run_dir / f"{split}.h5", "r") as built,
            h5py.File(reference / f"{split}.h5", "r") as expected,
        ):
            for name in DATASETS:
                if not np.array_equal(built[name][()], expected[name][()]):
                    return f"{split}.h5 {name} differs from the uninterrupted build"
    return None


def _run(command: list[str], *, check: bool) -> None:
    subprocess.run(command, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
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
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
