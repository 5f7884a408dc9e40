"""Describe a built file: what ``seqbuilder info`` prints.

:func:`describe` reports the layout, per-dataset compression, the length and digit histograms,
the provenance attributes and a measured read latency.

Usage::

    from seqbuilder.view.info import describe

    print(describe("outputs/.../train.h5"))
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt

from ..errors import DatasetFormatError
from ..store.layout import h5_reason, open_h5
from ..store.reader import SequenceDataset
from ..store.schema import DATASETS, LABELS, LENGTHS

_LATENCY_READS = 200


def describe(path: str | os.PathLike[str]) -> str:
    """Summarise a built file: what ``seqbuilder info`` prints.

    Reports counts, each dataset's shape, dtype, chunks, compression and stored size against
    raw size, the length and digit histograms, the provenance attributes, and the mean latency
    of random single-sample reads on a freshly opened file.

    Args:
        path: A ``<split>.h5`` file.

    Returns:
        Several lines of text, without a trailing newline.

    Raises:
        DatasetFormatError: The file is not a valid seqbuilder file, or a chunk is corrupt.
    """
    dataset = SequenceDataset(path)
    layout = dataset._layout
    name = os.fspath(path)
    with open_h5(Path(path)) as file:
        rows = [_dataset_row(file[key]) for key in DATASETS]
        stored = sum(file[key].id.get_storage_size() for key in DATASETS)
        raw = sum(file[key].size * file[key].dtype.itemsize for key in DATASETS)
        length_counts, digit_counts = _histograms(file, name)
    attrs = layout.attrs
    lines = [
        f"{name}: {layout.count} samples of 28 x {layout.width}, up to {layout.max_length} digits",
        *rows,
        f"  {'total':<13} {_size(raw)} raw, {_size(stored)} stored (ratio {_ratio(raw, stored)}), "
        f"file {_size(Path(path).stat().st_size)}",
        f"lengths:       {_histogram_text(length_counts, first=0)}",
        f"digits:        {_histogram_text(digit_counts, first=0)}",
        f"seed:          {attrs.get('seed')}",
        f"split:         {attrs.get('split')}",
        f"source:        MNIST {attrs.get('source')}, sha256 {attrs.get('source_sha256')}",
        f"background:    {attrs.get('background')}",
        f"format:        version {attrs.get('format_version')}, "
        f"written by seqbuilder {attrs.get('seqbuilder_version')}",
        (
            f"read latency:  {_read_latency(dataset):.0f} µs mean per random sample "
            f"({_LATENCY_READS} reads, freshly opened)"
            if len(dataset)
            else "read latency:  n/a (no samples)"
        ),
    ]
    return "\n".join(lines)


# HDF5 filter ids of the compressions seqbuilder writes (the plugins' registered ids).
_FILTER_NAMES = {1: "gzip", 32000: "lzf", 32001: "blosc", 32015: "zstd"}


def _compression(dataset: h5py.Dataset) -> str:
    """Name the compression filter of ``dataset``, with its level where it has one."""
    if dataset.is_virtual:
        return "virtual"
    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(index)
        if code in _FILTER_NAMES:
            name = _FILTER_NAMES[code]
            level = {"gzip": 0, "zstd": 0, "blosc": 4}.get(name)
            return f"{name} level {values[level]}" if level is not None else name
    return "none"


def _dataset_row(dataset: h5py.Dataset) -> str:
    compression = _compression(dataset)
    raw = dataset.size * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    shape, chunks = str(dataset.shape), str(dataset.chunks or dataset.shape)
    return (
        f"  {dataset.name.lstrip('/'):<13} {shape:<17} {dataset.dtype.name:<7} chunks {chunks:<15} "
        f"{compression:<13} {_size(stored)} stored (ratio {_ratio(raw, stored)})"
    )


def _histograms(file: h5py.File, name: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    # Read in blocks so that describing a huge file needs little memory.
    count, length = file[LABELS].shape
    lengths = np.zeros(length + 1, np.int64)
    digits = np.zeros(10, np.int64)
    step = 1 << 16
    try:
        for start in range(0, count, step):
            block_lengths = file[LENGTHS][start : start + step]
            block_labels = file[LABELS][start : start + step]
            lengths += np.bincount(np.clip(block_lengths, 0, length), minlength=length + 1)
            digits += np.bincount(
                block_labels[(block_labels >= 0) & (block_labels <= 9)], minlength=10
            )
    except OSError as error:
        raise DatasetFormatError(f"{name}: cannot read labels ({h5_reason(error)})") from error
    return lengths, digits


def _histogram_text(counts: npt.NDArray[np.int64], *, first: int) -> str:
    return "  ".join(
        f"{value}: {int(count)}" for value, count in enumerate(counts, start=first) if count
    )


def _read_latency(dataset: SequenceDataset) -> float:
    """Return the mean microseconds of a single random ``dataset[i]`` on a fresh handle."""
    dataset.close()
    dataset[0]  # open outside the timing: the question is the per-sample cost
    indices = _scattered(len(dataset), _LATENCY_READS)
    start = time.perf_counter()
    for index in indices:
        dataset[int(index)]
    elapsed = time.perf_counter() - start
    dataset.close()
    return elapsed / len(indices) * 1e6


def _scattered(count: int, reads: int) -> npt.NDArray[np.int64]:
    # A deterministic spread over the file (golden-ratio stride): store draws no random numbers.
    step = max(1, round(count * 0.6180339887))
    while np.gcd(step, count) != 1:
        step += 1
    return (np.arange(reads, dtype=np.int64) * step + count // 3) % count


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def _ratio(raw: int, stored: int) -> str:
    return f"{raw / stored:.2f}x" if stored else "n/a"
