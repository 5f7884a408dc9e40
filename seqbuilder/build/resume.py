"""Decide what an earlier build in the same run directory lets this one keep.

With ``resume=true`` a split whose ``<split>.h5`` is complete is kept, and an unfinished
``<split>.h5.tmp`` is continued from its last checkpoint, but only when both were built from
the same configuration. Keys that do not change the data (``resume``, ``workers``,
``gallery.*``, ``data.dir``: the MNIST digests are compared instead) may differ; any other
difference refuses, naming the first key that differs.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from ..errors import ConfigError
from ..store.provenance import first_difference
from ..store.schema import read_checkpoint
from .plan import BLOCK_SAMPLES


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
