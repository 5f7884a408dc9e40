"""Preview a build configuration: the first samples it would write, as a PNG, in seconds.

``seqbuilder preview augment=heavy augment.slant=30 --count 24`` composes ``conf/`` with the
overrides exactly as ``seqbuilder build`` does, makes the first block of one split in memory
and draws its first samples with their labels. Nothing else is written: no run directory, no
HDF5. The samples are the very ones the build would store first (the same seed, block and
draws), so the preview equals the gallery of that build; tuning ``augment.*`` is a loop of
edit, preview, look.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidValueError
from ..view.gallery import render_gallery, save_image
from .plan import BLOCK_SAMPLES, SplitPlan, make_block, make_recipe, split_plans
from .preflight import compose_config


def render_preview(
    overrides: Sequence[str], count: int, output: Path, split: str | None = None
) -> Path:
    """Write a PNG grid of the first ``count`` samples of a split, built in memory.

    Args:
        overrides: ``seqbuilder build`` override strings (no sweeps, no ``hydra.*``).
        count: samples to show, at least 1 (fewer if the split is smaller).
        output: the PNG path, written atomically.
        split: the split to show; None: the configuration's first.

    Returns:
        ``output``.

    Raises:
        InvalidValueError: ``count`` below 1, an unknown or empty split.
        ConfigError, HydraException, OmegaConfBaseException: a bad configuration.
        MnistNotFoundError: MNIST is not available.
    """
    if count < 1:
        raise InvalidValueError(f"--count {count} is too small, expected at least 1")
    config, _ = compose_config(overrides)
    recipe = make_recipe(config)
    plans = {plan.name: plan for plan in split_plans(config)}
    name = next(iter(plans)) if split is None else split
    if name not in plans:
        raise InvalidValueError(
            f"--split {name!r} is not a split of this configuration, expected one of "
            f"{', '.join(plans)}"
        )
    # The whole split, not this shard's share: the preview shows the build's first samples.
    plan = SplitPlan(name, plans[name].count, plans[name].source)
    if plan.count == 0:
        raise InvalidValueError(f"split {name!r} has 0 samples, so there is nothing to show")
    block = make_block(recipe, plan, 0)
    shown = min(count, plan.count, BLOCK_SAMPLES)
    images = block.images[:shown]
    values = images / np.float32(255) if images.dtype == np.uint8 else images
    labels = [
        "".join(map(str, row[:length]))
        for row, length in zip(block.labels[:shown], block.lengths[:shown], strict=True)
    ]
    return save_image(render_gallery(values, labels), output)
