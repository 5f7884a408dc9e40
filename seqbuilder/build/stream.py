"""Stream the samples a build would write, generated in memory: training without a file.

:class:`SequenceStream` composes ``conf/`` with the overrides ``seqbuilder build`` takes
(:func:`~seqbuilder.build.preflight.compose_config`, the one code path for that), plans the
split as the build does and makes each block with
:func:`~seqbuilder.build.plan.make_block`, so its samples are the build's: epoch 0 equals the
built ``<split>.h5`` byte for byte, in order, and every later epoch draws fresh blocks the same
way (``SeedSequence([seed, crc32(split), block, epoch])``). It stops before ``store``.

Usage::

    stream = SequenceStream(["width=256"], split="train", epoch=0)
    for images, labels, lengths in stream.batches(256):  # (256, 28, 256) float32, ...
        ...

Sharing the work: a block of 4096 samples is drawn from one seed, so it is the unit a process
makes. In PyTorch ``DataLoader`` worker processes each worker makes every ``num_workers``-th
piece of the stream (found through ``torch.utils.data.get_worker_info()`` when torch is already
imported; seqbuilder never imports it). With ``rank``/``world_size`` (``torch.distributed``),
rank ``r`` streams samples ``[r * q, (r + 1) * q)`` of the split, ``q = len // world_size``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import InvalidTypeError, InvalidValueError
from ..mnist.load import load_mnist
from ..store.options import ReadOptions
from ..store.shared import empty_images
from .plan import BLOCK_SAMPLES, Block, Recipe, SplitPlan, make_block, make_recipe, split_plans
from .preflight import compose_config
from .shuffle import check_int

Sample = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
# images (n, 28, W) float32, labels (n, L) int64 padded with -1, lengths (n,) int64
Batch = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]

SAMPLE_BATCH = 256  # samples converted at once when iterating sample by sample
_AS_READ = ReadOptions()  # what SequenceDataset gives by default: the stream gives the same


class Piece(NamedTuple):
    """Rows ``[start, stop)`` of block ``block_id``: the unit a process makes."""

    block_id: int
    start: int
    stop: int


class SequenceStream:
    """The samples of one split of a build, made in memory, epoch after epoch.

    Iterating yields ``(image, label)`` exactly as
    :class:`~seqbuilder.store.reader.SequenceDataset` yields them over the built
    ``<split>.h5`` (image ``(28, W)`` float32, label the ``(length,)`` int64 digits), in file
    order, when ``epoch=0``; another epoch gives fresh samples drawn the same way. A sharded
    config (``shard.index``, ``shard.count``) streams that shard's share, as its build writes.
    Picklable (it holds the resolved plan, never Hydra state); in ``DataLoader`` workers
    each sample is made once per epoch, by one worker.

    Args:
        overrides: the override strings ``seqbuilder build`` takes, e.g.
            ``["augment=heavy", "width=256"]``; ``hydra.*`` keys are accepted and ignored.
        split: the split to stream.
        epoch: 0 for the build's samples; each other epoch a fresh set (:meth:`set_epoch`).
        rank: with ``world_size``, this process's rank under ``torch.distributed``.
        world_size: the number of ranks; each streams ``len // world_size`` samples, a
            disjoint share (up to ``world_size - 1`` samples are left out to keep the ranks
            in step).

    Raises:
        ConfigError, hydra.errors.HydraException, omegaconf.errors.OmegaConfBaseException:
            the overrides make a bad configuration (as ``seqbuilder build`` says).
        ValueError: ``split`` is not a split of the config; ``epoch``, ``rank`` or
            ``world_size`` is out of range.
        TypeError: ``overrides`` is a string rather than a list of them.
        MnistNotFoundError: MNIST is not available.
    """

    def __init__(
        self,
        overrides: Sequence[str] = (),
        *,
        split: str = "train",
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if isinstance(overrides, str):
            raise InvalidTypeError(
                f"overrides={overrides!r} is a string, expected a list of strings: [{overrides!r}]"
            )
        config, _ = compose_config(overrides)
        plans = {plan.name: plan for plan in split_plans(config)}
        if split not in plans:
            raise InvalidValueError(
                f"split={split!r} is not a split of the config, expected one of "
                f"{', '.join(map(repr, plans))}"
            )
        self._recipe: Recipe = make_recipe(config)
        self._plan: SplitPlan = plans[split]
        self.epoch = check_int("epoch", epoch, 0)
        self._rank, self._world_size = _check_rank(rank, world_size)
        load_mnist(self._plan.source, self._recipe.data_dir)  # fail here, not in a worker
        _register_with_torch()

    @property
    def split(self) -> str:
        """The split's name."""
        return self._plan.name

    @property
    def width(self) -> int:
        """W, the image width."""
        return self._recipe.width

    @property
    def max_length(self) -> int:
        """L, the most digits a sample can hold."""
        return self._recipe.max_length

    def set_epoch(self, epoch: int) -> None:
        """Stream the samples of ``epoch`` from the next iteration on."""
        self.epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        start, stop = self._range()
        return stop - start

    def __repr__(self) -> str:
        return (
            f"SequenceStream(split={self.split!r}, n={len(self)}, width={self.width}, "
            f"epoch={self.epoch})"
        )

    def __iter__(self) -> Iterator[Sample]:
        for images, labels, lengths in self._batches(SAMPLE_BATCH):
            for image, label, length in zip(images, labels, lengths.tolist(), strict=True):
                yield image, label[:length]

    def batches(self, size: int) -> StreamBatches:
        """Return the stream as whole batches: an iterable of ``(images, labels, lengths)``.

        images ``(size, 28, W)`` float32, labels ``(size, L)`` int64 padded with -1, lengths
        ``(size,)`` int64, in stream order; only the last batch of each process may be
        shorter. Picklable, so ``DataLoader(stream.batches(256), batch_size=None,
        num_workers=2)`` works; a ``size`` dividing 4096 keeps every worker's batches whole.

        Raises:
            ValueError: ``size`` < 1.
            TypeError: ``size`` is not an integer.
        """
        return StreamBatches(self, check_int("size", size, 1))

    def _range(self) -> tuple[int, int]:
        """The samples of the split this process's rank streams, ``[start, stop)``."""
        plan = self._plan
        start, count = plan.sample_start, plan.stored_count
        if self._world_size == 1:
            return start, start + count
        share = count // self._world_size
        return start + self._rank * share, start + (self._rank + 1) * share

    def pieces(self) -> list[Piece]:
        """The pieces this process makes: its rank's range, dealt across DataLoader workers."""
        start, stop = self._range()
        pieces = []
        for block_id in self._plan.block_ids:
            first = block_id * BLOCK_SAMPLES
            rows = range(max(start, first), min(stop, first + self._plan.block_size(block_id)))
            if rows:
                pieces.append(Piece(block_id, rows.start - first, rows.stop - first))
        worker, workers = _worker_share()
        return pieces[worker::workers]

    def _batches(self, size: int) -> Iterator[Batch]:
        """Yield this process's samples in batches of ``size``, converting batch by batch."""
        carry: list[Block] = []  # rows left over from earlier pieces, fewer than size
        held = 0
        for piece in self.pieces():
            block = make_block(self._recipe, self._plan, piece.block_id, epoch=self.epoch)
            rows = _rows(block, piece.start, piece.stop)
            start = 0
            if held:  # complete the carried batch first
                start = min(size - held, len(rows.lengths))
                carry.append(_rows(rows, 0, start))
                held += start
                if held < size:
                    continue
                yield _as_read(_joined(carry))
                carry, held = [], 0
            for first in range(start, len(rows.lengths), size):
                part = _rows(rows, first, first + size)
                if len(part.lengths) == size:
                    yield _as_read(part)
                else:
                    carry, held = [part], len(part.lengths)
        if held:
            yield _as_read(_joined(carry))


class StreamBatches:
    """``stream.batches(size)``: iterable (and re-iterable) batches of a stream; picklable."""

    def __init__(self, stream: SequenceStream, size: int) -> None:
        self.stream, self.size = stream, size
        _register_with_torch()

    def __len__(self) -> int:
        return -(-len(self.stream) // self.size)

    def __iter__(self) -> Iterator[Batch]:
        return self.stream._batches(self.size)


def _rows(block: Block, start: int, stop: int) -> Block:
    return Block._make(field[start:stop] for field in block)


def _joined(parts: Sequence[Block]) -> Block:
    return Block._make(np.concatenate(fields) for fields in zip(*parts, strict=True))


def _as_read(block: Block) -> Batch:
    """Turn stored-dtype rows into what ``SequenceDataset.batch`` returns."""
    lengths = block.lengths.astype(np.int64)
    images = _AS_READ.values(block.images, out=empty_images(block.images.shape))
    return images, _AS_READ.padded_labels(block.labels, lengths), lengths


def _check_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise InvalidValueError(
            f"rank={rank!r} and world_size={world_size!r}: give both (torch.distributed) or neither"
        )
    if rank is None or world_size is None:
        return 0, 1
    world = check_int("world_size", world_size, 1)
    checked = check_int("rank", rank, 0)
    if checked >= world:
        raise InvalidValueError(f"rank={rank!r}, expected 0..{world - 1} for world_size={world}")
    return checked, world


def _worker_share() -> tuple[int, int]:
    """``(id, num_workers)`` of this PyTorch DataLoader worker; ``(0, 1)`` outside one.

    torch is looked up, never imported: a process that has not imported it runs no DataLoader.
    """
    data: Any = sys.modules.get("torch.utils.data")
    info = None if data is None else data.get_worker_info()
    return (0, 1) if info is None else (int(info.id), int(info.num_workers))


def _register_with_torch() -> None:
    """Make ``DataLoader`` see streams as iterable-style datasets, if torch is imported.

    ``torch.utils.data.IterableDataset`` is an abstract base class, so registering a virtual
    subclass needs no import of torch here and no base class from it.
    """
    data: Any = sys.modules.get("torch.utils.data")
    if data is not None:
        data.IterableDataset.register(SequenceStream)
        data.IterableDataset.register(StreamBatches)
