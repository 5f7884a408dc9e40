"""Feeding training through PyTorch's DataLoader, with 0, 1 and 2 worker processes.

A stream must produce every sample of its epoch exactly once whatever the number of workers
(and ranks); ChunkShuffle must serve as a batch_sampler and as a sampler of whole batches. The
oracle is the built file of the same overrides. torch comes from the ``examples`` extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from seqbuilder import ChunkShuffle, SequenceDataset, SequenceStream, share_batch
from seqbuilder.store import shared as shared_module
from tests.support.feed_builds import FEED_CONFIGS

if importlib.util.find_spec("torch") is None:  # a skip would prove nothing
    pytest.fail("torch is not installed: pip install -e '.[examples]' (torch==2.13.0, CPU)")
import torch
from torch.utils.data import DataLoader

WORKERS = [pytest.param(count, id=f"{count}-workers") for count in (0, 1, 2)]


@pytest.fixture(autouse=True)
def _real_mnist(real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))


def fingerprint(image: Any, label: Any) -> str:
    """One sample as a digest of its image bytes and its digits (equal samples do recur)."""
    image = np.asarray(image, dtype=np.float32)
    digits = [int(digit) for digit in np.asarray(label) if digit >= 0]
    return hashlib.sha256(image.tobytes() + bytes(digits)).hexdigest()


def file_samples(path: Path, start: int = 0, stop: int | None = None) -> list[str]:
    dataset = SequenceDataset(path)
    return [fingerprint(*dataset[index]) for index in range(len(dataset))[start:stop]]


def batch_samples(batches: Iterable[Any]) -> list[str]:
    return [
        fingerprint(image, label)
        for images, labels, _ in batches
        for image, label in zip(images, labels, strict=True)
    ]


@pytest.fixture(scope="module")
def blocks_h5(feed_run: Callable[[str], Path]) -> Path:
    return feed_run("blocks") / "train.h5"  # 4200 samples: two blocks


@pytest.mark.parametrize("workers", WORKERS)
def test_a_stream_gives_each_sample_once_per_epoch_across_workers(
    blocks_h5: Path, workers: int
) -> None:
    stream = SequenceStream(FEED_CONFIGS["blocks"])
    loader = DataLoader(stream, batch_size=None, num_workers=workers)

    got = [fingerprint(image, label) for image, label in loader]

    expected = file_samples(blocks_h5)
    assert Counter(got) == Counter(expected) and len(got) == 4200
    if workers <= 1:
        assert got == expected  # one process: the file's order


@pytest.mark.parametrize("workers", WORKERS)
def test_stream_batches_through_a_dataloader_equal_the_file(blocks_h5: Path, workers: int) -> None:
    batches = SequenceStream(FEED_CONFIGS["blocks"]).batches(64)
    loader = DataLoader(batches, batch_size=None, num_workers=workers)

    received = list(loader)

    assert all(isinstance(part, torch.Tensor) for batch in received for part in batch)
    assert received[0][0].dtype == torch.float32 and received[0][1].dtype == torch.int64
    got = batch_samples((b.numpy() for b in batch) for batch in received)
    expected = file_samples(blocks_h5)
    assert Counter(got) == Counter(expected) and len(got) == 4200
    if workers <= 1:
        assert got == expected
    # 64 divides a block, so every worker's batches are whole but the split's last one
    assert sorted(len(batch[2]) for batch in received)[1:] == [64] * (len(received) - 1)


def test_ranks_with_two_workers_each_share_the_epoch_disjointly(blocks_h5: Path) -> None:
    got: list[str] = []
    for rank in range(2):
        stream = SequenceStream(FEED_CONFIGS["blocks"], rank=rank, world_size=2)
        loader = DataLoader(stream.batches(100), batch_size=None, num_workers=2)
        got += batch_samples((b.numpy() for b in batch) for batch in loader)

    assert Counter(got) == Counter(file_samples(blocks_h5))


def test_another_epoch_through_workers_is_fresh(blocks_h5: Path) -> None:
    stream = SequenceStream(FEED_CONFIGS["blocks"], epoch=1)
    loader = DataLoader(stream.batches(128), batch_size=None, num_workers=2)

    got = batch_samples((b.numpy() for b in batch) for batch in loader)

    # Identical samples do recur by chance (a one-digit sample is one of ~60000 MNIST images at
    # one offset), so a fresh epoch shares a few dozen with epoch 0, never more.
    assert len(got) == 4200 and len(set(got) & set(file_samples(blocks_h5))) < 0.05 * 4200


@pytest.mark.parametrize("workers", WORKERS)
def test_chunk_shuffle_as_a_sampler_delivers_whole_batches(blocks_h5: Path, workers: int) -> None:
    dataset = SequenceDataset(blocks_h5)
    shuffle = ChunkShuffle(dataset, batch_size=100, buffer_chunks=16, seed=1)
    loader = DataLoader(dataset, sampler=shuffle, batch_size=None, num_workers=workers)

    for indices, (images, labels, lengths) in zip(shuffle, loader, strict=True):
        expected = dataset.batch(indices)
        assert images.numpy().tobytes() == expected[0].tobytes()
        assert labels.numpy().tolist() == expected[1].tolist()
        assert lengths.numpy().tolist() == expected[2].tolist()


class WhoReads(SequenceDataset):
    """The dataset, each batch tagged with the DataLoader worker that read it."""

    def __getitem__(self, index: Any) -> Any:
        info = torch.utils.data.get_worker_info()
        return index, -1 if info is None else info.id


@pytest.mark.parametrize(("num_workers", "most_shared"), [(2, 16), (1, None)])
def test_told_the_workers_chunk_shuffle_has_each_chunk_read_by_one_worker(
    blocks_h5: Path, num_workers: int, most_shared: int | None
) -> None:
    dataset = WhoReads(blocks_h5)
    chunk = dataset.chunk_samples
    shuffle = ChunkShuffle(dataset, batch_size=64, buffer_chunks=16, num_workers=num_workers)
    loader = DataLoader(dataset, sampler=shuffle, batch_size=None, num_workers=2)

    chunks: list[set[int]] = [set(), set()]
    for indices, worker in loader:
        chunks[worker].update(index // chunk for index in indices)

    shared = len(chunks[0] & chunks[1])
    if most_shared is not None:  # only where the two runs meet: one buffer at most
        assert shared <= most_shared
    else:  # dealt in turn, both workers decode nearly every chunk
        assert shared > len(chunks[0] | chunks[1]) / 2


def test_chunk_shuffle_as_a_batch_sampler_with_the_default_collate(blocks_h5: Path) -> None:
    dataset = SequenceDataset(blocks_h5, label_format="padded")
    shuffle = ChunkShuffle(dataset, batch_size=100, seed=2, epoch=3)
    loader = DataLoader(dataset, batch_sampler=shuffle, num_workers=2)

    batches = list(loader)

    assert len(batches) == len(shuffle) == 42
    for indices, (images, labels) in zip(shuffle, batches, strict=True):
        expected_images, expected_labels, _ = dataset.batch(indices)
        assert images.numpy().tobytes() == expected_images.tobytes()
        assert labels.numpy().tolist() == expected_labels.tolist()


@pytest.mark.parametrize("workers", WORKERS)
def test_share_batch_delivers_what_the_default_conversion_delivers(
    blocks_h5: Path, workers: int
) -> None:
    dataset = SequenceDataset(blocks_h5)
    shuffle = ChunkShuffle(dataset, batch_size=100, buffer_chunks=16, seed=1)
    default = DataLoader(dataset, sampler=shuffle, batch_size=None, num_workers=workers)
    shared = DataLoader(
        dataset, sampler=shuffle, batch_size=None, num_workers=workers, collate_fn=share_batch
    )

    for expected, got in zip(default, shared, strict=True):
        assert type(got) is type(expected) is list and len(got) == 3
        for want, part in zip(expected, got, strict=True):
            assert isinstance(part, torch.Tensor) and part.dtype == want.dtype
            assert part.shape == want.shape and torch.equal(part, want)


def test_stream_batches_through_share_batch_equal_the_file(blocks_h5: Path) -> None:
    batches = SequenceStream(FEED_CONFIGS["blocks"]).batches(64)
    loader = DataLoader(batches, batch_size=None, num_workers=2, collate_fn=share_batch)

    got = batch_samples((part.numpy() for part in batch) for batch in loader)

    assert Counter(got) == Counter(file_samples(blocks_h5)) and len(got) == 4200


def test_share_batch_keeps_what_it_does_not_convert_and_needs_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = {"images": np.ones((2, 3), np.float32), "name": "x", "ids": (np.arange(2), 5)}

    converted = share_batch(batch)  # outside a worker: default_convert

    assert converted["name"] == "x" and converted["ids"][1] == 5
    assert torch.equal(converted["images"], torch.ones(2, 3))
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(
        RuntimeError, match=r"^share_batch is a DataLoader's collate_fn: import torch first$"
    ):
        share_batch(batch)


def test_after_share_batch_a_worker_makes_images_in_shared_memory_and_sends_them_as_is(
    blocks_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_module, "_SEND_SHARED", False)
    worker = SimpleNamespace(id=0, num_workers=1)  # the one worker of a DataLoader
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: worker)
    dataset = SequenceDataset(blocks_h5)
    stream = SequenceStream(FEED_CONFIGS["blocks"])
    first = dataset.batch([5, 1, 4000])
    assert first[0].base is None  # ordinary memory until share_batch has run here

    sent = share_batch(first)
    second, streamed = dataset.batch([5, 1, 4000]), next(iter(stream.batches(8)))
    again = share_batch(second)

    assert torch.equal(sent[0], again[0]) and sent[0].is_shared()
    assert again[0] is second[0].base  # the very tensor the numpy images view: no copy
    assert share_batch(streamed)[0] is streamed[0].base
    assert streamed[0].dtype == np.float32 and isinstance(streamed[0], np.ndarray)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: None)
    assert (
        streamed[0].tobytes()
        == next(iter(SequenceStream(FEED_CONFIGS["blocks"]).batches(8)))[0].tobytes()
    )


def test_streaming_and_shuffled_reads_never_import_torch(
    tiny_run_dir: Path, real_mnist_dir: Path
) -> None:
    code = (
        "import sys, numpy as np, seqbuilder as s; "
        "st = s.SequenceStream(['+preset=tiny'], split='val'); "
        "n = sum(len(b[2]) for b in st.batches(16)) + len(list(st)); "
        f"ds = s.SequenceDataset({str(tiny_run_dir / 'train.h5')!r}); "
        "n += sum(len(ds.batch(i)[2]) for i in s.ChunkShuffle(ds, batch_size=32)); "
        "assert n == 300, n; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {"SEQBUILDER_DATA": str(real_mnist_dir), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
