"""The ``seqbuilder build`` Hydra task: config in, HDF5 splits, galleries and a card out.

Workers compute blocks (see :mod:`seqbuilder.plan`); the parent alone writes, in block order,
keeping at most a few blocks in flight, so memory stays bounded whatever the split size.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import hydra
import numpy as np
import numpy.typing as npt
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from .card import write_card, write_dataset_info
from .chunks import encode_chunks
from .config import BuildConfig, register_configs
from .gallery import render_gallery_file
from .mnist import load_mnist
from .plan import BLOCK_SAMPLES, Block, Recipe, SplitPlan, make_block, make_recipe, split_plans
from .store import SplitWriter

log = logging.getLogger(__name__)

register_configs()

_IN_FLIGHT_PER_WORKER = 2  # blocks queued per worker: enough to keep it busy, no more


def to_build_config(cfg: DictConfig) -> BuildConfig:
    """Turn the composed Hydra config into a validated :class:`BuildConfig`."""
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, BuildConfig)
    return config


@hydra.main(version_base="1.3", config_path="pkg://seqbuilder.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra's entry: validate, then build into this run's output directory."""
    config = to_build_config(cfg)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    command = " ".join(["seqbuilder build", *hydra_config.overrides.task])
    build(config, OmegaConf.to_yaml(cfg, resolve=True), run_dir, command=command)


def preflight(argv: list[str]) -> None:
    """Check every job of ``seqbuilder build ARGV`` before Hydra creates any directory.

    Composes each job's configuration (every combination of a ``-m`` sweep) the way Hydra
    will, validates it, resolves its sequences and loads the MNIST splits it needs (loading
    is cached, so the build itself reuses them). Flags that only print (``--help``,
    ``--cfg``, ``--info``, ...) and a custom ``--config-dir``/``--config-name`` are left to
    Hydra.

    Raises:
        ConfigError, HydraException, OmegaConfBaseException, MnistNotFoundError: a bad job.
    """
    from hydra import compose, initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = get_args_parser()
    parser.error = _raise_usage_error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if (
        args.help
        or args.hydra_help
        or args.cfg
        or args.info
        or args.shell_completion
        or args.config_dir
        or args.config_name
        or args.config_path
        or args.experimental_rerun
    ):
        return
    overrides = [item for item in args.overrides if not item.lstrip("+~").startswith("hydra")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    with initialize_config_module(config_module="seqbuilder.conf", version_base="1.3"):
        for job in jobs or [[]]:
            config = to_build_config(compose("config", overrides=job))
            recipe = make_recipe(config)
            for plan in split_plans(config):
                load_mnist(plan.source, recipe.data_dir)


def _raise_usage_error(message: str) -> NoReturn:
    """Report a bad ``seqbuilder build`` flag as one error line, not Hydra's usage text."""
    raise ValueError(f"build: {message} (see seqbuilder build --help)")


def build(config: BuildConfig, config_yaml: str, run_dir: Path, *, command: str) -> list[Path]:
    """Build every split of ``config`` into ``run_dir``.

    Args:
        config: the validated configuration.
        config_yaml: its resolved YAML, stored in each file for provenance.
        run_dir: the output directory (Hydra's run directory).
        command: the command line that asked for the build, for the dataset card.

    Returns:
        The paths of the written ``<split>.h5`` files.

    Raises:
        ConfigError: a problem with the config found while planning (before any file).
        MnistNotFoundError: MNIST is not available.
    """
    recipe = make_recipe(config)
    plans = split_plans(config)
    sources = {plan.source: load_mnist(plan.source, recipe.data_dir) for plan in plans}
    workers = config.workers or os.cpu_count() or 1
    run_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for plan in plans:
        path = run_dir / f"{plan.name}.h5"
        attrs = {
            "config": config_yaml,
            "seed": config.seed,
            "split": plan.name,
            "source": plan.source,
            "source_sha256": sources[plan.source].sha256,
            "background": config.background.value,
            "height": 28,
            "width": config.width,
            "shard_index": plan.shard_index,
            "shard_count": plan.shard_count,
            "sample_start": plan.sample_start,
            "split_count": plan.count,
        }
        _write_split(recipe, plan, path, config, attrs, workers)
        written.append(path)
        if config.gallery.count and plan.stored_count:
            render_gallery_file(path, config.gallery.count, run_dir / f"gallery_{plan.name}.png")
    write_dataset_info(run_dir, config_yaml, written, {s: m.sha256 for s, m in sources.items()})
    write_card(run_dir, command, config, written)
    return written


def _write_split(
    recipe: Recipe,
    plan: SplitPlan,
    path: Path,
    config: BuildConfig,
    attrs: dict[str, Any],
    workers: int,
) -> None:
    """Stream every block of ``plan`` into ``path``, atomically, behind a progress bar."""
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
        ) as writer,
        tqdm(total=plan.stored_count, desc=f"{plan.name}.h5", unit="img", unit_scale=True) as bar,
    ):
        # Workers compress the chunks (the costly part) on every core; the writer only stores
        # bytes. That needs blocks made of whole chunks, and a filter we can run outside HDF5.
        encoding = None
        if writer.accepts_encoded and BLOCK_SAMPLES % writer.chunk_samples == 0:
            encoding = Encoding(writer.chunk_samples, writer.compression, storage.compression_level)
        for block in _blocks(recipe, plan, workers, encoding):
            if isinstance(block, EncodedBlock):
                writer.write_encoded(*block)
            else:
                writer.write(*block)
            bar.update(len(block.lengths))


class Encoding(NamedTuple):
    """How workers turn a block's images into stored chunks."""

    chunk_samples: int
    compression: str
    level: int


class EncodedBlock(NamedTuple):
    """A block whose images are already finished HDF5 chunks: ``(data, filter_mask)``."""

    chunks: list[tuple[bytes, int]]
    labels: npt.NDArray[np.int8]
    lengths: npt.NDArray[np.int16]
    boxes: npt.NDArray[np.int16]
    source_index: npt.NDArray[np.int32]


def make_stored_block(
    recipe: Recipe, plan: SplitPlan, block_id: int, encoding: Encoding | None
) -> Block | EncodedBlock:
    """Make block ``block_id``; with an ``encoding``, turn its images into stored chunks."""
    block = make_block(recipe, plan, block_id)
    if encoding is None:
        return block
    chunks = encode_chunks(block.images, *encoding)
    return EncodedBlock(chunks, block.labels, block.lengths, block.boxes, block.source_index)


def _blocks(
    recipe: Recipe, plan: SplitPlan, workers: int, encoding: Encoding | None
) -> Iterator[Block | EncodedBlock]:
    """Yield the blocks of ``plan`` in order, computed by ``workers`` processes.

    At most ``_IN_FLIGHT_PER_WORKER * workers`` blocks are queued or waiting to be written,
    so memory stays bounded however fast the workers are.
    """
    block_ids = plan.block_ids
    if workers <= 1 or len(block_ids) <= 1:
        for block_id in block_ids:
            yield make_stored_block(recipe, plan, block_id, encoding)
        return
    # fork shares the parent's loaded MNIST with the workers for free; spawn reloads it.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(min(workers, len(block_ids))) as pool:
        pending: deque[Any] = deque()
        for block_id in block_ids:
            task = (recipe, plan, block_id, encoding)
            pending.append(pool.apply_async(make_stored_block, task))
            if len(pending) >= _IN_FLIGHT_PER_WORKER * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
