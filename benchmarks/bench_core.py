"""Measure the core function against a naive per-image implementation, and the batch engine.

Run from the repository root::

    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_core.py

Prints, for this machine and in one run:

1. the single-call rate of ``generate_numbers_sequence([0, 9, 6, 5], (0, 10), 160, seed=i)``
   with MNIST already loaded (best of three repeats of ``--seconds`` each);
2. the rate of a straightforward reference (per call: a fresh ``default_rng(i)``, one random
   sample per digit, gaps from ``rng.integers``, ``np.hstack``, pad, divide by 255) with MNIST
   preloaded the same way, measured the same way;
3. their ratio;
4. the batch engine's in-memory rate: ``generate_batch`` on blocks of 4096 five-digit
   sequences, width 200, uint8, on one core.

Nothing here asserts on timing: the numbers are for reading, not for CI.
"""

from __future__ import annotations

import os

# One core for the batch engine: keep any BLAS thread pool numpy may use to one thread. This
# must happen before numpy is imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from seqbuilder import generate_numbers_sequence  # noqa: E402
from seqbuilder.image.engine import generate_batch  # noqa: E402
from seqbuilder.image.options import ComposeOptions  # noqa: E402
from seqbuilder.mnist.load import load_mnist  # noqa: E402

DIGITS = [0, 9, 6, 5]
SPACING = (0, 10)
WIDTH = 160

BATCH_SAMPLES = 4096
BATCH_LENGTH = 5
BATCH_WIDTH = 200
BATCH_SPACING = (0, 10)  # widest composition: 5 * 28 + 4 * 10 = 180 <= 200


def naive_sequence(
    digits: list[int],
    spacing_range: tuple[int, int],
    image_width: int,
    seed: int,
    images: npt.NDArray[np.uint8],
    by_label: list[npt.NDArray[np.intp]],
) -> npt.NDArray[np.float32]:
    """Compose one image the straightforward way: a loop over digits, hstack, pad, scale.

    Args:
        digits: the digits to show.
        spacing_range: ``(min, max)`` gap, both >= 0.
        image_width: output width; must hold the composition.
        seed: seed of this call's generator.
        images: ``(N, 28, 28) uint8`` MNIST images.
        by_label: for each label, the indices of its images.

    Returns:
        ``(28, image_width) float32`` in [0, 1], the sequence centred.
    """
    rng = np.random.default_rng(seed)
    low, high = spacing_range
    parts = []
    for position, digit in enumerate(digits):
        if position:
            parts.append(np.zeros((28, rng.integers(low, high + 1)), np.uint8))
        candidates = by_label[digit]
        parts.append(images[candidates[rng.integers(len(candidates))]])
    strip = np.hstack(parts)
    free = image_width - strip.shape[1]
    padded = np.pad(strip, ((0, 0), (free // 2, free - free // 2)))
    return padded.astype(np.float32) / 255


def best_rate(call: Callable[[int], object], seconds: float, repeats: int = 3) -> float:
    """Return the best, over ``repeats`` runs of about ``seconds`` each, of calls per second.

    ``call(i)`` is called with i = 0, 1, 2, ... in each run; the clock is read every 64 calls
    so reading it costs nothing measurable.
    """
    best = 0.0
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            for i in range(calls, calls + 64):
                call(i)
            calls += 64
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, calls / elapsed)
    return best


def best_block_rate(call: Callable[[int], object], seconds: float, repeats: int = 3) -> float:
    """Return the best, over ``repeats`` runs of about ``seconds`` each, of blocks per second."""
    best = 0.0
    for _ in range(repeats):
        blocks = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or blocks == 0:
            call(blocks)
            blocks += 1
        best = max(best, blocks / elapsed)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="length of each of the 3 timed repeats"
    )
    args = parser.parse_args(argv)

    split = load_mnist("train")
    by_label = [
        split.label_order[split.label_starts[d] : split.label_starts[d + 1]] for d in range(10)
    ]

    # Warm-up: the first call pays for option parsing caches and resampling tables.
    generate_numbers_sequence(DIGITS, SPACING, WIDTH, seed=0)
    naive_sequence(DIGITS, SPACING, WIDTH, 0, split.images, by_label)

    library = best_rate(
        lambda i: generate_numbers_sequence(DIGITS, SPACING, WIDTH, seed=i), args.seconds
    )
    naive = best_rate(
        lambda i: naive_sequence(DIGITS, SPACING, WIDTH, i, split.images, by_label),
        args.seconds,
    )

    digits = np.random.default_rng(0).integers(0, 10, (BATCH_SAMPLES, BATCH_LENGTH))
    lengths = np.full(BATCH_SAMPLES, BATCH_LENGTH, np.int64)
    options = ComposeOptions()

    def block(i: int) -> object:
        rng = np.random.default_rng(i)
        return generate_batch(
            split, digits, lengths, BATCH_SPACING, BATCH_WIDTH, options, rng, np.uint8
        )

    block(0)
    blocks_per_second = best_block_rate(block, args.seconds)
    samples_per_second = blocks_per_second * BATCH_SAMPLES
    megabytes_per_second = samples_per_second * 28 * BATCH_WIDTH / 1e6

    print(
        f"seqbuilder core benchmark: Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}, best of 3 x {args.seconds:g} s"
    )
    rows = [
        (
            f"generate_numbers_sequence({DIGITS}, {SPACING}, {WIDTH}, seed=i)",
            f"{library:,.0f} calls/s",
        ),
        ("naive per-image reference (MNIST preloaded)", f"{naive:,.0f} calls/s"),
        ("ratio, core function / naive", f"{library / naive:.2f}x"),
        (
            f"generate_batch {BATCH_SAMPLES} x {BATCH_LENGTH} digits, width {BATCH_WIDTH}, "
            "uint8, 1 core",
            f"{samples_per_second:,.0f} samples/s ({megabytes_per_second:,.0f} MB/s)",
        ),
    ]
    label_width = max(len(label) for label, _ in rows)
    print(f"{'case':<{label_width}}  rate")
    print(f"{'-' * label_width}  {'-' * 30}")
    for label, value in rows:
        print(f"{label:<{label_width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
