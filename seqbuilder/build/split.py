"""Write one split: blocks from the worker pool into its file, with progress and checkpoints.

The file is written as ``<split>.h5.tmp`` and checkpointed every :data:`CHECKPOINT_SECONDS`,
so a crash loses at most that much work; finishing it (the last flush and the rename) is never
cut in half by a stop signal (see :mod:`seqbuilder.build.stopping`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..store.chunks import BlockEncoding, EncodedBlock, resolve_deflate
from ..store.schema import Compression
from ..store.writer import SplitWriter
from .config import BuildConfig, StorageConfig
from .phases import reach
from .plan import BLOCK_SAMPLES, Recipe, SplitPlan
from .pool import iterate_blocks, runs_in_process
from .stopping import StopRequested, check

log = logging.getLogger(__name__)

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
        remaining = plan.block_ids[writer.resumed // BLOCK_SAMPLES :]
        encoding = _block_encoding(writer, storage, runs_in_process(workers, len(remaining)))
        last_checkpoint = time.monotonic()
        descriptor = writer.fileno()
        inherited = () if descriptor is None else (descriptor,)
        blocks = iterate_blocks(recipe, plan, remaining, workers, encoding, inherited)
        with contextlib.closing(blocks):  # closing stops and reaps the workers
            try:
                for number, block in enumerate(blocks):
                    if isinstance(block, EncodedBlock):
                        writer.write_block(block)
                        bar.update(block.rows)
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


def _block_encoding(
    writer: SplitWriter, storage: StorageConfig, in_process: bool
) -> BlockEncoding | None:
    """How the workers encode the chunks, or None when HDF5's filters do it here.

    Workers encode every dataset's chunks (compression is the costly part) on every core and
    the writer only stores bytes. That needs blocks made of whole chunks, and filters we can
    run outside HDF5. Without workers, HDF5's own filters (C) do the same work faster where
    they make the same bytes: no compression, or gzip through zlib.
    """
    deflate = resolve_deflate(storage.deflate.value, storage.compression_level)
    encoding = writer.block_encoding(deflate, BLOCK_SAMPLES)
    gzip = storage.compression is Compression.gzip
    if in_process and (storage.compression is Compression.none or (gzip and deflate == "zlib")):
        encoding = None
    if gzip:
        used = deflate if encoding is not None else "zlib"
        log.info("%s: gzip level %d, deflate=%s", writer.path.name, writer.level, used)
    return encoding
