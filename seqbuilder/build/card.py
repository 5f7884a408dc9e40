"""Describe a finished build: ``dataset_info.json`` for machines, ``README.md`` for people."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import hydra
import numpy as np

from .._atomic import write_text
from .._version import __version__
from ..store.provenance import data_keys
from ..store.schema import FORMAT_VERSION, SCHEMA
from .config import AugmentConfig, BuildConfig

MNIST_LICENSE = "CC BY-SA 3.0 (the MNIST database, LeCun, Cortes and Burges)"


def fingerprint(config_yaml: str, source_sha256: Mapping[str, str]) -> str:
    """Return the sha256 naming this dataset: config, MNIST digests and package version.

    Only the keys that change the data count (the ones ``resume`` compares), so the same
    dataset built with other ``workers`` or ``gallery`` settings keeps its fingerprint.
    """
    config = json.dumps(data_keys(config_yaml), sort_keys=True, default=str)
    digest = hashlib.sha256()
    for part in (config, json.dumps(dict(sorted(source_sha256.items()))), __version__):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def write_dataset_info(
    run_dir: Path, config_yaml: str, split_files: Sequence[Path], source_sha256: Mapping[str, str]
) -> Path:
    """Write ``dataset_info.json``: schema, splits, checksums, versions and fingerprint."""
    splits: dict[str, Any] = {}
    for path in split_files:
        with h5py.File(path, "r") as file:
            splits[path.stem] = {
                "file": path.name,
                "count": int(file["lengths"].shape[0]),
                "bytes": path.stat().st_size,
                "source": str(file.attrs["source"]),
            }
    info = {
        "format_version": FORMAT_VERSION,
        "schema": SCHEMA,
        "splits": splits,
        "source_sha256": dict(source_sha256),
        "versions": {
            "seqbuilder": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version,
            "hydra": hydra.__version__,
        },
        "fingerprint": fingerprint(config_yaml, source_sha256),
    }
    return write_text(run_dir / "dataset_info.json", json.dumps(info, indent=2) + "\n")


def write_card(
    run_dir: Path, command: str, config: BuildConfig, split_files: Sequence[Path]
) -> Path:
    """Write the dataset card ``README.md``: what was built, how, and its licence."""
    rows = "\n".join(
        f"| `{path.name}` | {_count(path)} | MNIST {config.splits[path.stem].source.value} |"
        for path in split_files
    )
    shard = config.shard
    if shard.count > 1:
        rows += f"\n\nThis is shard {shard.index} of {shard.count}: join the shards with "
        rows += "`seqbuilder merge RUN_DIR... --output DIR`."
    sequences = config.sequences
    if sequences.kind.value == "random":
        what = f"random digit strings of {sequences.min_length} to {sequences.max_length} digits"
    elif sequences.kind.value == "list":
        what = f"digit strings drawn from a list of {len(sequences.values)}"
    else:
        what = f"digit strings drawn from `{sequences.path}`"
    text = f"""# Digit-sequence dataset

Built by seqbuilder {__version__} with:

    {command}

Images of {what}, made of handwritten MNIST digits, {config.width} x 28 pixels,
gaps of {config.spacing.min} to {config.spacing.max} pixels, `fit={config.fit.value}`,
`digit_crop={config.digit_crop.value}`, `background={config.background.value}`, seed {config.seed}.
{_augmentation(config)}

| file | samples | digit images from |
|---|---|---|
{rows}

Each file holds `images`, `labels`, `lengths`, `boxes` and `source_index` (see
`dataset_info.json` for the schema and checksums; `seqbuilder info FILE.h5` for a summary).
Read it with `seqbuilder.SequenceDataset("train.h5")`.

## Licence

The digit images come from the MNIST database, so this dataset inherits its licence:
{MNIST_LICENSE}.
"""
    return write_text(run_dir / "README.md", text)


def _augmentation(config: BuildConfig) -> str:
    """One sentence naming the augmentation keys that are on, or saying there is none."""
    default = _flat(dataclasses.asdict(AugmentConfig()))
    on = {key: value for key, value in _flat(dataclasses.asdict(config.augment)).items()
          if value != default[key]}  # fmt: skip
    if not on:
        return "No augmentation: every digit is an MNIST image as it is."
    keys = ", ".join(f"`augment.{key}={value}`" for key, value in on.items())
    return f"Augmented (the digits are transformed, their boxes follow their ink): {keys}."


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_resolved_config(run_dir: Path, config_yaml: str) -> Path:
    """Write ``.hydra/resolved.yaml``: Hydra's ``config.yaml`` with interpolations resolved."""
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / "resolved.yaml", config_yaml)


def _count(path: Path) -> int:
    """Samples stored in a split file."""
    with h5py.File(path, "r") as file:
        return int(file["lengths"].shape[0])
