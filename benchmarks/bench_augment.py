"""Measure augmentation: the batch engine per preset, a per-digit albumentations loop, builds.

Run from the repository root (about a minute on a 2-core machine); albumentations
is a benchmark-only dependency (``pip install -e '.[bench]'``)::

    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_augment.py

Prints, for this machine and in one run:

(a) the batch engine's rate, one core, for ``augment=none``, ``light`` and ``heavy``:
    ``generate_batch`` on blocks of 4096 five-digit sequences, width 200, uint8, in samples
    and digits per second (best of ``--repeats`` timed blocks, CPU time of this process), with
    the per-digit kernels ``$SEQBUILDER_KERNELS`` picks (numba when the ``fast`` extra is
    installed), and ``heavy`` again with numpy's (the same bytes, no extra needed);
(a') the per-digit transforms alone, the same as (b) does: ``transform_glyphs`` with
    ``heavy``'s slant, rotation, scale, baseline and elastic keys on the digits of those blocks;
(a'') where a ``heavy`` block's time goes: CPU microseconds per sample of each stage of
    ``generate_batch`` (the per-digit kernels: stroke width, warp and ink boxes; the rest of
    the per-digit step; composition; the blur's matrix products; the rest of the per-sample
    step; the rest of the engine), timed around the functions the engine calls, in the block
    with the best total;
(b) the same per-digit transforms done the way users do them today: a Python loop over the
    digits, each through ``albumentations.Compose([Affine(rotate, shear, scale, translate_px),
    ElasticTransform(alpha, sigma)])`` with OpenCV on one thread, best of ``--passes``; and
    the ratios (a) heavy / (b) (the whole engine: it also changes stroke widths, composes the
    sequences and blurs them, which the loop does not do), the same with numpy's kernels, and
    (a') / (b), in digits per CPU second;
(c) the end-to-end rate of ``seqbuilder build`` writing ``--count`` train images of the
    default configuration (1 to 6 digits, width 200, the default storage) with
    ``workers=--workers``, clean (``augment=none``, the default build) and ``augment=heavy``,
    wall time of the whole command, start-up included, best of ``--builds`` interleaved runs
    (each into a new directory); and their ratio. Also per CPU second of the whole process tree
    (the build and its workers): on a machine shared with other work, wall time measures the
    neighbours as much as the build, CPU time much less so.

Nothing here asserts on timing: the numbers are for reading.
"""

from __future__ import annotations

import os

# One core for the in-memory measures: keep BLAS and OpenCV thread pools to one thread. This
# must happen before numpy is imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from seqbuilder.image import augment, engine, filters  # noqa: E402
from seqbuilder.image.augment import transform_glyphs  # noqa: E402
from seqbuilder.image.engine import generate_batch  # noqa: E402
from seqbuilder.image.kernels import VARIABLE, Kernels, kernels  # noqa: E402
from seqbuilder.image.options import PRESETS, Augment, ComposeOptions  # noqa: E402
from seqbuilder.mnist.load import MnistSource, load_mnist  # noqa: E402

BLOCK = 4096
LENGTH = 5
WIDTH = 200
SPACING = (0, 10)  # widest: 5 * 28 + 4 * 10 = 180 <= 200
# (a''): the stages timed, as (module the engine looks the function up in, function name)
STAGES = {
    "per digit": (engine, "transform_glyphs"),
    "composition": (engine, "compose"),
    "per sample": (engine, "finish_images"),
    "blur products": (filters, "apply_blur"),
}


@contextlib.contextmanager
def kernels_chosen(choice: str | None) -> Iterator[None]:
    """Within the block, ``$SEQBUILDER_KERNELS`` is ``choice`` (None: as it was)."""
    before = os.environ.get(VARIABLE)
    if choice is not None:
        os.environ[VARIABLE] = choice
    try:
        yield
    finally:
        os.environ.pop(VARIABLE, None)
        if before is not None:
            os.environ[VARIABLE] = before


def engine_rate(split: MnistSource, params: Augment, repeats: int) -> float:
    """Return (a): samples per CPU second of the best of ``repeats`` blocks, one core."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    lengths = np.full(BLOCK, LENGTH)
    options = ComposeOptions()
    generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8, params)  # warm
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8, params)
        best = min(best, time.process_time() - start)
    return BLOCK / best


@contextlib.contextmanager
def timed_kernels(totals: dict[str, float], label: str) -> Iterator[None]:
    """Within the block, add the CPU time of every per-digit kernel call to ``totals[label]``."""
    choose: Callable[[int | None], Kernels] = getattr(augment, "kernels")  # noqa: B009

    def chosen(glyphs: int | None = None) -> Kernels:
        run = choose(glyphs)

        def transform(*args: Any) -> Any:
            start = time.process_time()
            try:
                return run.transform(*args)
            finally:
                totals[label] = totals.get(label, 0.0) + time.process_time() - start

        return run._replace(transform=transform)

    setattr(augment, "kernels", chosen)  # noqa: B010
    try:
        yield
    finally:
        setattr(augment, "kernels", choose)  # noqa: B010


@contextlib.contextmanager
def timed(module: ModuleType, name: str, totals: dict[str, float], label: str) -> Iterator[None]:
    """Within the block, add the CPU time of every call of ``module.name`` to ``totals[label]``."""
    function: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.process_time() - start

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, function)


def stage_profile(split: MnistSource, params: Augment, repeats: int) -> dict[str, float]:
    """Return (a''): CPU microseconds per sample of each stage, in the block of best total."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (BLOCK, LENGTH))
    lengths = np.full(BLOCK, LENGTH)
    options = ComposeOptions()
    generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8, params)  # warm
    best: dict[str, float] = {"total": float("inf")}
    for _ in range(repeats):
        totals: dict[str, float] = {}
        with contextlib.ExitStack() as stack:
            for label, (module, name) in STAGES.items():
                stack.enter_context(timed(module, name, totals, label))
            stack.enter_context(timed_kernels(totals, "kernels"))
            start = time.process_time()
            generate_batch(split, digits, lengths, SPACING, WIDTH, options, rng, np.uint8, params)
            totals["total"] = time.process_time() - start
        if totals["total"] < best["total"]:
            best = totals
    micros = {label: seconds / BLOCK * 1e6 for label, seconds in best.items()}
    return {
        f"per-digit kernels ({kernels().name})": micros["kernels"],
        "rest of per digit": micros["per digit"] - micros["kernels"],
        "composition": micros["composition"],
        "blur products": micros["blur products"],
        "rest of per sample": micros["per sample"] - micros["blur products"],
        "rest of engine": micros["total"]
        - micros["per digit"]
        - micros["composition"]
        - micros["per sample"],
        "total": micros["total"],
    }


def transforms_rate(split: MnistSource, params: Augment, repeats: int) -> float:
    """Return (a'): digits per CPU second of ``transform_glyphs`` alone, one core."""
    rng = np.random.default_rng(0)
    glyphs = split.images[rng.integers(0, len(split.images), (BLOCK, LENGTH))]
    transform_glyphs(glyphs, None, params, rng)  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        transform_glyphs(glyphs, None, params, rng)
        best = min(best, time.process_time() - start)
    return BLOCK * LENGTH / best


def albumentations_rate(split: MnistSource, params: Augment, count: int, passes: int) -> float:
    """Return (b): digits per CPU second of a per-digit albumentations loop like ``params``.

    The best of ``passes`` passes over ``count`` digits.
    """
    import albumentations as album
    import cv2

    cv2.setNumThreads(1)
    pipeline = album.Compose(
        [
            album.Affine(
                rotate=(-params.rotation, params.rotation),
                shear={"x": (-params.slant, params.slant), "y": (0, 0)},
                scale=params.scale,
                translate_px={"x": 0, "y": (-params.baseline, params.baseline)},
                p=1.0,
            ),
            album.ElasticTransform(alpha=params.elastic.alpha, sigma=params.elastic.sigma, p=1.0),
        ],
        seed=0,
    )
    digits = split.images[:count]
    for digit in digits[:50]:  # warm up
        pipeline(image=digit)
    best = float("inf")
    for _ in range(passes):  # best of several, as for the engine: noise only slows a pass
        start = time.process_time()
        for digit in digits:
            pipeline(image=digit)["image"]
        best = min(best, time.process_time() - start)
    return count / best


def build_rate(count: int, workers: int, augment: str, out: Path) -> tuple[float, float]:
    """Return (c): images per wall second and per CPU second of one ``seqbuilder build``."""
    command = [
        sys.executable, "-m", "seqbuilder", "build", f"hydra.run.dir={out}",
        f"workers={workers}", f"splits.train.count={count}", "~splits.test", "gallery.count=0",
        f"augment={augment}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the build and its reaped workers
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return count / wall, count / cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000, help="train images per build")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=8, help="timed blocks per preset")
    parser.add_argument("--digits", type=int, default=3000, help="digits through albumentations")
    parser.add_argument("--passes", type=int, default=3, help="albumentations passes, best kept")
    parser.add_argument("--builds", type=int, default=2, help="runs of each build, best kept")
    args = parser.parse_args(argv)

    split = load_mnist("train")
    chosen = kernels().name
    rates = {name: engine_rate(split, params, args.repeats) for name, params in PRESETS.items()}
    with kernels_chosen("numpy"):
        numpy_heavy = engine_rate(split, PRESETS["heavy"], args.repeats)
    geometry = dataclasses.replace(PRESETS["heavy"], thickness=(0.0, 0.0), blur=(0.0, 0.0))
    transforms = transforms_rate(split, geometry, args.repeats)
    stages = stage_profile(split, PRESETS["heavy"], args.repeats)
    album = albumentations_rate(split, PRESETS["heavy"], args.digits, args.passes)
    clean, heavy = (0.0, 0.0), (0.0, 0.0)
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.builds):  # interleaved, best of each: noise only slows a run
            out = Path(folder) / str(run)
            clean = max(clean, build_rate(args.count, args.workers, "none", out / "none"))
            heavy = max(heavy, build_rate(args.count, args.workers, "heavy", out / "heavy"))

    print(f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"per-digit kernels: {chosen} (${VARIABLE}={os.environ.get(VARIABLE) or 'auto'})")
    for name, rate in [*rates.items(), ("heavy", numpy_heavy)]:
        print(
            f"(a) engine, augment={name:5s}: {rate:>10,.0f} samples/s  "
            f"{rate * LENGTH:>11,.0f} digits/s  ({rate / rates['none']:.1%} of none)"
            + (", numpy kernels" if rate is numpy_heavy else "")
        )
    print(f"(a') heavy's warp alone (transform_glyphs, {chosen}): {transforms:,.0f} digits/s")
    print("(a'') heavy per stage, CPU us per sample: " + ", ".join(
        f"{label} {micros:.1f}" for label, micros in stages.items()
    ))  # fmt: skip
    print(f"(b) albumentations per digit, Affine + ElasticTransform: {album:,.0f} digits/s")
    print(
        f"    (a) heavy / (b): {rates['heavy'] * LENGTH / album:.1f}x ({chosen}); "
        f"with numpy kernels {numpy_heavy * LENGTH / album:.1f}x; "
        f"(a') / (b): {transforms / album:.1f}x"
    )
    print(
        f"(c) build {args.count:,} images, workers={args.workers} ({chosen}), augment=none: "
        f"{clean[0]:,.0f} img/s ({clean[1]:,.0f} per CPU second)"
    )
    print(
        f"    augment=heavy: {heavy[0]:,.0f} img/s ({heavy[1]:,.0f} per CPU second): "
        f"{heavy[0] / clean[0]:.0%} of the clean build ({heavy[1] / clean[1]:.0%} per CPU second)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
