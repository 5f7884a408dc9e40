"""Choose ``storage.chunk_samples``: file size, write rate and shuffled single-sample reads.

Builds one images dataset of real MNIST sequences (uint8, width 200 by default) and writes it
with each chunk size and compression through :class:`seqbuilder.store.SplitWriter`, then times
``SequenceDataset[i]`` on a freshly opened file over shuffled indices, the access pattern of a
training loop with ``shuffle=True``. The files sit in the page cache, so the read figures are
HDF5 + decompression cost, not disk seeks. A compression ``gzip:ENGINE`` (``gzip:rle``,
``gzip:isal``) writes gzip chunks made by that deflate engine, as a build's workers make them
(the write rate is then one process encoding and writing); plain ``gzip`` is HDF5's zlib.

Usage::

    SEQBUILDER_DATA=/path/to/mnist python benchmarks/bench_read.py [--count 20000] [--width 200]
    SEQBUILDER_DATA=/path/to/mnist python benchmarks/bench_read.py --chunks 8 \
        --compressions gzip gzip:rle gzip:isal
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqbuilder.image.engine import generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import load_mnist
from seqbuilder.store.chunks import encode_block
from seqbuilder.store.reader import SequenceDataset
from seqbuilder.store.schema import DEFAULT_COMPRESSION_LEVEL
from seqbuilder.store.writer import SplitWriter

CHUNK_SAMPLES = (1, 4, 8, 16, 32, 64, 256)
COMPRESSIONS = ("gzip", "lzf", "none")
MAX_LENGTH = 6
SPACING = (0, 4)  # 6 digits with gaps up to 4 need 188 columns: fits width 200
WRITE_BLOCK = 1024  # samples per write() call, like a builder block
ENCODED_BLOCK = 4096  # samples per encoded block: whole chunks of every dataset, as in a build


def make_samples(count: int, width: int, seed: int) -> dict[str, np.ndarray]:
    """Compose ``count`` real MNIST sequences of random lengths 1..MAX_LENGTH."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, MAX_LENGTH, size=count, endpoint=True)
    digits = rng.integers(0, 10, size=(count, MAX_LENGTH))
    labels = np.where(np.arange(MAX_LENGTH) < lengths[:, None], digits, -1)
    batch = generate_batch(
        load_mnist("train"), digits, lengths, SPACING, width, ComposeOptions(), rng, np.uint8
    )
    return {
        "images": batch.images,
        "labels": labels,
        "lengths": lengths,
        "boxes": batch.boxes,
        "source_index": batch.source_index,
    }


def write_file(
    path: Path, samples: dict[str, np.ndarray], compression: str, chunk: int, level: int
) -> float:
    """Write ``samples`` to ``path``; return the seconds spent."""
    compression, _, deflate = compression.partition(":")
    count, _, width = samples["images"].shape
    attrs = {
        "config": "benchmark: true\n",
        "seed": 0,
        "split": "bench",
        "source": "train",
        "source_sha256": "-",
        "background": "black",
    }
    start = time.perf_counter()
    with SplitWriter(
        path,
        count=count,
        width=width,
        max_length=MAX_LENGTH,
        compression=compression,
        compression_level=level,
        chunk_samples=chunk,
        attrs=attrs,
    ) as writer:
        encoding = writer.block_encoding(deflate, ENCODED_BLOCK) if deflate else None
        if deflate and encoding is None:
            raise SystemExit(f"{compression}:{deflate} chunks of {chunk} cannot be pre-encoded")
        block = ENCODED_BLOCK if encoding else WRITE_BLOCK
        for first in range(0, count, block):
            arrays = [array[first : first + block] for array in samples.values()]
            if encoding is None:
                writer.write(*arrays)
            else:
                writer.write_block(encode_block(encoding, *arrays))
    return time.perf_counter() - start


def read_latencies(path: Path, indices: np.ndarray) -> np.ndarray:
    """Return the microseconds of each ``ds[i]`` over ``indices`` on a fresh dataset."""
    dataset = SequenceDataset(path)
    dataset[0]  # open the file and load labels outside the timing
    times = np.empty(len(indices))
    for slot, index in enumerate(indices):
        start = time.perf_counter()
        dataset[int(index)]
        times[slot] = time.perf_counter() - start
    dataset.close()
    return times * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--chunks", type=int, nargs="+", default=list(CHUNK_SAMPLES))
    parser.add_argument("--compressions", nargs="+", default=list(COMPRESSIONS))
    parser.add_argument("--level", type=int, default=DEFAULT_COMPRESSION_LEVEL, help="gzip level")
    args = parser.parse_args(argv)
    samples = make_samples(args.count, args.width, seed=0)
    raw_mib = samples["images"].nbytes / 2**20
    indices = np.random.default_rng(1).permutation(args.count)[: args.reads]
    print(f"{args.count} samples of 28 x {args.width} uint8 ({raw_mib:.1f} MiB raw images)")
    print(
        "| compression | chunk_samples | chunk KiB | file MiB | ratio | write img/s "
        "| read mean µs | read p95 µs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for compression in args.compressions:
            for chunk in args.chunks:
                path = Path(folder) / f"{compression}-{chunk}.h5"
                seconds = write_file(path, samples, compression, chunk, args.level)
                micros = read_latencies(path, indices)
                size = path.stat().st_size
                chunk_kib = chunk * 28 * args.width / 1024
                print(
                    f"| {compression} | {chunk} | {chunk_kib:.0f} | {size / 2**20:.1f} "
                    f"| {samples['images'].nbytes / size:.1f} | {args.count / seconds:,.0f} "
                    f"| {micros.mean():.0f} | {np.percentile(micros, 95):.0f} |",
                    flush=True,
                )
                path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
