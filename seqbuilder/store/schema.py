"""The HDF5 format of a split file: dataset names, types, filters and attributes.

A ``<split>.h5`` file (format version 1) holds N samples of width W with at most L digits::

    images        (N, 28, W)  uint8 (round(value * 255)) or float32 in [0, 1]
    labels        (N, L)      int8   digits, left-aligned, padded with -1
    lengths       (N,)        int16  number of digits of each sample
    boxes         (N, L, 4)   int16  x0, y0, x1, y1 (end exclusive) of each digit's ink; -1 padded
    source_index  (N, L)      int32  index of each digit's image in its MNIST split; -1 padded

Every dataset is chunked along N (``images`` in chunks of ``chunk_samples`` whole samples, so a
shuffled read decompresses one small chunk), compressed as configured, with a fletcher32
checksum so a corrupt chunk is an error, never silently wrong pixels. Everything else is a file
attribute: ``format_version``, ``seqbuilder_version``, ``config`` (the resolved YAML),
``seed``, ``split``, ``source``, ``source_sha256``, ``background``, ``height`` and ``width``,
plus the shard's place (``shard_index``, ``shard_count``, ``sample_start``, ``split_count``).
The file keeps the oldest HDF5 object formats that can hold it, so HDF5 1.10 tools
(``h5ls``, ``h5dump``) and any h5py open it.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from ..errors import InvalidValueError

FORMAT_VERSION = 1
HEIGHT = 28
PAD = -1

IMAGES = "images"
LABELS = "labels"
LENGTHS = "lengths"
BOXES = "boxes"
SOURCE_INDEX = "source_index"
DATASETS = (IMAGES, LABELS, LENGTHS, BOXES, SOURCE_INDEX)


class StorageDtype(Enum):
    """How images are stored: ``uint8`` is ``round(value * 255)``."""

    uint8 = "uint8"
    float32 = "float32"


class Compression(Enum):
    """The HDF5 filter applied to ``images`` (``zstd`` and ``blosc`` need hdf5plugin)."""

    gzip = "gzip"
    lzf = "lzf"
    none = "none"
    zstd = "zstd"
    blosc = "blosc"


class DeflateEngine(Enum):
    """Which deflate encoder makes gzip chunks; all write zlib streams any reader decodes.

    ``auto`` is :func:`seqbuilder.store.chunks.resolve_deflate`'s choice for the level.
    """

    auto = "auto"
    zlib = "zlib"
    rle = "rle"
    isal = "isal"


#: Storage choices as plain strings, for the writer's checks and the reader.
STORAGE_DTYPES = tuple(member.value for member in StorageDtype)
COMPRESSIONS = tuple(member.value for member in Compression)
# Level 1: gzip's fast end. On these images levels 4..9 cost zlib 1.5x to 4x the time for 3 to
# 9% smaller chunks, and with deflate=auto level 1 means isal or zlib's run-length strategy,
# which beat zlib level 4 on both speed and size (docs/performance.md has the figures).
DEFAULT_COMPRESSION_LEVEL = 1
# 8 samples of width 200 are a 44 KiB chunk: a shuffled read decompresses it in ~0.15 ms while
# the file stays within 3% of the best gzip ratio (benchmarks/bench_read.py has the table).
DEFAULT_CHUNK_SAMPLES = 8

#: Attributes the caller must supply; the writer adds format_version, seqbuilder_version,
#: height and width itself.
REQUIRED_ATTRS = ("config", "seed", "split", "source", "source_sha256", "background")

#: The schema in a JSON-friendly form, for dataset_info.json and documentation.
SCHEMA: dict[str, dict[str, str]] = {
    "datasets": {
        IMAGES: "(N, 28, width) uint8 (round(value * 255)) or float32 in [0, 1]",
        LABELS: "(N, max_length) int8 digits, left-aligned, padded with -1",
        LENGTHS: "(N,) int16 number of digits in each sample",
        BOXES: "(N, max_length, 4) int16 x0, y0, x1, y1 (end exclusive) of digit ink, -1 padded",
        SOURCE_INDEX: "(N, max_length) int32 index of each digit's MNIST image, -1 padded",
    },
    "attributes": {
        "format_version": "int, this schema's version",
        "seqbuilder_version": "str, the version that wrote the file",
        "config": "str, the resolved build configuration as YAML",
        "seed": "int, the build seed",
        "split": "str, the split name",
        "source": "str, the MNIST split the digits come from (train or test)",
        "source_sha256": "str, sha256 of the decompressed MNIST images payload",
        "background": "str, black (white ink) or white (dark ink)",
        "height": "int, 28",
        "width": "int, image width in pixels",
    },
}

# Metadata dtypes; images take the configured storage dtype.
FIELD_DTYPES: dict[str, type[np.integer[Any]]] = {
    LABELS: np.int8,
    LENGTHS: np.int16,
    BOXES: np.int16,
    SOURCE_INDEX: np.int32,
}
# Oldest to newest object formats the writer may use: never demand more than HDF5 1.10 reads.
LIBVER = ("earliest", "v110")
MIN_CACHE_BYTES = 1 << 20  # HDF5's default chunk cache; readers and writers never use less
METADATA_CHUNK_ROWS = 4096  # metadata is tiny per sample; big chunks compress it well
CHECKPOINT_ATTR = "checkpoint_samples"  # on an unfinished file: samples safely on disk


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, object], int] | None:
    """Return the attributes and checkpointed sample count of an unfinished ``<path>.tmp``.

    Returns None when there is no such file, it cannot be opened, or it never reached a
    checkpoint.
    """
    temporary = Path(path).with_name(Path(path).name + ".tmp")
    if not temporary.exists():
        return None
    try:
        with h5py.File(temporary, "r") as file:
            if CHECKPOINT_ATTR not in file.attrs:
                return None
            attrs = {key: plain_attr(value) for key, value in file.attrs.items()}
    except OSError:
        return None
    samples = int(attrs.pop(CHECKPOINT_ATTR))  # type: ignore[call-overload]
    return attrs, samples


def plain_attr(value: object) -> object:
    """An HDF5 attribute as the plain Python value: numpy scalars unwrapped, bytes decoded."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if isinstance(value, np.generic) else value


def dataset_filters(method: str, level: int, itemsize: int) -> dict[str, Any]:
    """Return h5py's ``create_dataset`` keywords for one compression method.

    The pipeline is shuffle (multi-byte dtypes), compression, fletcher32: the order h5py uses
    and :func:`seqbuilder.store.chunks.encode_chunks` reproduces.
    """
    if method == "none":
        return {"fletcher32": True}
    if method in ("gzip", "lzf"):
        options = level if method == "gzip" else None
        return {
            "compression": method,
            "compression_opts": options,
            "shuffle": itemsize > 1,
            "fletcher32": True,
        }
    try:
        import hdf5plugin
    except ImportError:
        raise InvalidValueError(
            f"compression={method!r} needs the hdf5plugin package: pip install 'seqbuilder[fast]'"
        ) from None
    if method == "zstd":
        return dict(hdf5plugin.Zstd(clevel=max(level, 1)), fletcher32=True)
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=level, shuffle=1), fletcher32=True)


def check_block(
    images: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    lengths: npt.NDArray[Any],
    boxes: npt.NDArray[Any],
    source_index: npt.NDArray[Any],
    *,
    width: int,
    max_length: int,
    dtype: np.dtype[Any],
) -> dict[str, npt.NDArray[Any]]:
    """Check a block of B samples against the schema; return each dataset's array to store.

    Raises:
        ValueError: A shape or value is wrong.
        TypeError: ``images`` is not in the storage ``dtype``, or metadata is not integer.
    """
    images = np.asarray(images)
    rows = len(images)
    if images.shape[1:] != (HEIGHT, width) or images.ndim != 3:
        raise ValueError(f"images has shape {images.shape}, expected (B, 28, {width})")
    if images.dtype != dtype:
        raise TypeError(f"images has dtype {images.dtype}, expected {dtype} (storage)")
    if dtype.kind == "f" and rows and not (images.min() >= 0 and images.max() <= 1):
        raise ValueError("float32 images must hold values in [0, 1]")
    return {IMAGES: images} | check_fields(rows, max_length, labels, lengths, boxes, source_index)


def check_fields(
    rows: int,
    max_length: int,
    labels: npt.NDArray[Any],
    lengths: npt.NDArray[Any],
    boxes: npt.NDArray[Any],
    source_index: npt.NDArray[Any],
) -> dict[str, npt.NDArray[Any]]:
    """Check the metadata of ``rows`` samples; return it in the stored dtypes.

    Raises:
        ValueError: A shape is not ``rows`` samples of ``max_length`` digits, or a value is
            out of its range.
        TypeError: An array is not integer.
    """
    length = max_length
    return {
        LABELS: _as_field(LABELS, labels, (rows, length), -1, 9),
        LENGTHS: _as_field(LENGTHS, lengths, (rows,), 1, length),
        BOXES: _as_field(BOXES, boxes, (rows, length, 4), -1, np.iinfo(np.int16).max),
        SOURCE_INDEX: _as_field(
            SOURCE_INDEX, source_index, (rows, length), -1, np.iinfo(np.int32).max
        ),
    }


def _as_field(
    name: str, values: npt.NDArray[Any], shape: tuple[int, ...], low: int, high: int
) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} has dtype {array.dtype}, expected integers")
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(f"{name} holds values outside {low}..{high}")
    return array.astype(FIELD_DTYPES[name], copy=False)
