"""Feeding training: samples per second that a consumer loop receives, every path in one run.

Run from the repository root (two to three minutes on a 2-core machine)::

    pip install -e '.[fast,bench,examples]'   # libdeflate/isal, Hugging Face datasets, torch
    SEQBUILDER_DATA=../shared/mnist python benchmarks/bench_feed.py

It builds the default dataset (``seqbuilder build``: 60000 train samples, 28 x 200 uint8, gzip
level 1, chunks of 8 samples) unless ``--run-dir`` names one, then measures on ``train.h5``:

(a) ``SequenceDataset[i]`` over a full shuffle, one sample per call (the per-sample path);
(b) ``SequenceDataset.batch`` over ``ChunkShuffle`` batches (and, for contrast, over fully
    shuffled batches);
(c) ``SequenceStream.batches``, beside the batch engine making the same blocks: ``make_block``
    in the stored uint8 (what a build writes) and in float32 (``generate_batch``'s own default);
    the same with ``augment=heavy`` when that config group exists;
(d) a PyTorch ``DataLoader`` with 2 workers over (b) and (c), with the default conversion and
    with ``collate_fn=share_batch``, beside the DataLoader's own ceiling on this machine:
    workers that hand over one ready float32 batch again and again (nothing but the transfer);
(e) Hugging Face ``datasets`` reading the same file (its ``hdf5`` builder, converted to Arrow
    once, numpy format), shuffled the two ways its documentation offers: map-style
    ``Dataset.shuffle`` (a full shuffle through an indices mapping) and the approximate
    shuffle it recommends for fast iteration, ``to_iterable_dataset(num_shards=64)`` then
    ``IterableDataset.shuffle(buffer_size=1024)`` (shard order plus a shuffle buffer). The
    iterable path is the baseline for the 10x target: it is the faster of the two, HF's own
    advice for speed, and like ``ChunkShuffle`` an approximate shuffle (its randomness is in
    the shuffle table, measured the same way);
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

from seqbuilder import ChunkShuffle, SequenceDataset, SequenceStream, share_batch
from seqbuilder.build.plan import make_block, make_recipe, split_plans
from seqbuilder.build.preflight import compose_config
from seqbuilder.store.reader import Indices

BATCH = 256
BUFFERS = (1, 4, 16, 64, 256)
HF_BASELINE = "(e) Hugging Face, iterable, shuffle buffer 1024 (baseline)"
HF_MAP_STYLE = "(e) Hugging Face, shuffled map-style batches"
CHUNK_SHUFFLED = "(b) ds.batch, ChunkShuffle (buffer 64)"


def measure(make: Callable[[], Iterable[int]], seconds: float, repeats: int) -> float:
    """Best samples/s over ``repeats`` passes; ``make()`` gives an iterable of sample counts.

    The clock starts at the first batch of each pass, so every path is measured in its steady
    state (Hugging Face's iterable shuffle fills its buffer first, a DataLoader starts workers).
    """
    best = 0.0
    for _ in range(repeats):
        counts = iter(make())
        next(counts, None)
        start, samples = time.perf_counter(), 0
        for count in counts:
            samples += count
            if time.perf_counter() - start > seconds:
                break
        best = max(best, samples / max(time.perf_counter() - start, 1e-9))
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

    def batches(orders: Callable[[int], Iterable[Indices]]) -> Callable[[], Iterator[int]]:
        epoch = iter(range(1_000_000))

        def run() -> Iterator[int]:
            for indices in orders(next(epoch)):
                yield len(dataset.batch(indices)[2])

        return run

    def full(epoch: int) -> Iterator[Indices]:
        order = np.random.default_rng(epoch).permutation(len(dataset))
        return (order[start : start + BATCH] for start in range(0, len(order), BATCH))

    def chunk(epoch: int) -> ChunkShuffle:
        return ChunkShuffle(dataset, batch_size=BATCH, seed=0, epoch=epoch)

    return {
        "(a) ds[i], full shuffle": measure(single, seconds, repeats),
        CHUNK_SHUFFLED: measure(batches(chunk), seconds, repeats),
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
        """Workers that hand over one ready float32 batch: the DataLoader's own ceiling."""

        def __iter__(self) -> Iterator[np.ndarray]:
            info = torch.utils.data.get_worker_info()
            share = len(dataset) // BATCH // (info.num_workers if info else 1)
            ready = np.zeros((BATCH, 28, dataset.width), np.float32)
            for _ in range(share):
                yield ready

    one_batch = BATCH // dataset.chunk_samples  # a buffer of one batch's chunks

    def sampler(buffer: int, workers: int = 1) -> ChunkShuffle:
        return ChunkShuffle(
            dataset, batch_size=BATCH, buffer_chunks=buffer, seed=0, num_workers=workers
        )

    sources: dict[str, tuple[Any, Any]] = {
        "DataLoader ceiling: one ready float32 batch": (Ready(), None),
        f"(d) DataLoader over (b): sampler=ChunkShuffle (buffer {one_batch})": (
            dataset,
            sampler(one_batch),
        ),
        "(d) DataLoader over (b): sampler=ChunkShuffle (buffer 64)": (dataset, sampler(64)),
        "(d) DataLoader over (b): sampler=ChunkShuffle (buffer 64, num_workers=2)": (
            dataset,
            sampler(64, 2),
        ),
        "(d) DataLoader over (c): stream.batches": (SequenceStream().batches(BATCH), None),
    }
    # torch's defaults, then the settings docs/feeding-training.md recommends: share_batch
    # and 4 batches in flight per worker; both with whole batches from the dataset
    # (batch_size=None), 2 workers kept across passes, no pinned memory (a CPU run)
    settings: dict[str, dict[str, Any]] = {
        "torch defaults": {},
        "share_batch, prefetch_factor=4": {"collate_fn": share_batch, "prefetch_factor": 4},
    }
    rows = {}
    for name, (source, chosen) in sources.items():
        for label, options in settings.items():
            loader = DataLoader(
                source,
                sampler=chosen,
                batch_size=None,
                num_workers=2,
                persistent_workers=True,
                **options,
            )

            def run(loader: Any = loader) -> Iterator[int]:
                for batch in loader:  # a tensor, or [images, labels, lengths]
                    yield len(batch[0] if isinstance(batch, (tuple, list)) else batch)

            next(iter(loader))  # start the workers outside the timing
            rows[f"{name}, {label}"] = measure(run, seconds, repeats)
            del loader
    return rows


def hugging_face_rows(
    path: Path, seconds: float, repeats: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(e): Hugging Face datasets over the same file, converted to Arrow once.

    Returns the rates, and the order in which HF's iterable shuffle visits the samples (for
    the shuffle table).
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        print("(e) skipped: pip install -e '.[bench]' for Hugging Face datasets")
        return {}, {}
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

        def iterable(source: Any, seed: int) -> Any:
            # HF's advice for fast shuffled iteration: shards in a shuffled order, a buffer
            return source.to_iterable_dataset(num_shards=64).shuffle(seed=seed, buffer_size=1024)

        def buffered() -> Iterator[int]:
            stream = iterable(arrow, next(epoch))
            return consume(stream.with_format("numpy").iter(batch_size=BATCH))

        rows = {
            HF_MAP_STYLE: measure(shuffled, seconds, repeats),
            HF_BASELINE: measure(buffered, seconds, repeats),
        }
        numbered = arrow.select_columns(["lengths"]).add_column("index", np.arange(len(arrow)))
        order = [row["index"] for row in iterable(numbered.select_columns(["index"]), 0)]
    return rows, {"HF iterable (64 shards, buffer 1024)": np.array(order)}


def floor_lines(path: Path, repeats: int) -> list[str]:
    """What any chunk-shuffled epoch of (b) must spend on one core, measured alone.

    Inflating every stored chunk once (the decoder ``ds.batch`` uses) and writing every sample
    once as float32: no read of the file, no cache, no gather.
    """
    import h5py

    from seqbuilder.store import batch as batch_module

    with h5py.File(path) as file:
        images = file["images"]
        chunk = images.chunks[0]
        stored = [
            images.id.read_direct_chunk((first, 0, 0))[1][:-4]  # the fletcher32 trailer
            for first in range(0, images.shape[0], chunk)
        ]
        size = chunk * int(np.prod(images.shape[1:]))
        count, width = images.shape[0], images.shape[2]
    block = np.zeros((BATCH, 28, width), np.uint8)

    def best(step: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times)

    def inflate() -> None:
        for data in stored:
            batch_module._INFLATE(data, size)

    def to_float() -> None:
        for _ in range(count // BATCH):
            np.divide(block, np.float32(255), dtype=np.float32)

    decoder = batch_module.INFLATER
    inflating, converting = best(inflate), best(to_float)
    ceiling = count / (inflating + converting)
    return [
        f"floor of (b), one epoch on one core: inflate {len(stored)} chunks ({decoder}) "
        f"{inflating:.3f} s, uint8 to float32 {converting:.3f} s: at most {ceiling:,.0f} "
        "samples/s before any read, lookup or gather"
    ]


def shuffle_table(path: Path, seconds: float, others: dict[str, np.ndarray]) -> None:
    """How close ChunkShuffle gets to a full shuffle, per buffer size, and what it costs.

    ``others``: more epoch orders to measure the same way (Hugging Face's iterable shuffle).
    """
    dataset = SequenceDataset(path)
    size, count = dataset.chunk_samples, len(dataset)
    print(
        "\n| buffer_chunks | neighbour correlation | neighbours from one chunk "
        "| chunks per batch of 256 | ds.batch samples/s |"
    )
    print("|---:|---:|---:|---:|---:|")
    orders = {
        str(buffer): ChunkShuffle(dataset, batch_size=BATCH, buffer_chunks=buffer).order()
        for buffer in BUFFERS
    }
    orders["full shuffle"] = np.random.default_rng(0).permutation(count)
    for name, order in (orders | others).items():
        correlation = np.corrcoef(order[:-1], order[1:])[0, 1]
        same_chunk = np.mean(order[:-1] // size == order[1:] // size)
        batches = [order[start : start + BATCH] for start in range(0, count, BATCH)]
        chunks = np.mean([len(np.unique(batch // size)) for batch in batches])
        rate = measure(_reads(SequenceDataset(path), batches), seconds, 1)
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
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        run_dir = args.run_dir or build_default(Path(folder))
        path = run_dir / "train.h5"
        rows = read_rows(path, args.seconds, args.repeats)
        rows |= stream_rows([], args.seconds, args.repeats)
        if (Path(__file__).resolve().parents[1] / "conf" / "augment").is_dir():
            rows |= stream_rows(["augment=heavy"], args.seconds, args.repeats)
        hugging_face, hf_orders = hugging_face_rows(path, args.seconds, args.repeats)
        rows |= hugging_face
        rows |= loader_rows(path, args.seconds, args.repeats)
        print(f"\n{path}: {len(SequenceDataset(path))} samples; batches of {BATCH}")
        print(f"load average before and after: {load}, {os.getloadavg()}")
        print("| path | samples/s |\n|---|---:|")
        for name, rate in rows.items():
            print(f"| {name} | {rate:,.0f} |")
        for baseline in (HF_BASELINE, HF_MAP_STYLE):
            if baseline in rows:
                ratio = rows[CHUNK_SHUFFLED] / rows[baseline]
                print(f"{CHUNK_SHUFFLED} / {baseline}: {ratio:.1f}x")
        for line in floor_lines(path, args.repeats):
            print(line)
        shuffle_table(path, args.seconds, hf_orders)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
