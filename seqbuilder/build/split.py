"""Write one split: blocks from the worker pool into its file, with progress and checkpoints.

The file is written as ``<split>.h5.tmp`` and checkpointed every :data:`CHECKPOINT_SECONDS`,
so a crash loses at most that much work; finishing it (the last flush and the rename) is never
cut in half by a stop signal (see :mod:`seqbuilder.build.stopping`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..store.writer import SplitWriter
from .config import BuildConfig
from .phases import reach
from .plan import BLOCK_SAMPLES, Recipe, SplitPlan
from .pool import EncodedBlock, Encoding, iterate_blocks
from .stopping import StopRequested, check

CHECKPOINT_SECONDS = 1.0  # most work a crash (kill -9, power cut) can lose


def split_attrs(
    config: BuildConfig, config_yaml: str, plan: SplitPlan, sha256: str
) -> dict[str, Any]:
    """Return the provenance attributes of one split file."""
    return {
        "config": config_yaml,
        "seed": config.seed,
        "split": plan.name,
        "source": plan.source,
        "source_sha256": sha256,
        "background": config.background.value,
        "shard_index": plan.shard_index,
        "shard_count": plan.shard_count,
        "sample_start": plan.sample_start,
        "split_count": plan.count,
    }


def write_split(
    recipe: Recipe,
    plan: SplitPlan,
    path: Path,
    config: BuildConfig,
    attrs: dict[str, Any],
    workers: int,
    resume_from: int,
) -> None:
    """Stream the blocks of ``plan`` into ``path`` behind a progress bar, checkpointing.

    Raises:
        StopRequested: a stop signal; ``<split>.h5.tmp`` keeps its last checkpoint.
        WorkerDiedError: a worker process died.
        OSError: the disk refused a write.
    """
    storage = config.storage
    with (
        SplitWriter(
            path,
            count=plan.stored_count,
            width=config.width,
            max_length=recipe.max_length,
            dtype=storage.dtype.value,
            compression=storage.compression.value,
            compression_level=storage.compression_level,
            chunk_samples=storage.chunk_samples,
            attrs=attrs,
            resume_from=resume_from,
        ) as writer,
        tqdm(
            total=plan.stored_count,
            initial=writer.resumed,
            desc=f"{plan.name}.h5",
            unit="img",
            unit_scale=True,
        ) as bar,
    ):
        # Workers compress the chunks (the costly part) on every core; the writer only stores
        # bytes. That needs blocks made of whole chunks, and a filter we can run outside HDF5.
        encoding = None
        if writer.accepts_encoded and BLOCK_SAMPLES % writer.chunk_samples == 0:
            encoding = Encoding(
                writer.chunk_samples,
                writer.compression,
                storage.compression_level,
                storage.deflate.value,
            )
        remaining = plan.block_ids[writer.resumed // BLOCK_SAMPLES :]
        last_checkpoint = time.monotonic()
        blocks = iterate_blocks(recipe, plan, remaining, workers, encoding)
        with contextlib.closing(blocks):  # closing stops and reaps the workers
            try:
                for number, block in enumerate(blocks):
                    if isinstance(block, EncodedBlock):
                        writer.write_encoded(*block)
                    else:
                        writer.write(*block)
                    bar.update(len(block.lengths))
                    # A checkpoint flushes HDF5's caches: often enough to lose little, rarely
                    # enough to cost nothing measurable.
                    if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                        writer.checkpoint()
                        last_checkpoint = time.monotonic()
                        reach(f"checkpoint:{plan.name}")
                    reach(f"block:{plan.name}:{number}")
                    check()
            except StopRequested:
                reach("stopping")
                raise
        reach(f"finish:{plan.name}")
        writer.close()
    check()
