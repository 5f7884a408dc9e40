"""Measure the core function against the fastest public peer and a naive loop, and the engine.

Run from the repository root::

    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_core.py

Prints, for this machine and in one run (every baseline measured in the same run, the cases
taking turns so that a busy machine slows them alike; best of ``--repeats``):

1. the single-call rate of ``generate_numbers_sequence([0, 9, 6, 5], (0, 10), 160, seed=i)``
   with MNIST already loaded, and the same with ``fit="scale"``;
2. the same calls through the batch engine, as the function ran before its single-image path
   (``default_rng(i)`` and ``generate_batch`` on a batch of one);
3. the fastest public peer, esh-b/image-sequence-generator (MIT; ``DigitSequence.
   generate_numbers_sequence`` with its default config: variable spacing between digits, no
   transform), re-implemented here step for step with its data preloaded as it preloads it;
4. a naive numpy loop (per call: a fresh ``default_rng(i)``, one ``integers`` draw per digit and
   per gap, ``np.hstack``, ``np.pad``, divide by 255);
5. the ratios the performance issue (#13) asks about, and each case's peak memory per call
   (tracemalloc) with the process's peak resident size;
6. the batch engine's in-memory rate: ``generate_batch`` on blocks of 4096 five-digit
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
import random  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from PIL import Image  # noqa: E402

from seqbuilder import generate_numbers_sequence  # noqa: E402
from seqbuilder.image.engine import generate_batch  # noqa: E402
from seqbuilder.image.options import ComposeOptions  # noqa: E402
from seqbuilder.mnist.load import MnistSource, load_mnist  # noqa: E402

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
    by_label: Sequence[npt.NDArray[np.integer[Any]]],
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
    return np.divide(padded, 255, dtype=np.float32)


class PeerSequence:
    """esh-b/image-sequence-generator's method, re-implemented (not copied) for this benchmark.

    What its ``DigitSequence`` does, with its default config (``spacing: variable/between``,
    ``transform: false``): at construction, every MNIST image as float32 ``(255 - raw) / 255``
    and each label's indices as a Python list; per call, ``isinstance`` checks of the
    arguments, ``random.choice`` of an index per digit (the global ``random`` state, no seed),
    ``np.take`` of the images, ``np.random.randint(min, max, len + 1)`` gaps (``max``
    excluded, as there) with both edge gaps zeroed by ``np.put``, then ``np.concatenate`` of a
    ``np.ones`` float32 block per gap and each digit in turn onto a growing image, and Pillow's
    ``Image.resize`` of the float image to ``image_width`` (its variable-spacing result).
    """

    def __init__(self, split: MnistSource) -> None:
        self.images = (255 - split.images.astype(np.float32)) / 255
        labels = split.labels.tolist()
        self.grouped: list[list[int]] = [[] for _ in range(10)]
        for index, label in enumerate(labels):
            self.grouped[label].append(index)

    def __call__(
        self, digits: Sequence[int], spacing_range: tuple[int, int], image_width: int
    ) -> npt.NDArray[np.float32]:
        if not isinstance(digits, Sequence) or not digits:
            raise TypeError("digits")
        if not all(isinstance(d, int) for d in digits):
            raise TypeError("digits")
        if not isinstance(spacing_range, tuple) or not all(
            isinstance(v, int) for v in spacing_range
        ):
            raise TypeError("spacing_range")
        if not isinstance(image_width, int):
            raise TypeError("image_width")
        chosen = [random.choice(self.grouped[d]) for d in digits]
        glyphs = np.take(self.images, chosen, axis=0)
        gaps = np.random.randint(spacing_range[0], spacing_range[1], len(digits) + 1)  # noqa: NPY002  (the peer's call)
        np.put(gaps, [0, -1], 0)
        image = np.zeros((28, 0), np.float32)
        for i in range(len(gaps)):
            image = np.concatenate((image, np.ones((28, gaps[i]), np.float32)), axis=1)
            if i < len(glyphs):
                image = np.concatenate((image, glyphs[i]), axis=1)
        return np.array(Image.fromarray(image).resize((image_width, 28)))


def run_rate(call: Callable[[int], object], seconds: float) -> float:
    """Return the calls per second of one run of about ``seconds``.

    ``call(i)`` is called with i = 0, 1, 2, ...; the clock is read every 64 calls so reading
    it costs nothing measurable.
    """
    calls = 0
    start = time.perf_counter()
    while True:
        for i in range(calls, calls + 64):
            call(i)
        calls += 64
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def best_rates(
    cases: dict[str, Callable[[int], object]], seconds: float, repeats: int
) -> dict[str, float]:
    """Return each case's best calls per second over ``repeats`` rounds in which they take turns.

    Taking turns (rather than all repeats of one case, then the next) exposes every case to the
    same load when the machine is shared, so the ratios hold even when the rates drift.
    """
    best = dict.fromkeys(cases, 0.0)
    for _ in range(repeats):
        for name, call in cases.items():
            best[name] = max(best[name], run_rate(call, seconds))
    return best


def peak_bytes(call: Callable[[int], object], calls: int = 200) -> int:
    """Return the most memory (tracemalloc) that ``calls`` calls had allocated at once."""
    call(0)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for i in range(calls):
            call(i)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


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
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed run")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timed runs")
    args = parser.parse_args(argv)

    split = load_mnist("train")
    by_label = [
        split.label_order[split.label_starts[d] : split.label_starts[d + 1]] for d in range(10)
    ]
    peer = PeerSequence(split)
    pad, scale = ComposeOptions(), ComposeOptions(fit="scale")
    digits_block, lengths = np.array([DIGITS]), np.array([len(DIGITS)])

    def engine(i: int, options: ComposeOptions) -> object:
        # the function before its single-image path: the validation is left out, so this
        # slightly flatters the old path
        rng = np.random.default_rng(i)
        return generate_batch(split, digits_block, lengths, SPACING, WIDTH, options, rng)

    cases: dict[str, Callable[[int], object]] = {
        "ours": lambda i: generate_numbers_sequence(DIGITS, SPACING, WIDTH, seed=i),
        "ours scale": lambda i: generate_numbers_sequence(
            DIGITS, SPACING, WIDTH, seed=i, fit="scale"
        ),
        "engine": lambda i: engine(i, pad),
        "engine scale": lambda i: engine(i, scale),
        "peer": lambda i: peer(DIGITS, SPACING, WIDTH),
        "naive": lambda i: naive_sequence(DIGITS, SPACING, WIDTH, i, split.images, by_label),
    }
    for call in cases.values():  # warm-up: option caches, resampling tables, Pillow
        call(0)
    rates = best_rates(cases, args.seconds, args.repeats)
    peaks = {name: peak_bytes(call) for name, call in cases.items()}

    digits = np.random.default_rng(0).integers(0, 10, (BATCH_SAMPLES, BATCH_LENGTH))
    batch_lengths = np.full(BATCH_SAMPLES, BATCH_LENGTH, np.int64)

    def block(i: int) -> object:
        rng = np.random.default_rng(i)
        return generate_batch(
            split, digits, batch_lengths, BATCH_SPACING, BATCH_WIDTH, pad, rng, np.uint8
        )

    block(0)
    blocks_per_second = best_block_rate(block, args.seconds)
    samples_per_second = blocks_per_second * BATCH_SAMPLES
    megabytes_per_second = samples_per_second * 28 * BATCH_WIDTH / 1e6
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(
        f"seqbuilder core benchmark: Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, best of {args.repeats} x {args.seconds:g} s, cases in turn"
    )
    signature = f"generate_numbers_sequence({DIGITS}, {SPACING}, {WIDTH}, seed=i)"
    rows = [
        (signature, rates["ours"], "ours"),
        (f"  {signature[:-1]}, fit='scale')", rates["ours scale"], "ours scale"),
        ("  before: default_rng(i) + generate_batch of one (pad)", rates["engine"], "engine"),
        ("  before: the same, fit='scale'", rates["engine scale"], "engine scale"),
        ("peer: esh-b/image-sequence-generator, re-implemented", rates["peer"], "peer"),
        ("naive loop: default_rng(i), integers, hstack, pad", rates["naive"], "naive"),
    ]
    label_width = max(len(label) for label, _, _ in rows)
    print(f"{'case':<{label_width}}  {'calls/s':>9}  {'peak/call':>9}")
    print(f"{'-' * label_width}  {'-' * 9}  {'-' * 9}")
    for label, rate, name in rows:
        print(f"{label:<{label_width}}  {rate:>9,.0f}  {peaks[name] / 1024:>6.1f} KiB")
    print()
    ratios = [
        ("ours / peer (target >= 3x)", rates["ours"] / rates["peer"], 3.0),
        ("ours / naive loop (target >= 2.5x)", rates["ours"] / rates["naive"], 2.5),
        ("ours scale / naive loop (target >= 1x)", rates["ours scale"] / rates["naive"], 1.0),
        ("ours / before (pad)", rates["ours"] / rates["engine"], None),
        ("ours scale / before (scale)", rates["ours scale"] / rates["engine scale"], None),
    ]
    for label, ratio, target in ratios:
        verdict = "" if target is None else ("  met" if ratio >= target else "  NOT met")
        print(f"{label:<{label_width}}  {ratio:>8.2f}x{verdict}")
    print()
    print(
        f"generate_batch {BATCH_SAMPLES} x {BATCH_LENGTH} digits, width {BATCH_WIDTH}, uint8, "
        f"1 core: {samples_per_second:,.0f} samples/s ({megabytes_per_second:,.0f} MB/s)"
    )
    print(f"peak resident memory of this process: {max_rss:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
