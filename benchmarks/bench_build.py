"""Measure the dataset build against its baselines, every baseline measured in the same run.

Run from the repository root (about five minutes on an idle 2-core machine)::

    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_build.py

Prints the build rows of the performance table (issue #13), for this machine:

- **uncompressed build, workers=1**: ``seqbuilder build`` of ``--count`` images with
  ``storage.compression=none``, against the rate the batch engine and a plain h5py write allow
  together, ``1 / (1/engine + 1/write)``. The engine is ``generate_batch`` on blocks of 4096
  (one core); the plain write stores the same images with ``dataset[i:j] = block`` into a
  dataset of the build's layout (chunks of ``--chunk`` samples, fletcher32, no compression),
  then closes and fsyncs the file as the build does. Target: 80%.
- **gzip level 1 build, 2 workers**: against the zlib ceiling, 2 processes doing nothing but
  ``zlib.compress(chunk, 1)`` on the stored chunks. Target: 80%. Beside it, the work such a
  build cannot avoid: 2 processes making blocks with the engine and compressing their chunks,
  no file, no parent (what bounds the row: the build's rate against it is its own overhead).
  Below the table, the row's bound: the build's CPU time per image (all its processes, from
  ``getrusage``) against zlib's in the ceiling, which caps its share of the ceiling.
- **lzf build, 2 workers**. Target: 60,000 img/s.
- **default build**: ``seqbuilder build splits.train.count=1000000`` as a user types it (the
  console script: start-up, both splits, galleries, card), against the same build with the
  previous defaults (``storage.deflate=zlib storage.compression_level=4``). Targets: 12 s, and
  a file within 10% of the previous size.

The first three build five-digit sequences of width 200, uint8 (the engine's task). Rates are
the whole command's (start-up included); the steady rate beside them leaves out the fixed cost
of a one-block build of the same command (start-up, MNIST, the last fsync). Peak memory is the
proportional set size (PSS) summed over the build process and its workers, sampled every 50 ms
from /proc in one more run of each build, never in a timed one: the sampling itself costs a build
about 8% of its time. ``--repeat N`` runs every measure N times, interleaved, and keeps the best
of each: on a shared machine noise only ever slows a run down.

Nothing here asserts on timing: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt

from seqbuilder.image.engine import generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist

BLOCK = 4096
LENGTH = 5
WIDTH = 200
SPACING = (0, 10)  # widest: 5 * 28 + 4 * 10 = 180 <= 200
# the engine's task, for the three throughput rows
TASK = (
    "~splits.test", "gallery.count=0", f"width={WIDTH}",
    f"sequences.min_length={LENGTH}", f"sequences.max_length={LENGTH}",
    f"spacing.min={SPACING[0]}", f"spacing.max={SPACING[1]}",
)  # fmt: skip
PREVIOUS_DEFAULTS = ("storage.deflate=zlib", "storage.compression_level=4")


@dataclass
class Best:
    """The best of repeated measures: the highest rate, the shortest time."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def high(self) -> float:
        return max(self.values, default=0.0)

    @property
    def low(self) -> float:
        return min(self.values, default=float("inf"))


@dataclass
class Run:
    """One ``seqbuilder build`` command: its wall times, peak memory and file size."""

    seconds: Best = field(default_factory=Best)
    cpu: Best = field(default_factory=Best)  # CPU seconds of the command and its workers
    busy: Best = field(default_factory=Best)  # that CPU time's share of all cores' wall time
    peak: Best = field(default_factory=Best)
    size: int = 0


# --- in-memory baselines ------------------------------------------------------------------------


def block_images(split: MnistSource) -> npt.NDArray[np.uint8]:
    """One block of the engine's task, ``(4096, 28, 200) uint8``."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    lengths = np.full(BLOCK, LENGTH)
    options = ComposeOptions()
    return generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8).images


def engine_rate(split: MnistSource, seconds: float) -> float:
    """The batch engine on one core, in samples/s."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    lengths = np.full(BLOCK, LENGTH)
    options = ComposeOptions()
    blocks, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8)
        blocks += 1
    return blocks * BLOCK / elapsed


def naive_rate(split: MnistSource, seconds: float) -> float:
    """The straightforward per-image loop (draw, ``np.hstack``, pad), in samples/s."""
    rng = np.random.default_rng(0)
    by_label = [
        split.label_order[split.label_starts[d] : split.label_starts[d + 1]] for d in range(10)
    ]
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    samples, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for row in digits:
            parts = []
            for position, digit in enumerate(row):
                if position:
                    parts.append(np.zeros((28, rng.integers(SPACING[0], SPACING[1] + 1)), np.uint8))
                candidates = by_label[digit]
                parts.append(split.images[candidates[rng.integers(len(candidates))]])
            strip = np.hstack(parts)
            free = WIDTH - strip.shape[1]
            np.pad(strip, ((0, 0), (free // 2, free - free // 2)))
            samples += 1
    return samples / elapsed


def plain_write_rate(images: npt.NDArray[np.uint8], count: int, chunk: int, folder: Path) -> float:
    """h5py writing ``count`` images (``images`` over and over) the plain way, in samples/s.

    The dataset has the build's layout (chunks of ``chunk`` samples, fletcher32, the oldest
    file format); the file is closed and fsynced, as the build makes its file durable.
    """
    path = folder / "plain.h5"
    start = time.perf_counter()
    with h5py.File(path, "w", libver=("earliest", "v110")) as file:
        dataset = file.create_dataset(
            "images", (count, 28, WIDTH), np.uint8, chunks=(chunk, 28, WIDTH), fletcher32=True
        )
        for first in range(0, count, BLOCK):
            rows = min(BLOCK, count - first)
            dataset[first : first + rows] = images[:rows]
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    rate = count / (time.perf_counter() - start)
    path.unlink()
    return rate


def _compress_for(job: tuple[list[bytes], int, float]) -> tuple[float, float]:
    """Compress ``chunks`` over and over for ``seconds``: (chunks/s, CPU seconds per chunk)."""
    chunks, level, seconds = job
    samples, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        for data in chunks:
            zlib.compress(data, level)
        samples += len(chunks)
    return samples / elapsed, (time.process_time() - cpu) / samples


def zlib_ceiling(
    images: npt.NDArray[np.uint8], chunk: int, level: int, seconds: float, workers: int
) -> tuple[float, float]:
    """``workers`` processes doing nothing but ``zlib.compress(chunk, level)``.

    Returns their summed img/s and zlib's CPU seconds per image.
    """
    chunks = [images[i : i + chunk].tobytes() for i in range(0, len(images), chunk)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_compress_for, [(chunks, level, seconds)] * workers)
    rates, costs = zip(*results, strict=True)
    return sum(rates) * chunk, sum(costs) / len(costs) / chunk


def _compose_and_compress_for(job: tuple[MnistSource, int, int, float, int]) -> float:
    split, chunk, level, seconds, seed = job
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    lengths = np.full(BLOCK, LENGTH)
    options = ComposeOptions()
    samples, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        images = generate_batch(
            split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8
        ).images
        for first in range(0, BLOCK, chunk):
            zlib.compress(images[first : first + chunk].data, level)
        samples += BLOCK
    return samples / elapsed


def work_ceiling(split: MnistSource, chunk: int, level: int, seconds: float, workers: int) -> float:
    """``workers`` processes making blocks and compressing their chunks, no file: img/s.

    The work a gzip build cannot avoid (compose the images, compress every chunk), with none
    of what it adds (HDF5, fletcher32, hand-off, a parent, start-up).
    """
    jobs = [(split, chunk, level, seconds, seed) for seed in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return sum(pool.map(_compose_and_compress_for, jobs))


# --- builds -------------------------------------------------------------------------------------


def _tree_pss(pid: int) -> int:
    """Proportional set size of ``pid`` and its descendants, from /proc.

    PSS splits pages shared by forked workers (MNIST, the interpreter) among them, so the sum
    is the memory the build really holds; summed RSS would count shared pages once per process.
    """
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += next(
                int(line.split()[1]) * 1024
                for line in rollup.splitlines()
                if line.startswith("Pss:")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue
    return total


def _command() -> list[str]:
    """``seqbuilder`` as a user runs it: the console script of this interpreter's install."""
    script = Path(sys.executable).with_name("seqbuilder")
    if script.exists():
        return [str(script)]
    found = shutil.which("seqbuilder")
    return [found] if found else [sys.executable, "-m", "seqbuilder"]


class PeakMemory:
    """Sample the PSS of process ``pid`` and its descendants every 50 ms, from a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _tree_pss(self.pid))
            time.sleep(0.05)

    def stop(self) -> int:
        """Stop sampling; return the peak in bytes."""
        self._done.set()
        self._thread.join()
        return self.peak


def build(overrides: list[str], out: Path, run: Run, *, memory: bool = False) -> None:
    """Run ``seqbuilder build OVERRIDES`` into ``out``; add its time and size to ``run``.

    With ``memory``, sample the build's memory instead and add its peak to ``run``, but not
    its time: reading ``/proc/PID/smaps_rollup`` walks the page tables of each process under
    its memory lock, and every 50 ms that cost the gzip build about 8% of its wall time (20.0
    against 18.7 s), time the baselines beside it never paid.
    """
    command = [*_command(), "build", f"hydra.run.dir={out}", *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = PeakMemory(process.pid) if memory else None
    _, errors = process.communicate()  # drains the progress bars, so the pipe never fills
    elapsed = time.perf_counter() - start
    # The build's workers are its children, reaped by it: their CPU time is counted here too.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak = None if sampler is None else sampler.stop()
    if process.returncode:
        tail = errors.decode(errors="replace")[-2000:]
        raise SystemExit(f"build failed ({process.returncode}): {' '.join(command)}\n{tail}")
    if peak is None:
        run.seconds.add(elapsed)
        run.cpu.add(cpu)
        run.busy.add(cpu / (elapsed * (os.cpu_count() or 1)))
    else:
        run.peak.add(peak)
    run.size = sum(path.stat().st_size for path in out.glob("*.h5"))
    shutil.rmtree(out)


# --- the table ----------------------------------------------------------------------------------


@dataclass
class Results:
    """Every measure of one benchmark run, best of the repeats."""

    engine: Best = field(default_factory=Best)
    naive: Best = field(default_factory=Best)
    write: Best = field(default_factory=Best)
    ceiling: Best = field(default_factory=Best)
    zlib_cpu: Best = field(default_factory=Best)  # zlib's CPU seconds per image in the ceiling
    ceiling_busy: Best = field(default_factory=Best)  # the share of its cores the ceiling had
    work: Best = field(default_factory=Best)  # compose + zlib, no file
    builds: dict[str, tuple[Run, Run]] = field(default_factory=dict)  # the build, one block
    default: Run = field(default_factory=Run)
    previous: Run = field(default_factory=Run)


# throughput rows: storage and worker overrides of the engine's task
BUILDS = {
    "uncompressed": ["workers=1", "storage.compression=none"],
    "gzip": [
        "workers=2",
        "storage.compression=gzip",
        "storage.compression_level=1",
        "storage.deflate=zlib",  # the ceiling is zlib's (deflate=auto would take isal)
    ],
    "lzf": ["workers=2", "storage.compression=lzf"],
}


def _add_ceiling(results: Results, measured: tuple[float, float]) -> None:
    rate, cpu_per_image = measured
    results.ceiling.add(rate)
    results.zlib_cpu.add(cpu_per_image)
    results.ceiling_busy.add(cpu_per_image * rate / 2)  # 2 processes, each on a core


def cpu_bound(count: int, results: Results) -> str:
    """The most of the ceiling the gzip build's own CPU cost allows.

    The ceiling's processes spend all their CPU on zlib; the build spends the same zlib time
    plus everything else it does, in all its processes. With the same CPU at hand (two cores,
    however much of them the machine's other load leaves) and both cores busy all the time,
    its rate is at most the ceiling's times ``zlib / build`` CPU per image. Beside it, the most
    of its cores each side had in a run: less than all when the machine's other load
    took some, which the table's wall-clock ratio mixes in.
    """
    whole, _ = results.builds["gzip"]
    build_us = whole.cpu.low / count * 1e6
    zlib_us = results.zlib_cpu.low * 1e6
    return (
        f"gzip row's bound: the build spends {build_us:.1f} us of CPU per image (all its "
        f"processes, start-up included), zlib {zlib_us:.1f} of them in the ceiling, so with the "
        f"same CPU it reaches at most {zlib_us / build_us:.0%} of the ceiling; 80% needs it "
        f"under {zlib_us / 0.8:.1f} us per image, {build_us - zlib_us / 0.8:.1f} less. (The "
        f"ceiling's processes had {results.ceiling_busy.high:.0%} of their cores, the build "
        f"{whole.busy.high:.0%}.)"
    )


def measure(args: argparse.Namespace, folder: Path) -> Results:
    """Run every measure of ``args.rows``, ``args.repeat`` times, interleaved."""
    split = load_mnist("train")
    images = block_images(split)
    count, chunk, seconds = args.count, args.chunk, args.seconds
    chunked = f"storage.chunk_samples={chunk}"
    task = [*TASK, f"splits.train.count={count}", chunked]
    one_block = [*TASK, f"splits.train.count={BLOCK}", chunked]
    default_build = [f"splits.train.count={args.default_count}"]
    out = folder / "run"
    results = Results(builds={name: (Run(), Run()) for name in BUILDS})
    steps: list[Callable[[], None]] = []
    if "uncompressed" in args.rows:
        steps += [
            lambda: results.engine.add(engine_rate(split, seconds)),
            lambda: results.naive.add(naive_rate(split, seconds)),
            lambda: results.write.add(plain_write_rate(images, count, chunk, folder)),
        ]
    if "gzip" in args.rows:
        steps.append(lambda: _add_ceiling(results, zlib_ceiling(images, chunk, 1, seconds, 2)))
        steps.append(lambda: results.work.add(work_ceiling(split, chunk, 1, seconds, 2)))
    for name, options in BUILDS.items():
        if name in args.rows:
            whole, startup = results.builds[name]
            steps.append(functools.partial(build, [*task, *options], out, whole))
            steps.append(functools.partial(build, [*one_block, *options], out, startup))
    if "default" in args.rows:
        steps.append(lambda: build(default_build, out, results.default))
        steps.append(lambda: build([*default_build, *PREVIOUS_DEFAULTS], out, results.previous))
    for _ in range(args.repeat):
        for step in steps:
            step()
    # Peak memory, each in a run of its own (sampling it slows a build; see build()).
    for name, options in BUILDS.items():
        if name in args.rows:
            build([*task, *options], out, results.builds[name][0], memory=True)
    if "default" in args.rows:
        build(default_build, out, results.default, memory=True)
    return results


def _rate(count: int, run: Run) -> float:
    return count / run.seconds.low


def _steady(count: int, run: Run, startup: Run) -> str:
    rate = (count - BLOCK) / max(run.seconds.low - startup.seconds.low, 1e-9)
    return f"steady {rate:,.0f} (start-up {startup.seconds.low:.1f} s)"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def table(args: argparse.Namespace, results: Results) -> list[tuple[str, ...]]:
    """The rows of the printed table, for the measured ``args.rows``."""
    count = args.count
    rows: list[tuple[str, ...]] = []
    if "uncompressed" in args.rows:
        whole, startup = results.builds["uncompressed"]
        engine, write = results.engine.high, results.write.high
        together = 1 / (1 / engine + 1 / write)
        rate = _rate(count, whole)
        rows.append((
            f"uncompressed build, workers=1, {count:,} img",
            f"{rate:,.0f} img/s ({rate / results.naive.high:.1f}x naive); "
            + _steady(count, whole, startup),
            f"engine {engine:,.0f}; plain h5py write {write:,.0f}; together {together:,.0f} img/s",
            ">= 80% of together",
            f"{rate / together:.0%}, {_met(rate >= 0.8 * together)}",
        ))  # fmt: skip
    if "gzip" in args.rows:
        whole, startup = results.builds["gzip"]
        rate, ceiling, work = _rate(count, whole), results.ceiling.high, results.work.high
        rows.append((
            f"gzip level 1 build, 2 workers, {count:,} img",
            f"{rate:,.0f} img/s; " + _steady(count, whole, startup),
            f"zlib ceiling (2 processes, level 1) {ceiling:,.0f} img/s; composing and zlib, "
            f"no file (2 processes) {work:,.0f} img/s = {work / ceiling:.0%} of the ceiling",
            ">= 80% of ceiling",
            f"{rate / ceiling:.0%}, {_met(rate >= 0.8 * ceiling)}; "
            f"{rate / work:.0%} of composing and zlib",
        ))  # fmt: skip
    if "lzf" in args.rows:
        whole, startup = results.builds["lzf"]
        rate = _rate(count, whole)
        rows.append((
            f"lzf build, 2 workers, {count:,} img",
            f"{rate:,.0f} img/s; " + _steady(count, whole, startup),
            "",
            ">= 60,000 img/s",
            _met(rate >= 60_000),
        ))  # fmt: skip
    if "default" in args.rows:
        new, old = results.default, results.previous
        seconds, size, change = new.seconds.low, new.size, new.size / old.size - 1
        rows.append((
            f"default build, `seqbuilder build splits.train.count={args.default_count}`",
            f"{seconds:.1f} s, {size / 1e6:,.0f} MB",
            f"previous defaults (zlib level 4): {old.seconds.low:.1f} s, {old.size / 1e6:,.0f} MB",
            "<= 12 s, size within 10%",
            f"{old.seconds.low / seconds:.1f}x faster, size {change:+.1%}, "
            + _met(seconds <= 12 and abs(change) <= 0.10),
        ))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="images per throughput row")
    parser.add_argument("--default-count", type=int, default=1_000_000, help="train images")
    parser.add_argument("--chunk", type=int, default=8, help="storage.chunk_samples")
    parser.add_argument("--seconds", type=float, default=3.0, help="per in-memory measure")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every measure, best kept")
    parser.add_argument(
        "--rows", nargs="+", default=[*BUILDS, "default"], choices=[*BUILDS, "default"]
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        results = measure(args, Path(tmp))
    try:
        import isal  # noqa: F401

        deflate = "isal installed (deflate=auto uses it)"
    except ImportError:
        deflate = "isal not installed (deflate=auto uses rle)"
    print(
        f"seqbuilder build benchmark: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"numpy {np.__version__}, h5py {h5py.__version__}, python {sys.version.split()[0]}, "
        f"{deflate}, best of {args.repeat}"
    )
    print("| path | now | baseline, same run | target | result |")
    print("|---|---|---|---|---|")
    for row in table(args, results):
        print("| " + " | ".join(row) + " |")
    if "gzip" in args.rows:
        print(cpu_bound(args.count, results))
    peaks = [(name, whole.peak.high) for name, (whole, _) in results.builds.items()]
    peaks.append(("default", results.default.peak.high))
    print(
        "peak memory (PSS, all processes): "
        + ", ".join(f"{name} {peak / 2**20:,.0f} MiB" for name, peak in peaks if peak)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
