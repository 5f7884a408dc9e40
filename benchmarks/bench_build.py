"""Measure the dataset build against its ceilings: engine, naive reference, zlib, end to end.

Run from the repository root (about two minutes on a 2-core machine)::

    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_build.py

Prints, for this machine and in one run:

(a) the batch engine's in-memory composition rate, one core: ``generate_batch`` on blocks of
    4096 five-digit sequences, width 200, uint8;
(b) a naive per-image reference on the same task (per image: draw its MNIST samples and gaps,
    ``np.hstack`` digits and gap columns, pad to the width), MNIST preloaded;
(c) the ceiling of a gzip build: zlib's compression rate of those images at the given level
    and chunk shape, times the worker count; and, since cores of a shared virtual machine do
    not add up perfectly, the rate of that many processes compressing at once;
(d) the end-to-end rate of ``seqbuilder build`` writing ``--count`` train images with gzip at
    ``--level`` and ``workers=--workers``, then the same with lzf, and with gzip written by the
    isal deflate encoder (wall time of the whole command, start-up included);
(e) the peak memory of each build: the proportional set size (PSS) summed over the build
    process and its workers, sampled every 50 ms from /proc; and the same for a build of a
    quarter of the count, to show that memory does not grow with the count.

Nothing here asserts on timing: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from seqbuilder.image.engine import generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist

BLOCK = 4096
LENGTH = 5
WIDTH = 200
SPACING = (0, 10)  # widest: 5 * 28 + 4 * 10 = 180 <= 200


def engine_rate(split: MnistSource, seconds: float) -> tuple[float, npt.NDArray[np.uint8]]:
    """Return (a) in samples/s, and one block of images for the compression ceiling."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    lengths = np.full(BLOCK, LENGTH)
    options = ComposeOptions()
    images = generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8).images
    blocks, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8)
        blocks += 1
    return blocks * BLOCK / elapsed, images


def naive_rate(split: MnistSource, seconds: float) -> float:
    """Return (b): the straightforward per-image loop, in samples/s."""
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


def zlib_rate(images: npt.NDArray[np.uint8], chunk: int, level: int, seconds: float) -> float:
    """Return zlib's one-core rate, in samples/s, on ``chunk``-sample chunks of ``images``."""
    chunks = [images[i : i + chunk].tobytes() for i in range(0, len(images), chunk)]
    samples, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for data in chunks:
            zlib.compress(data, level)
        samples += len(images)
    return samples / elapsed


def _zlib_worker(job: tuple[list[bytes], int, float]) -> float:
    chunks, level, seconds = job
    samples, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for data in chunks:
            zlib.compress(data, level)
        samples += len(chunks)
    return samples / elapsed


def concurrent_zlib_rate(
    images: npt.NDArray[np.uint8], chunk: int, level: int, seconds: float, workers: int
) -> float:
    """Return the summed rate, in samples/s, of ``workers`` processes compressing at once.

    On a shared virtual machine the cores do not add up perfectly (other tenants, a shared
    memory bus), so this is the ceiling the build can really approach.
    """
    chunks = [images[i : i + chunk].tobytes() for i in range(0, len(images), chunk)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        rates = pool.map(_zlib_worker, [(chunks, level, seconds)] * workers)
    return sum(rates) * chunk


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


def build(count: int, workers: int, storage: list[str], out: Path) -> tuple[float, int, int]:
    """Run ``seqbuilder build``; return (samples/s, peak PSS bytes, file bytes)."""
    command = [
        sys.executable, "-m", "seqbuilder", "build",
        f"hydra.run.dir={out}", f"workers={workers}", f"splits.train.count={count}",
        "~splits.test", "gallery.count=0", f"width={WIDTH}",
        f"sequences.min_length={LENGTH}", f"sequences.max_length={LENGTH}",
        f"spacing.min={SPACING[0]}", f"spacing.max={SPACING[1]}", *storage,
    ]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if code:
        raise SystemExit(f"build failed with status {code}: {' '.join(command)}")
    return count / elapsed, peak, (out / "train.h5").stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="train images to build")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--level", type=int, default=1, help="gzip level of the builds")
    parser.add_argument("--chunk", type=int, default=8, help="storage.chunk_samples")
    parser.add_argument("--seconds", type=float, default=3.0, help="per in-memory measure")
    args = parser.parse_args(argv)

    split = load_mnist("train")
    engine, images = engine_rate(split, args.seconds)
    naive = naive_rate(split, args.seconds)
    one_core = zlib_rate(images, args.chunk, args.level, args.seconds)
    ceiling = one_core * args.workers
    concurrent = concurrent_zlib_rate(images, args.chunk, args.level, args.seconds, args.workers)
    rows = [
        ("(a) batch engine, 1 core, 5 digits, width 200, uint8", f"{engine:,.0f} img/s"),
        ("(b) naive per-image reference (np.hstack loop)", f"{naive:,.0f} img/s"),
        ("    (a) / (b)", f"{engine / naive:.1f}x"),
        (f"(c) zlib level {args.level}, chunks of {args.chunk}, x {args.workers} workers",
         f"{ceiling:,.0f} img/s ({one_core:,.0f} per core)"),
        (f"    measured with {args.workers} processes compressing at once",
         f"{concurrent:,.0f} img/s"),
    ]  # fmt: skip
    storage = [f"storage.chunk_samples={args.chunk}"]
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        runs = [
            ("gzip", args.count, [*storage, f"storage.compression_level={args.level}"]),
            ("lzf", args.count, [*storage, "storage.compression=lzf"]),
            (
                "gzip with storage.deflate=isal",
                args.count,
                [*storage, f"storage.compression_level={args.level}", "storage.deflate=isal"],
            ),
            ("gzip", args.count // 4, [*storage, f"storage.compression_level={args.level}"]),
        ]
        for number, (name, count, options) in enumerate(runs):
            rate, peak, size = build(count, args.workers, options, Path(tmp) / str(number))
            label = f"(d) seqbuilder build {count:,} images, {name}, workers={args.workers}"
            detail = f"{rate:,.0f} img/s, file {size / 2**20:,.0f} MiB"
            if name == "gzip" and count == args.count:
                detail += f", {rate / ceiling:.0%} of (c), {rate / concurrent:.0%} of measured"
            rows.append((label, detail))
            rows.append(
                ("(e) peak memory (PSS, all processes) of that build", f"{peak / 2**20:,.0f} MiB")
            )
    print(
        f"seqbuilder build benchmark: {os.cpu_count()} cores, numpy {np.__version__}, "
        f"python {sys.version.split()[0]}"
    )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
