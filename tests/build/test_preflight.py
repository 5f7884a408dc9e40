"""Preflight: Hydra's flags pinned, and -m sweeps expanded as Hydra's basic sweeper does."""

from __future__ import annotations

import pytest

from seqbuilder.build.preflight import HYDRA_FLAGS, expand_sweep
from seqbuilder.errors import UsageError


def test_the_flag_table_matches_the_installed_hydras_own_parser() -> None:
    # Hydra's parser is private: read it here, in a test, so an upgrade that adds a flag fails
    # loudly instead of making preflight reject it.
    from hydra._internal.utils import get_args_parser

    hydra_flags = {
        tuple(action.option_strings)
        for action in get_args_parser()._actions
        if action.option_strings
    }
    assert {names for names, _ in HYDRA_FLAGS} == hydra_flags


def test_a_sweep_expands_to_the_cartesian_product_in_hydras_order() -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = ["width=200,300", "seed=1", "spacing.max=2,4,6", "seed=5,6"]
    hydra_jobs = BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides(overrides), None
    )[0]
    assert expand_sweep(overrides) == hydra_jobs
    assert len(hydra_jobs) == 12


def test_an_interval_sweep_is_a_usage_error_naming_it() -> None:
    with pytest.raises(UsageError, match=r"'seed=interval\(1,3\)' is not a list sweep"):
        expand_sweep(["seed=interval(1,3)"])
