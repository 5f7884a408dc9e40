"""The build plan: what every block of every split holds, as a pure function of the config.

A split of N samples is cut into blocks of :data:`BLOCK_SAMPLES`. Block ``b`` of split ``s`` draws
everything (sequences, MNIST samples, gaps, augmentation, offsets) from
``SeedSequence([seed, crc32(s), b])``, so a block's content never depends on which process
made it, how many workers there are, or which other splits the config holds. A streamed epoch
``e >= 1`` (:class:`~seqbuilder.build.stream.SequenceStream`) draws the same block from
``SeedSequence([seed, crc32(s), b, e])``: fresh samples, drawn the same way; epoch 0 is the build.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ..image.compose import ImageArray
from ..image.engine import generate_batch
from ..image.options import Augment, ComposeOptions
from ..mnist.load import load_mnist
from .config import BuildConfig, SequenceKind, read_sequence_file

BLOCK_SAMPLES = 4096  # samples drawn from one seed; fixed so content never depends on storage


class Block(NamedTuple):
    """One block of finished samples, ready to store."""

    images: ImageArray  # (B, 28, W) uint8 or float32
    labels: npt.NDArray[np.int8]  # (B, L) digits, -1 padded
    lengths: npt.NDArray[np.int16]  # (B,)
    boxes: npt.NDArray[np.int16]  # (B, L, 4) x0, y0, x1, y1; -1 padded
    source_index: npt.NDArray[np.int32]  # (B, L); -1 padded


@dataclass(frozen=True)
class Recipe:
    """Everything a worker process needs to make any block: small and picklable."""

    seed: int
    kind: SequenceKind
    min_length: int
    max_length: int
    table: npt.NDArray[np.int8]  # (V, L) digits of the list/file strings, -1 padded
    table_lengths: npt.NDArray[np.int16]  # (V,)
    spacing: tuple[int, int]
    width: int
    options: ComposeOptions
    dtype: str
    data_dir: str | None
    augment: Augment  # all keys off (augment=none): nothing drawn, nothing changed


@dataclass(frozen=True)
class SplitPlan:
    """One split: its name, sample count and MNIST source, and this shard's share of it.

    A split's blocks are dealt to ``shard_count`` shards as contiguous ranges, so shard files
    join end to end and every shard is independent of the others.
    """

    name: str
    count: int
    source: str
    shard_index: int = 0
    shard_count: int = 1

    @property
    def split_id(self) -> int:
        """A stable number for the name, so adding a split never changes another's content."""
        return zlib.crc32(self.name.encode("utf-8"))

    @property
    def n_blocks(self) -> int:
        """Number of blocks of the whole split, the last one possibly short."""
        return -(-self.count // BLOCK_SAMPLES)

    @property
    def block_ids(self) -> range:
        """The blocks this shard builds."""
        total = self.n_blocks
        first = total * self.shard_index // self.shard_count
        return range(first, total * (self.shard_index + 1) // self.shard_count)

    @property
    def sample_start(self) -> int:
        """Index, in the whole split, of this shard's first sample."""
        return min(self.block_ids.start * BLOCK_SAMPLES, self.count)

    @property
    def stored_count(self) -> int:
        """Samples this shard writes (all of them when unsharded)."""
        return min(self.block_ids.stop * BLOCK_SAMPLES, self.count) - self.sample_start

    def block_size(self, block_id: int) -> int:
        """Number of samples in block ``block_id``."""
        return min(BLOCK_SAMPLES, self.count - block_id * BLOCK_SAMPLES)


def make_recipe(config: BuildConfig) -> Recipe:
    """Resolve the config's sequence source and check it fits, before any work.

    Raises:
        ConfigError: an unreadable or malformed sequences file, or a width too small.
    """
    sequences = config.sequences
    values: list[str] = []
    if sequences.kind is SequenceKind.list:
        values = list(sequences.values)
    elif sequences.kind is SequenceKind.file:
        assert sequences.path is not None  # checked by SequencesConfig
        values = read_sequence_file(sequences.path)
    max_length = max(map(len, values)) if values else sequences.max_length
    config.check_fits(max_length)
    table = np.full((len(values), max_length), -1, np.int8)
    for row, value in enumerate(values):
        table[row, : len(value)] = np.frombuffer(value.encode("ascii"), np.uint8) - 48
    return Recipe(
        seed=config.seed,
        kind=sequences.kind,
        min_length=sequences.min_length,
        max_length=max_length,
        table=table,
        table_lengths=np.array([len(v) for v in values], np.int16),
        spacing=(config.spacing.min, config.spacing.max),
        width=config.width,
        options=ComposeOptions.of(
            config.fit.value, config.align.value, config.digit_crop.value, config.background.value
        ),
        dtype=config.storage.dtype.value,
        data_dir=config.data.dir,
        augment=config.augment.to_augment(),
    )


def split_plans(config: BuildConfig) -> list[SplitPlan]:
    """Return the splits to build, in the config's order."""
    shard = config.shard
    return [
        SplitPlan(name, split.count, split.source.value, shard.index, shard.count)
        for name, split in config.splits.items()
    ]


def make_block(recipe: Recipe, plan: SplitPlan, block_id: int, *, epoch: int = 0) -> Block:
    """Draw and compose block ``block_id`` of ``plan``: a pure function of its arguments.

    ``epoch=0`` is the block a build writes; another epoch draws a fresh block the same way.
    """
    size = plan.block_size(block_id)
    entropy = [recipe.seed, plan.split_id, block_id, *([epoch] if epoch else [])]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
    if recipe.kind is SequenceKind.random:
        lengths = rng.integers(recipe.min_length, recipe.max_length, size=size, endpoint=True)
        digits = rng.integers(0, 10, size=(size, recipe.max_length))
    else:
        chosen = rng.integers(0, len(recipe.table), size=size)
        digits = recipe.table[chosen].astype(np.int64)
        lengths = recipe.table_lengths[chosen].astype(np.int64)
    dtype = np.uint8 if recipe.dtype == "uint8" else np.float32
    split = load_mnist(plan.source, recipe.data_dir)
    batch = generate_batch(
        split,
        digits,
        lengths,
        recipe.spacing,
        recipe.width,
        recipe.options,
        rng,
        dtype,
        augment=recipe.augment,
    )
    valid = np.arange(recipe.max_length) < lengths[:, None]
    return Block(
        images=batch.images,
        labels=np.where(valid, digits, -1).astype(np.int8),
        lengths=lengths.astype(np.int16),
        boxes=batch.boxes,
        source_index=batch.source_index,
    )
