"""Compare the build configurations stored in split files, key by key.

Only the keys that change the samples count: ``resume``, ``workers``, ``gallery.*`` and
``data.*`` (the MNIST digests are compared instead) may differ between two builds of the same
data. ``resume`` uses this to refuse continuing another build, ``merge`` to refuse joining
shards of different builds, and the dataset card to fingerprint the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# Keys whose value never changes the samples written.
NON_DATA_KEYS = ("resume", "workers", "gallery", "data")


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
    return {key: value for key, value in flat if key.split(".")[0] not in NON_DATA_KEYS}


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, DictConfig):
        for key in node:
            yield from _flatten(node[key], f"{prefix}{key!s}.")
    elif isinstance(node, ListConfig):
        yield prefix.rstrip("."), OmegaConf.to_container(node)
    else:
        yield prefix.rstrip("."), node
