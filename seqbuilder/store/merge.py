"""Join the shard files of a sharded build into one file per split, without copying.

A run with ``shard.index=i shard.count=n`` writes ``<split>.h5`` holding its contiguous share
of every split. :func:`merge_runs` checks that the given run directories are the ``n`` shards
of one build (same configuration but for ``shard.index``, each index once), then writes
``<output>/<split>.h5`` whose datasets are HDF5 *virtual* datasets mapping the shards end to
end. Nothing is copied: the merged file is a few kilobytes and reads the shard files in place
(found relative to the merged file, so move the tree together). It reads like any other built
file, and equals an unsharded build of the same configuration and seed, array for array.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py

from .._atomic import atomic_path
from ..errors import DatasetFormatError
from .layout import open_split
from .provenance import first_difference
from .schema import DATASETS, LIBVER

logger = logging.getLogger(__name__)

_SHARD_ATTRS = ("shard_index", "shard_count", "sample_start")


def merge_runs(
    run_dirs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> list[Path]:
    """Merge the shard runs ``run_dirs`` into ``output``, one virtual file per split.

    Returns:
        The merged files, one per split.

    Raises:
        DatasetFormatError: a run directory holds no split files, a file is not a shard of the
            same build, or shards are missing or repeated.
    """
    runs = [Path(run) for run in run_dirs]
    names = _split_names(runs)
    destination = Path(output)
    if any(destination.resolve() == run.resolve() for run in runs):
        raise DatasetFormatError(
            f"--output {destination} is one of the shard runs; merging there would overwrite "
            "a shard with a file that points at itself: choose another directory"
        )
    plans = {name: _ordered_shards([run / f"{name}.h5" for run in runs]) for name in names}
    destination.mkdir(parents=True, exist_ok=True)
    return [_write_virtual(shards, destination / f"{name}.h5") for name, shards in plans.items()]


def _split_names(runs: Sequence[Path]) -> list[str]:
    """The split names every run holds; they must agree."""
    if not runs:
        raise DatasetFormatError("no run directories given, expected the shards' run directories")
    found = []
    for run in runs:
        if not run.is_dir():
            raise DatasetFormatError(f"{run}: not a directory, expected a build's run directory")
        names = sorted(path.stem for path in run.glob("*.h5"))
        if not names:
            raise DatasetFormatError(f"{run}: holds no <split>.h5 files")
        found.append(names)
    if any(names != found[0] for names in found):
        listing = "; ".join(
            f"{run}: {', '.join(names)}" for run, names in zip(runs, found, strict=True)
        )
        raise DatasetFormatError(f"the runs hold different splits ({listing})")
    return found[0]


def _ordered_shards(paths: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Return the shard files sorted by index, after checking they form one whole build."""
    shards = []
    for path in paths:
        with open_split(path) as file:
            attrs = dict(file.attrs)
            attrs["rows"] = int(file["lengths"].shape[0])
            attrs["dtypes"] = {name: (file[name].dtype, file[name].shape[1:]) for name in DATASETS}
        missing = [key for key in (*_SHARD_ATTRS, "split_count") if key not in attrs]
        if missing:
            raise DatasetFormatError(
                f"{path}: not a shard file (no {', '.join(missing)}); merge the run "
                "directories of a sharded build, not a merged one"
            )
        shards.append((path, attrs))
    shards.sort(key=lambda shard: int(shard[1]["shard_index"]))
    first_path, first = shards[0]
    count = int(first["shard_count"])
    indices = [int(attrs["shard_index"]) for _, attrs in shards]
    if indices != list(range(count)):
        raise DatasetFormatError(
            f"{first_path.name}: shards {indices} given, expected each of 0..{count - 1} once"
        )
    start = 0
    for path, attrs in shards:
        key = _config_difference(first, attrs, path)
        if key is not None:
            raise DatasetFormatError(
                f"{path}: built with another {key} than {first_path}; shards must share "
                "their configuration but for shard.index (and workers, resume, gallery, data)"
            )
        if attrs["source_sha256"] != first["source_sha256"]:
            raise DatasetFormatError(f"{path}: built from other MNIST data than {first_path}")
        if attrs["dtypes"] != first["dtypes"]:
            raise DatasetFormatError(f"{path}: dataset shapes or dtypes differ from {first_path}")
        if int(attrs["sample_start"]) != start:
            raise DatasetFormatError(
                f"{path}: starts at sample {attrs['sample_start']}, expected {start}"
            )
        start += attrs["rows"]
    if start != int(first["split_count"]):
        raise DatasetFormatError(
            f"{first_path.name}: the shards hold {start} samples, "
            f"the split has {first['split_count']}"
        )
    return shards


def _config_difference(first: dict[str, Any], attrs: dict[str, Any], path: Path) -> str | None:
    """The first config key (but shard.index and keys that do not change data) that differs."""
    try:
        return first_difference(
            str(first["config"]), str(attrs["config"]), also_ignore=("shard.index",)
        )
    except Exception as error:  # any YAML or key problem means a foreign file
        raise DatasetFormatError(f"{path}: its config attribute is unreadable ({error})") from None


def _write_virtual(shards: Sequence[tuple[Path, dict[str, Any]]], path: Path) -> Path:
    """Write ``path`` with virtual datasets that map the shards end to end, atomically."""
    first = shards[0][1]
    total = int(first["split_count"])
    with atomic_path(path) as temporary, h5py.File(temporary, "w", libver=LIBVER) as file:
        for name in DATASETS:
            dtype, tail = first["dtypes"][name]
            layout = h5py.VirtualLayout(shape=(total, *tail), dtype=dtype)
            for shard_path, attrs in shards:
                rows, begin = attrs["rows"], int(attrs["sample_start"])
                if rows:
                    relative = os.path.relpath(shard_path, path.parent)
                    source = h5py.VirtualSource(relative, name, shape=(rows, *tail))
                    layout[begin : begin + rows] = source
            file.create_virtual_dataset(name, layout, fillvalue=0 if name == "images" else -1)
        for key, value in first.items():
            if key not in (*_SHARD_ATTRS, "rows", "dtypes"):
                file.attrs[key] = value
        file.attrs["shard_count"] = int(first["shard_count"])
        file.attrs["merged_from"] = "\n".join(
            os.path.relpath(shard_path, path.parent) for shard_path, _ in shards
        )
    logger.info("merged %d shards into %s", len(shards), path)
    return path
