"""Open a built split file and learn its layout, refusing anything that is not one.

Every reader opens a file with :func:`open_h5`, which turns each way of failing (missing,
empty, not HDF5, truncated) into a one-line :class:`~seqbuilder.errors.DatasetFormatError`, and
checks it with :func:`validate_split` against the format of :mod:`seqbuilder.store.schema`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DatasetFormatError
from .schema import (
    BOXES,
    DATASETS,
    DEFAULT_CHUNK_SAMPLES,
    FORMAT_VERSION,
    HEIGHT,
    IMAGES,
    LABELS,
    LENGTHS,
    SOURCE_INDEX,
    STORAGE_DTYPES,
    plain_attr,
)


@dataclass(frozen=True)
class SplitLayout:
    """What validating a file learns about it; small, so readers carry it across pickling."""

    count: int
    width: int
    max_length: int
    dtype: str
    chunk_bytes: int
    chunk_samples: int  # samples per images chunk (of the shard files, for a merged file)
    attrs: dict[str, object]


def open_h5(path: Path, **options: Any) -> h5py.File:
    """Open ``path`` read-only, turning every failure into a one-line DatasetFormatError."""
    name = os.fspath(path)
    size = 0
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise DatasetFormatError(f"{name}: is a directory, expected a .h5 file")
        if size == 0:
            raise DatasetFormatError(f"{name}: empty file, expected an HDF5 file from seqbuilder")
        if not h5py.is_hdf5(name):
            raise DatasetFormatError(f"{name}: not an HDF5 file")
        _register_plugins()
        return h5py.File(name, "r", **options)
    except FileNotFoundError as error:
        raise DatasetFormatError(f"{name}: no such file") from error
    except OSError as error:
        if "truncated" in str(error):
            raise DatasetFormatError(
                f"{name}: truncated file ({size} bytes); it was cut short, copy or build it again"
            ) from error
        raise DatasetFormatError(f"{name}: cannot open as HDF5 ({h5_reason(error)})") from error


def _register_plugins() -> None:
    """Make zstd and blosc files readable when the optional hdf5plugin is installed."""
    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401  (importing registers the filters with HDF5)


def h5_reason(error: OSError) -> str:
    # h5py messages look like "Unable to open file (bad object header version number)".
    text = error.strerror or str(error)
    return text.split("(", 1)[-1].rstrip(")") if "(" in text else text


def open_split(path: str | os.PathLike[str]) -> h5py.File:
    """Open a built split file read-only, after the checks every reader makes.

    Raises:
        DatasetFormatError: the file is missing, not HDF5, truncated, lacks a dataset, or has
            a newer ``format_version``.
    """
    file = open_h5(Path(path))
    try:
        validate_split(file, os.fspath(path))
    except BaseException:
        file.close()
        raise
    return file


def validate_split(file: h5py.File, name: str) -> SplitLayout:
    version = file.attrs.get("format_version")
    if version is None:
        raise DatasetFormatError(f"{name}: no format_version attribute; not a seqbuilder file")
    if int(version) > FORMAT_VERSION:
        raise DatasetFormatError(
            f"{name}: format_version {int(version)} is newer than this seqbuilder reads "
            f"({FORMAT_VERSION}); upgrade seqbuilder"
        )
    missing = [key for key in DATASETS if not isinstance(file.get(key), h5py.Dataset)]
    if missing:
        raise DatasetFormatError(
            f"{name}: missing dataset {', '.join(map(repr, missing))}; "
            f"a seqbuilder file holds {', '.join(DATASETS)}"
        )
    images = file[IMAGES]
    if images.ndim != 3 or images.shape[1] != HEIGHT or images.dtype.name not in STORAGE_DTYPES:
        raise DatasetFormatError(
            f"{name}: images is {images.shape} {images.dtype}, expected (N, 28, W) uint8 or float32"
        )
    _check_consistent(file, name)
    attrs = {key: plain_attr(value) for key, value in file.attrs.items()}
    samples = images.chunks[0] if images.chunks else _built_chunk_samples(attrs)
    chunks = (samples, *images.shape[1:])
    return SplitLayout(
        count=int(images.shape[0]),
        width=int(images.shape[2]),
        max_length=int(file[LABELS].shape[1]),
        dtype=images.dtype.name,
        chunk_bytes=int(np.prod(chunks)) * images.dtype.itemsize,
        chunk_samples=max(1, int(samples)),
        attrs=attrs,
    )


def _built_chunk_samples(attrs: dict[str, object]) -> int:
    """``storage.chunk_samples`` of the build, for a merged file (virtual datasets have none)."""
    from .provenance import data_keys  # OmegaConf, needed for merged files only

    try:
        value = data_keys(str(attrs.get("config", ""))).get("storage.chunk_samples")
    except Exception:  # a foreign or unreadable config: reading still works, only slower
        value = None
    return value if isinstance(value, int) else DEFAULT_CHUNK_SAMPLES


def _check_consistent(file: h5py.File, name: str) -> None:
    counts = {key: file[key].shape[0] if file[key].ndim else 0 for key in DATASETS}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{key} {count}" for key, count in counts.items())
        raise DatasetFormatError(f"{name}: datasets disagree on the sample count ({listed})")
    expected = {LABELS: 2, LENGTHS: 1, BOXES: 3, SOURCE_INDEX: 2}
    for key, ndim in expected.items():
        if file[key].ndim != ndim or file[key].dtype.kind not in "iu":
            raise DatasetFormatError(
                f"{name}: {key} is {file[key].shape} {file[key].dtype}, expected {ndim}-D integers"
            )
    lengths = {key: file[key].shape[1] for key in (LABELS, BOXES, SOURCE_INDEX)}
    if len(set(lengths.values())) > 1 or file[BOXES].shape[2] != 4:
        raise DatasetFormatError(
            f"{name}: labels {file[LABELS].shape}, boxes {file[BOXES].shape} and source_index "
            f"{file[SOURCE_INDEX].shape} disagree, expected (N, L), (N, L, 4), (N, L)"
        )
