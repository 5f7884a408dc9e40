"""A chunk-aware shuffle of a built file: random batches at the speed of whole-chunk reads.

A fully shuffled batch touches as many chunks as it has samples, and each touch decompresses a
whole chunk for one sample. :class:`ChunkShuffle` shuffles the order of the chunks, cuts that
order into buffers of ``buffer_chunks`` chunks, and shuffles the samples inside each buffer: a
batch then draws from one or two buffers, and every chunk is decompressed once per epoch
(:meth:`~seqbuilder.store.reader.SequenceDataset.batch` keeps the decoded chunks of the last
batches). The bigger the buffer, the closer to a full shuffle; docs/feeding-training.md has the
measured trade-off. Pure index arithmetic: it never opens the file.

A PyTorch ``DataLoader`` deals batches to its workers in turn, and workers do not share their
caches: told ``num_workers``, the shuffle deals its batches so that each worker reads a
contiguous run of them, and a chunk is decoded by one worker only.

Usage::

    ds = SequenceDataset("train.h5")
    for epoch in range(epochs):
        for indices in ChunkShuffle(ds, batch_size=256, seed=0, epoch=epoch):
            images, labels, lengths = ds.batch(indices)

    # PyTorch: whole batches per worker, converted to tensors by the default collate
    loader = DataLoader(ds, sampler=ChunkShuffle(ds, batch_size=256, num_workers=2),
                        batch_size=None, num_workers=2)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import InvalidTypeError, InvalidValueError


class Chunked(Protocol):
    """What the shuffle needs of a dataset: its length and samples per stored chunk."""

    @property
    def chunk_samples(self) -> int: ...

    def __len__(self) -> int: ...


class ChunkShuffle:
    """Index batches that visit every sample once, shuffled chunk-aware; seeded per epoch.

    The epoch's order comes from ``SeedSequence([seed, epoch])``: the chunk order is a
    permutation of the chunks, then the samples of each run of ``buffer_chunks`` chunks are
    permuted among themselves. Iterating yields lists of ints (``batch_size`` of them, the last
    list possibly shorter), so it serves as a PyTorch ``DataLoader``'s ``batch_sampler``, or as
    its ``sampler`` with ``batch_size=None`` (then ``ds[list]`` reads each batch whole).

    With ``num_workers > 1`` the same batches come in another order: cut into ``num_workers``
    runs of consecutive batches, emitted in turn (first batch of each run, then the second of
    each, ...), so the ``DataLoader`` worker ``k`` that gets every ``num_workers``-th batch
    from batch ``k`` reads run ``k`` alone, and two workers share a decoded chunk at most where
    their runs meet.

    With ``world_size > 1`` (``torch.distributed``), every rank computes the same order and
    takes every ``world_size``-th batch, starting at batch ``rank``; each rank gets
    ``len(self)`` batches, the same number, so up to ``world_size - 1`` batches of an epoch
    are left out (different ones each epoch), as ``DistributedSampler(drop_last=True)`` does.

    Args:
        dataset: a :class:`~seqbuilder.store.reader.SequenceDataset` (anything with ``len()``
            and ``chunk_samples``).
        batch_size: indices per batch, >= 1.
        buffer_chunks: chunks whose samples are shuffled together, >= 1.
        seed: the shuffle's seed, >= 0.
        epoch: the epoch, >= 0; :meth:`set_epoch` changes it.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: the number of ranks sharing the epoch.
        num_workers: the ``num_workers`` of the ``DataLoader`` this samples for (each rank's).

    Raises:
        ValueError: a count, seed or epoch is out of range.
        TypeError: one of them is not an integer.
    """

    def __init__(
        self,
        dataset: Chunked,
        *,
        batch_size: int,
        buffer_chunks: int = 64,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 1,
    ) -> None:
        self.count = len(dataset)
        self.chunk_samples = check_int("dataset.chunk_samples", dataset.chunk_samples, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.buffer_chunks = check_int("buffer_chunks", buffer_chunks, 1)
        self.seed = check_int("seed", seed, 0)
        self.epoch = check_int("epoch", epoch, 0)
        self.world_size = check_int("world_size", world_size, 1)
        self.rank = check_int("rank", rank, 0)
        self.num_workers = check_int("num_workers", num_workers, 1)
        if self.rank >= self.world_size:
            raise InvalidValueError(f"rank={rank!r}, expected 0..{self.world_size - 1}")

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from now on (call it before each epoch)."""
        self.epoch = check_int("epoch", epoch, 0)

    def order(self) -> npt.NDArray[np.int64]:
        """Return this epoch's order of every index (all ranks), ``(N,)`` int64."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch])))
        size = self.chunk_samples
        n_chunks = -(-self.count // size)
        chunks = rng.permutation(n_chunks)
        indices = (chunks[:, None] * size + np.arange(size)).ravel()
        buffers = np.repeat(np.arange(n_chunks) // self.buffer_chunks, size)
        inside = indices < self.count  # the last chunk may be short
        indices, buffers = indices[inside], buffers[inside]
        # Sort by buffer, then by a random key: a uniform permutation within each buffer.
        return indices[np.lexsort((rng.random(len(indices)), buffers))]

    def __len__(self) -> int:
        batches = -(-self.count // self.batch_size)
        return batches // self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        step = self.batch_size * self.world_size
        first = self.rank * self.batch_size
        starts = [first + number * step for number in range(len(self))]
        for start in _dealt(starts, self.num_workers):
            yield order[start : start + self.batch_size].tolist()

    def __repr__(self) -> str:
        return (
            f"ChunkShuffle(n={self.count}, batch_size={self.batch_size}, "
            f"buffer_chunks={self.buffer_chunks}, seed={self.seed}, epoch={self.epoch}, "
            f"num_workers={self.num_workers})"
        )


def _dealt(items: list[int], workers: int) -> Iterator[int]:
    """Yield ``items`` so that every ``workers``-th one, from the k-th, is the k-th contiguous run.

    The runs are as even as can be (the first ``len(items) % workers`` hold one more), so the
    k-th yielded item of every round, the last round included, comes from run ``k``.
    """
    size, extra = divmod(len(items), workers)
    starts = [k * size + min(k, extra) for k in range(workers)]
    for position in range(size + (extra > 0)):
        for k, start in enumerate(starts):
            if position < size or k < extra:
                yield items[start + position]


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int, checking it is an integer >= ``minimum``.

    Raises:
        TypeError: ``value`` is not an integer (a bool is not).
        ValueError: ``value`` < ``minimum``; the message names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidTypeError(f"{name}={value!r}, expected an integer")
    if value < minimum:
        raise InvalidValueError(f"{name}={value!r}, expected an integer >= {minimum}")
    return int(value)
