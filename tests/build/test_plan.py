"""The build plan: each block a pure function of the recipe, the split and the block's number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqbuilder.build.plan import Block, SplitPlan, make_block, make_recipe
from seqbuilder.build.preflight import compose_config


@pytest.fixture
def mnist_env(real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))


def same(first: Block, second: Block) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.usefixtures("mnist_env")
def test_an_augmented_block_does_not_depend_on_the_blocks_made_before_it() -> None:
    # What resume, shards and workers rely on: block 2 alone equals block 2 made after 0 and 1.
    config, _ = compose_config(["augment=heavy", "augment.noise=0.05", "width=140",
                                "sequences.max_length=4"])  # fmt: skip
    recipe = make_recipe(config)
    plan = SplitPlan("train", 3 * 4096, "train")

    alone = make_block(recipe, plan, 2)
    in_order = [make_block(recipe, plan, block) for block in range(3)]

    assert same(alone, in_order[2])
    assert not np.array_equal(in_order[1].images, in_order[2].images)


@pytest.mark.usefixtures("mnist_env")
def test_the_recipe_carries_the_augment_keys_to_the_workers() -> None:
    plain = make_recipe(compose_config(["width=140", "sequences.max_length=4"])[0])
    heavy = make_recipe(compose_config(["width=140", "sequences.max_length=4", "augment=heavy"])[0])
    plan = SplitPlan("val", 300, "train")

    first, second = make_block(plain, plan, 0), make_block(heavy, plan, 0)

    assert plain.augment.is_identity and not heavy.augment.is_identity
    assert np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.source_index, second.source_index)
    assert not np.array_equal(first.images, second.images)
