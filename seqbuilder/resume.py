"""Decide what an earlier build in the same run directory lets this one keep.

With ``resume=true`` a split whose ``<split>.h5`` is complete is kept, and an unfinished
``<split>.h5.tmp`` is continued from its last checkpoint, but only when both were built from
the same configuration. Keys that do not change the data (``resume``, ``workers``,
``gallery.*``, ``data.dir``: the MNIST digests are compared instead) may differ; any other
difference refuses, naming the first key that differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
from omegaconf import DictConfig, ListConfig, OmegaConf

from .config import ConfigError
from .plan import BLOCK_SAMPLES
from .store import read_checkpoint

# Keys whose value never changes the samples written.
_IGNORED = ("resume", "workers", "gallery", "data")


def resume_point(path: Path, config_yaml: str, source_sha256: str) -> int | None:
    """Return where to continue ``path``: None if it is complete, else a sample count.

    The count is the last checkpoint rounded down to a whole block (0: start afresh).

    Raises:
        ConfigError: the earlier build used another configuration; names the key.
    """
    if path.exists():
        with h5py.File(path, "r") as file:
            _check_same(path, str(file.attrs["config"]), str(file.attrs["source_sha256"]),
                        config_yaml, source_sha256)  # fmt: skip
        return None
    checkpoint = read_checkpoint(path)
    if checkpoint is None:
        return 0
    attrs, samples = checkpoint
    _check_same(path, str(attrs["config"]), str(attrs["source_sha256"]), config_yaml, source_sha256)
    return samples // BLOCK_SAMPLES * BLOCK_SAMPLES


def _check_same(path: Path, old: str, old_sha: str, new: str, new_sha: str) -> None:
    if old_sha != new_sha:
        raise ConfigError(
            f"cannot resume {path.name}: it was built from other MNIST data "
            f"(sha256 {old_sha[:12]}..., now {new_sha[:12]}...)"
        )
    key = first_difference(old, new)
    if key is not None:
        raise ConfigError(
            f"cannot resume {path.name}: {key} differs from the build that started it "
            "(use the same configuration, or another hydra.run.dir)"
        )


def first_difference(old_yaml: str, new_yaml: str, also_ignore: tuple[str, ...] = ()) -> str | None:
    """Return the first dotted key whose value differs between two configs; None if they agree.

    Keys that do not change the data (``resume``, ``workers``, ``gallery.*``, ``data.*``) and
    the dotted keys of ``also_ignore`` are not compared.
    """
    old, new = data_keys(old_yaml), data_keys(new_yaml)
    for key in sorted(old.keys() | new.keys()):
        if key not in also_ignore and old.get(key) != new.get(key):
            return key
    return None


def data_keys(config_yaml: str) -> dict[str, object]:
    """The config as dotted keys, without the keys that do not change the data."""
    flat = _flatten(OmegaConf.create(config_yaml))
    return {key: value for key, value in flat if key.split(".")[0] not in _IGNORED}


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, DictConfig):
        for key in node:
            yield from _flatten(node[key], f"{prefix}{key!s}.")
    elif isinstance(node, ListConfig):
        yield prefix.rstrip("."), OmegaConf.to_container(node)
    else:
        yield prefix.rstrip("."), node
