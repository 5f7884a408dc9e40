"""The ``seqbuilder build`` Hydra task: config in, HDF5 splits, galleries and a card out.

Workers compute blocks (see :mod:`seqbuilder.build.plan`); the parent alone writes, in block order,
keeping at most a few blocks in flight, so memory stays bounded whatever the split size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..errors import BuildInterrupted, BuildWriteError, WorkerDiedError
from ..mnist.load import load_mnist
from ..store.schema import read_checkpoint
from ..store.writer import SplitWriter
from ..view.gallery import render_gallery_file
from .card import write_card, write_dataset_info, write_resolved_config
from .config import BuildConfig, register_configs
from .lock import run_lock
from .plan import BLOCK_SAMPLES, Recipe, SplitPlan, make_recipe, split_plans
from .pool import EncodedBlock, Encoding, iterate_blocks
from .preflight import to_build_config
from .resume import resume_point

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0  # most work a crash (kill -9, power cut) can lose

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://seqbuilder.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra's entry: validate, then build into this run's output directory."""
    config = to_build_config(cfg)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    command = " ".join(["seqbuilder build", *hydra_config.overrides.task])
    build(config, OmegaConf.to_yaml(cfg, resolve=True), run_dir, command=command)


def build(config: BuildConfig, config_yaml: str, run_dir: Path, *, command: str) -> list[Path]:
    """Build every split of ``config`` into ``run_dir``.

    Each split is written to ``<split>.h5.tmp``, checkpointed every second (and on Ctrl-C)
    and renamed when complete. With ``config.resume``, complete splits of an earlier build of the
    same configuration are kept and an unfinished one continues from its last checkpoint.

    Args:
        config: the validated configuration.
        config_yaml: its resolved YAML, stored in each file for provenance.
        run_dir: the output directory (Hydra's run directory).
        command: the command line that asked for the build, for the dataset card and for the
            resume hint.

    Returns:
        The paths of the written ``<split>.h5`` files.

    Raises:
        ConfigError: a problem with the config found while planning (before any file), or a
            resume over a build of another configuration.
        MnistNotFoundError: MNIST is not available.
        RunDirectoryBusyError: another build is writing into ``run_dir``.
        BuildInterrupted: Ctrl-C or SIGTERM; the checkpointed work is kept.
        BuildWriteError: the disk refused a write (full, read-only, ...).
    """
    recipe = make_recipe(config)
    plans = split_plans(config)
    sources = {plan.source: load_mnist(plan.source, recipe.data_dir) for plan in plans}
    workers = config.workers or os.cpu_count() or 1
    written = []
    with run_lock(run_dir), _sigterm_as_interrupt():
        write_resolved_config(run_dir, config_yaml)
        for plan in plans:
            path = run_dir / f"{plan.name}.h5"
            sha256 = sources[plan.source].sha256
            start = resume_point(path, config_yaml, sha256) if config.resume else 0
            if start is None:
                log.info("keeping the complete %s", path)
            else:
                attrs = _split_attrs(config, config_yaml, plan, sha256)
                try:
                    _write_split(recipe, plan, path, config, attrs, workers, start)
                except KeyboardInterrupt:
                    raise BuildInterrupted(
                        _resume_hint("interrupted", path, run_dir, command)
                    ) from None
                except OSError as error:
                    # h5py's text is a page of HDF5 internals; the errno says it in a phrase.
                    cause = os.strerror(error.errno) if error.errno else str(error)
                    reason = f"writing {path.name} failed: {cause}"
                    raise BuildWriteError(_resume_hint(reason, path, run_dir, command)) from None
                except WorkerDiedError as error:
                    raise BuildWriteError(
                        _resume_hint(str(error), path, run_dir, command)
                    ) from None
            written.append(path)
            if config.gallery.count and plan.stored_count:
                gallery = run_dir / f"gallery_{plan.name}.png"
                render_gallery_file(path, config.gallery.count, gallery)
        write_dataset_info(run_dir, config_yaml, written, {s: m.sha256 for s, m in sources.items()})
        write_card(run_dir, command, config, written)
    return written


def _resume_hint(what: str, path: Path, run_dir: Path, command: str) -> str:
    kept = read_checkpoint(path)
    saved = f"{kept[1]} samples of {path.name} are kept" if kept else "no complete block was kept"
    words = [word for word in command.split() if not word.startswith("resume=")]
    return f"{what}; {saved}; resume with: {' '.join(words)} hydra.run.dir={run_dir} resume=true"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while building, so both stop cleanly and keep the work."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _split_attrs(
    config: BuildConfig, config_yaml: str, plan: SplitPlan, sha256: str
) -> dict[str, Any]:
    """The provenance attributes of one split file."""
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


def _write_split(
    recipe: Recipe,
    plan: SplitPlan,
    path: Path,
    config: BuildConfig,
    attrs: dict[str, Any],
    workers: int,
    resume_from: int,
) -> None:
    """Stream the blocks of ``plan`` into ``path`` behind a progress bar, checkpointing each."""
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
        for block in iterate_blocks(recipe, plan, remaining, workers, encoding):
            if isinstance(block, EncodedBlock):
                writer.write_encoded(*block)
            else:
                writer.write(*block)
            bar.update(len(block.lengths))
            # A checkpoint flushes HDF5's caches: often enough to lose little, rarely enough
            # to cost nothing measurable.
            if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                writer.checkpoint()
                last_checkpoint = time.monotonic()
