"""Compose and check build configurations before Hydra creates any run directory.

:func:`compose_config` is the one way a configuration is made from ``conf/`` and override
strings outside a Hydra run (``SequenceStream`` uses it too); :func:`preflight` expands a
``seqbuilder build`` command line into its jobs (every combination of a ``-m`` sweep, as Hydra's
basic sweeper does) and composes and checks each one, so a bad job fails before any work or
directory. Only public Hydra APIs are used: the compose API and the override parser.
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..errors import OutputError, UsageError
from ..image.kernels import kernels
from ..mnist.load import load_mnist
from .config import BuildConfig, register_configs
from .phases import reach
from .plan import make_recipe, split_plans
from .stopping import check

CONFIG_MODULE = "seqbuilder.conf"
CONFIG_NAME = "config"

#: Hydra's command-line flags (its get_args_parser), pinned by a test:
#: ``(names, takes_value)``; None: an optional value.
HYDRA_FLAGS: tuple[tuple[tuple[str, ...], bool | None], ...] = (
    (("--help", "-h"), False),
    (("--hydra-help",), False),
    (("--version",), False),
    (("--cfg", "-c"), True),
    (("--resolve",), False),
    (("--package", "-p"), True),
    (("--run", "-r"), False),
    (("--multirun", "-m"), False),
    (("--shell-completion", "-sc"), False),
    (("--config-path", "-cp"), True),
    (("--config-name", "-cn"), True),
    (("--config-dir", "-cd"), True),
    (("--experimental-rerun",), True),
    (("--info", "-i"), None),
)
# Flags after which the build does not run, or runs a config we do not compose: left to Hydra.
_HANDS_OFF = (
    "help",
    "hydra_help",
    "version",
    "cfg",
    "shell_completion",
    "config_path",
    "config_name",
    "config_dir",
    "experimental_rerun",
    "info",
)


def compose_config(overrides: Sequence[str] = ()) -> tuple[BuildConfig, DictConfig]:
    """Compose ``conf/`` with ``overrides`` and validate it, as ``seqbuilder build`` would.

    Args:
        overrides: Hydra override strings, e.g. ``["augment=heavy", "width=256"]``; no sweeps.

    Returns:
        ``(config, cfg)``: the validated schema object and the composed ``DictConfig``.

    Raises:
        ConfigError: a cross-field check failed (the message names the key).
        hydra.errors.HydraException, omegaconf.errors.OmegaConfBaseException: an unknown key,
            group option or a value of the wrong type.
    """
    cfg = _compose(overrides, with_hydra=False)
    return to_build_config(cfg), cfg


def _compose(overrides: Sequence[str], *, with_hydra: bool) -> DictConfig:
    """``conf/`` composed with ``overrides``; ``with_hydra`` keeps the ``hydra`` node."""
    register_configs()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=with_hydra)


def to_build_config(cfg: DictConfig) -> BuildConfig:
    """Turn a composed config into a validated :class:`BuildConfig` (runs every check)."""
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, BuildConfig)
    return config


def preflight(argv: Sequence[str]) -> None:
    """Check every job of ``seqbuilder build ARGV`` before Hydra creates any directory.

    Composes each job's configuration the way Hydra will, validates it, resolves its
    sequences and loads the MNIST splits it needs (loading is cached, so the build reuses
    them) and, when it has per-digit augmentation, the compiled kernels (the same). Flags
    that only print (``--help``, ``--cfg``, ``--info``, ...) and a custom
    ``--config-dir``/``--config-name`` are left to Hydra.

    Raises:
        UsageError: an unknown flag.
        ConfigError, HydraException, OmegaConfBaseException, MnistNotFoundError: a bad job.
        InvalidValueError: a bad ``$SEQBUILDER_KERNELS``.
    """
    args = _parser().parse_args(list(argv))
    if any(getattr(args, name) for name in _HANDS_OFF):
        return
    hydra_overrides = [item for item in args.overrides if _is_hydra(item)]
    overrides = [item for item in args.overrides if not _is_hydra(item)]
    key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
    for job in expand_sweep(overrides) if args.multirun else [overrides]:
        # One composition per job gives both the job's config and its run directory.
        cfg = _compose([*job, *hydra_overrides], with_hydra=True)
        run_dir = Path(str(OmegaConf.select(cfg, key)))
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        config = to_build_config(cfg)
        _check_output_parent(key, run_dir)
        reach("preflight")
        check()
        recipe = make_recipe(config)
        for plan in split_plans(config):
            load_mnist(plan.source, recipe.data_dir)
            check()
        if recipe.augment.per_digit:
            kernels()  # checks $SEQBUILDER_KERNELS; loads the compiled ones before any worker


def _is_hydra(override: str) -> bool:
    return override.lstrip("+~").startswith("hydra")


def _check_output_parent(key: str, run_dir: Path) -> None:
    """Refuse a run directory that cannot be created (below a file, in a read-only place).

    ``key`` names its setting. Hydra creates it before the build starts, so its failure would
    come as Hydra's traceback.
    """
    existing = next(parent for parent in (run_dir, *run_dir.parents) if parent.exists())
    if not existing.is_dir():
        raise OutputError(f"{key}={run_dir} cannot be created: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{key}={run_dir} cannot be created: {existing} is not writable")


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """Return the jobs of a ``-m`` sweep: the cartesian product of every swept key's values.

    Mirrors Hydra's basic sweeper: ``a=1,2 b=x,y`` gives four jobs; a plain override joins
    every job; a later override of the same key replaces an earlier one.

    Raises:
        UsageError: a sweep kind the basic sweeper does not support (``interval``).
    """
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise UsageError(
                f"build: {override.input_line!r} is not a list sweep (a=1,2,3 or range)"
            )
    return [list(job) for job in itertools.product(*choices.values())]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"build: {message} (see seqbuilder build --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="seqbuilder build", add_help=False)
    parser.add_argument("overrides", nargs="*")
    for names, takes_value in HYDRA_FLAGS:
        if takes_value is None:
            parser.add_argument(*names, nargs="?", const="all")
        elif takes_value:
            parser.add_argument(*names)
        else:
            parser.add_argument(*names, action="store_true")
    return parser
