"""Feeding training: samples per second that a consumer loop receives, every path in one run.

Run from the repository root (two to three minutes on a 2-core machine)::

    pip install -e '.[bench,examples]'   # Hugging Face datasets and torch, for (d) and (e)
    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_feed.py

It builds the default dataset (``seqbuilder build``: 60000 train samples, 28 x 200 uint8, gzip
level 4, chunks of 8 samples) unless ``--run-dir`` names one, then measures on ``train.h5``:

(a) ``SequenceDataset[i]`` over a full shuffle, one sample per call (today's per-sample path);
(b) ``SequenceDataset.batch`` over ``ChunkShuffle`` batches (and, for contrast, over fully
    shuffled batches);
(c) ``SequenceStream.batches``, beside the batch engine making the same blocks: ``make_block``
    in the stored uint8 (what a build writes) and in float32 (``generate_batch``'s own default);
    the same with ``augment=heavy`` when that config group exists;
(d) a PyTorch ``DataLoader`` with 2 workers over (b) and (c), beside the DataLoader's own
    ceiling on this machine: workers that hand over ready float32 batches of the same shape;
(e) Hugging Face ``datasets`` reading the same file (its ``hdf5`` builder, converted to Arrow
    once, numpy format): shuffled map-style batches, and its iterable shuffle buffer;
and the randomness of ``ChunkShuffle`` for several buffer sizes against a full shuffle.

Every consumer gets float32 images in [0, 1] (the Hugging Face rows include that division).
Rates are the best of ``--repeats`` passes of up to ``--seconds`` each, in one process for
(a), (b), (c) and (e): one core. Nothing asserts on timing: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqbuilder import ChunkShuffle, SequenceDataset, SequenceStream
from seqbuilder.build.plan import make_block, make_recipe, split_plans
from seqbuilder.build.preflight import compose_config

BATCH = 256
BUFFERS = (1, 4, 16, 64, 256)


def measure(make: Callable[[], Iterable[int]], seconds: float, repeats: int) -> float:
    """Best samples/s over ``repeats`` passes; ``make()`` gives an iterable of sample counts."""
    best = 0.0
    for _ in range(repeats):
        start, samples = time.perf_counter(), 0
        for count in make():
            samples += count
            if time.perf_counter() - start > seconds:
                break
        best = max(best, samples / (time.perf_counter() - start))
    return best


def build_default(root: Path) -> Path:
    run_dir = root / "default"
    command = [sys.executable, "-m", "seqbuilder", "build", "gallery.count=0"]
    subprocess.run([*command, f"hydra.run.dir={run_dir}"], check=True, capture_output=True)
    return run_dir


def read_rows(path: Path, seconds: float, repeats: int) -> dict[str, float]:
    """(a) and (b): reads of the built file in this process."""
    dataset = SequenceDataset(path)
    shuffled = np.random.default_rng(0).permutation(len(dataset))

    def single() -> Iterator[int]:
        for index in shuffled.tolist():
            dataset[index]
            yield 1

    def batches(orders: Callable[[int], Iterable[Sequence[int]]]) -> Callable[[], Iterator[int]]:
        epoch = iter(range(1_000_000))

        def run() -> Iterator[int]:
            for indices in orders(next(epoch)):
                yield len(dataset.batch(indices)[2])

        return run

    def full(epoch: int) -> Iterator[Sequence[int]]:
        order = np.random.default_rng(epoch).permutation(len(dataset))
        return (order[start : start + BATCH] for start in range(0, len(order), BATCH))

    def chunk(epoch: int) -> ChunkShuffle:
        return ChunkShuffle(dataset, batch_size=BATCH, seed=0, epoch=epoch)

    return {
        "(a) ds[i], full shuffle": measure(single, seconds, repeats),
        "(b) ds.batch, ChunkShuffle (buffer 64)": measure(batches(chunk), seconds, repeats),
        "    ds.batch, fully shuffled batches": measure(batches(full), seconds, repeats),
    }


def stream_rows(overrides: Sequence[str], seconds: float, repeats: int) -> dict[str, float]:
    """(c): the stream beside the engine making the same blocks, in this process."""
    config, _ = compose_config(overrides)
    recipe = make_recipe(config)
    plan = split_plans(config)[0]
    as_float = dataclasses.replace(recipe, dtype="float32")
    label = " ".join(overrides) or "default"

    def engine(chosen: Any) -> Callable[[], Iterator[int]]:
        def run() -> Iterator[int]:
            for block_id in plan.block_ids:
                yield len(make_block(chosen, plan, block_id).lengths)

        return run

    stream = SequenceStream(overrides)

    def batches() -> Iterator[int]:
        for _, _, lengths in stream.batches(BATCH):
            yield len(lengths)

    return {
        f"engine, uint8 blocks ({label})": measure(engine(recipe), seconds, repeats),
        f"engine, float32 blocks ({label})": measure(engine(as_float), seconds, repeats),
        f"(c) SequenceStream.batches({BATCH}) ({label})": measure(batches, seconds, repeats),
    }


def loader_rows(path: Path, seconds: float, repeats: int) -> dict[str, float]:
    """(d): what a DataLoader with 2 workers hands the main process."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    dataset = SequenceDataset(path)

    class Ready(IterableDataset[np.ndarray]):
        """Workers that only hand over float32 batches: the DataLoader's own ceiling."""

        def __iter__(self) -> Iterator[np.ndarray]:
            info = torch.utils.data.get_worker_info()
            share = len(dataset) // BATCH // (info.num_workers if info else 1)
            ready = np.zeros((BATCH, 28, dataset.width), np.float32)
            for _ in range(share):
                yield ready.copy()

    one_batch = BATCH // dataset.chunk_samples
    loaders = {
        "    DataLoader ceiling: ready float32 batches": (Ready(), None),
        "(d) DataLoader over (b): sampler=ChunkShuffle (buffer 64)": (
            dataset,
            ChunkShuffle(dataset, batch_size=BATCH, seed=0),
        ),
        # a buffer of one batch's chunks: no chunk is decoded by both workers
        f"(d) DataLoader over (b): sampler=ChunkShuffle (buffer {one_batch})": (
            dataset,
            ChunkShuffle(dataset, batch_size=BATCH, buffer_chunks=one_batch, seed=0),
        ),
        "(d) DataLoader over (c): stream.batches": (SequenceStream().batches(BATCH), None),
    }
    rows = {}
    for name, (source, sampler) in loaders.items():
        loader = DataLoader(
            source, sampler=sampler, batch_size=None, num_workers=2, persistent_workers=True
        )

        def run(loader: Any = loader) -> Iterator[int]:
            for batch in loader:  # a tensor, or (images, labels, lengths)
                yield len(batch[0] if isinstance(batch, (tuple, list)) else batch)

        next(iter(loader))  # start the workers outside the timing
        rows[name] = measure(run, seconds, repeats)
        del loader
    return rows


def hugging_face_rows(path: Path, seconds: float, repeats: int) -> dict[str, float]:
    """(e): Hugging Face datasets over the same file, converted to Arrow once."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        print("(e) skipped: pip install -e '.[bench]' for Hugging Face datasets")
        return {}
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        arrow = datasets.load_dataset(
            "hdf5", data_files={"train": str(path)}, split="train", cache_dir=cache
        ).select_columns(["images", "labels", "lengths"])
        table = arrow.with_format("numpy")
        print(f"(e) Hugging Face: HDF5 to Arrow once, {time.perf_counter() - start:.1f} s")
        epoch = iter(range(1_000_000))

        def consume(batches: Iterable[dict[str, Any]]) -> Iterator[int]:
            for batch in batches:
                yield len(np.divide(batch["images"], np.float32(255), dtype=np.float32))

        def shuffled() -> Iterator[int]:
            return consume(table.shuffle(seed=next(epoch)).iter(batch_size=BATCH))

        def buffered() -> Iterator[int]:
            stream = arrow.to_iterable_dataset(num_shards=64).shuffle(
                seed=next(epoch), buffer_size=1024
            )
            return consume(stream.with_format("numpy").iter(batch_size=BATCH))

        return {
            "(e) Hugging Face, shuffled map-style batches": measure(shuffled, seconds, repeats),
            "(e) Hugging Face, iterable, shuffle buffer 1024": measure(buffered, seconds, repeats),
        }


def shuffle_table(path: Path, seconds: float) -> None:
    """How close ChunkShuffle gets to a full shuffle, per buffer size, and what it costs."""
    dataset = SequenceDataset(path)
    size, count = dataset.chunk_samples, len(dataset)
    print(
        "\n| buffer_chunks | neighbour correlation | neighbours from one chunk "
        "| chunks per batch of 256 | ds.batch samples/s |"
    )
    print("|---:|---:|---:|---:|---:|")
    full = np.random.default_rng(0).permutation(count)
    for buffer in (*BUFFERS, None):
        if buffer is None:
            order = full
        else:
            order = ChunkShuffle(dataset, batch_size=BATCH, buffer_chunks=buffer).order()
        correlation = np.corrcoef(order[:-1], order[1:])[0, 1]
        same_chunk = np.mean(order[:-1] // size == order[1:] // size)
        batches = [order[start : start + BATCH] for start in range(0, count, BATCH)]
        chunks = np.mean([len(np.unique(batch // size)) for batch in batches])
        rate = measure(_reads(SequenceDataset(path), batches), seconds, 1)
        name = "full shuffle" if buffer is None else str(buffer)
        print(f"| {name} | {correlation:+.4f} | {same_chunk:.4f} | {chunks:.0f} | {rate:,.0f} |")


def _reads(dataset: SequenceDataset, batches: list[Any]) -> Callable[[], Iterator[int]]:
    def run() -> Iterator[int]:
        for indices in batches:
            yield len(dataset.batch(indices)[2])

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="an existing default build (else built)")
    parser.add_argument("--seconds", type=float, default=3.0, help="longest pass of a row")
    parser.add_argument("--repeats", type=int, default=2, help="passes per row, best kept")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = args.run_dir or build_default(Path(folder))
        path = run_dir / "train.h5"
        rows = read_rows(path, args.seconds, args.repeats)
        rows |= stream_rows([], args.seconds, args.repeats)
        if (Path(__file__).resolve().parents[1] / "conf" / "augment").is_dir():
            rows |= stream_rows(["augment=heavy"], args.seconds, args.repeats)
        rows |= hugging_face_rows(path, args.seconds, args.repeats)
        rows |= loader_rows(path, args.seconds, args.repeats)
        print(f"\n{path}: {len(SequenceDataset(path))} samples; batches of {BATCH}")
        print("| path | samples/s |\n|---|---:|")
        for name, rate in rows.items():
            print(f"| {name} | {rate:,.0f} |")
        shuffle_table(path, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
