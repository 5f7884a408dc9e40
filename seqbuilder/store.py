"""Own the HDF5 format of a built split: write it atomically, read it lazily, describe it.

A ``<split>.h5`` file (format version 1) holds N samples of width W with at most L digits::

    images        (N, 28, W)  uint8 (round(value * 255)) or float32 in [0, 1]
    labels        (N, L)      int8   digits, left-aligned, padded with -1
    lengths       (N,)        int16  number of digits of each sample
    boxes         (N, L, 4)   int16  x0, y0, x1, y1 (end exclusive) of each digit's ink; -1 padded
    source_index  (N, L)      int32  index of each digit's image in its MNIST split; -1 padded

Every dataset is chunked along N (``images`` in chunks of ``chunk_samples`` whole samples, so a
shuffled read decompresses one small chunk) and compressed with gzip, lzf or nothing, with a
fletcher32 checksum so a corrupt chunk is an error, never silently wrong pixels. Everything else
is a file attribute: ``format_version``, ``seqbuilder_version``, ``config`` (the resolved YAML),
``seed``, ``split``, ``source``, ``source_sha256``, ``background``, ``height`` and ``width``.
The file keeps the oldest HDF5 object formats that can hold it, so HDF5 1.10 tools
(``h5ls``, ``h5dump``) and any h5py open it.

Usage::

    from seqbuilder.store import SequenceDataset, describe

    ds = SequenceDataset("outputs/.../train.h5")  # validated now, opened lazily per process
    image, label = ds[0]                           # (28, W) float32 in [0, 1]; int64 digits
    print(describe("outputs/.../train.h5"))        # what ``seqbuilder info`` prints

:class:`SplitWriter` writes ``<name>.tmp`` beside the target and renames it only once every
sample is in, so a file under its final name is always complete.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, SupportsIndex

import h5py
import numpy as np
import numpy.typing as npt

from .errors import DatasetFormatError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
HEIGHT = 28
PAD = -1

IMAGES = "images"
LABELS = "labels"
LENGTHS = "lengths"
BOXES = "boxes"
SOURCE_INDEX = "source_index"
DATASETS = (IMAGES, LABELS, LENGTHS, BOXES, SOURCE_INDEX)

#: Storage choices, as spelled in the ``storage`` config group.
STORAGE_DTYPES = ("uint8", "float32")
COMPRESSIONS = ("gzip", "lzf", "none")
DEFAULT_COMPRESSION_LEVEL = 4
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
_FIELD_DTYPES: dict[str, type[np.integer[Any]]] = {
    LABELS: np.int8,
    LENGTHS: np.int16,
    BOXES: np.int16,
    SOURCE_INDEX: np.int32,
}
# Oldest to newest object formats the writer may use: never demand more than HDF5 1.10 reads.
_LIBVER = ("earliest", "v110")
_METADATA_CHUNK_ROWS = 4096  # metadata is tiny per sample; big chunks compress it well
_MIN_CACHE_BYTES = 1 << 20  # HDF5's default chunk cache
_LATENCY_READS = 200


def _package_version() -> str:
    from . import __version__  # late: the package imports this module while it initialises

    return __version__


class SplitWriter:
    """Write one split file atomically, block by block, in bounded memory.

    Blocks of any size are accepted in order; the writer buffers rows so that it always writes
    whole ``images`` chunks (a partial chunk write would re-read and re-compress the chunk).

    Example::

        with SplitWriter(path, count=n, width=w, max_length=l, attrs=attrs) as writer:
            for block in blocks:
                writer.write(*block)

    Args:
        path: The final file name, e.g. ``run_dir / "train.h5"``.
        count: N, the number of samples that will be written (>= 1).
        width: W, the image width (>= 1).
        max_length: L, the most digits of a sample (>= 1).
        dtype: ``"uint8"`` or ``"float32"``, the storage dtype of ``images``.
        compression: ``"gzip"``, ``"lzf"`` or ``"none"``.
        compression_level: gzip level 0..9 (ignored otherwise).
        chunk_samples: Samples per ``images`` chunk (>= 1; capped at ``count``).
        attrs: File attributes; must hold every name of :data:`REQUIRED_ATTRS`. Values are
            ``str``, ``int``, ``float`` or ``bool``.

    Raises:
        ValueError: An argument is out of range, an attribute is missing or contradicts the
            writer's own ``height``/``width``.
        TypeError: An attribute value is not a str, int, float or bool.
        OSError: The temporary file cannot be created (e.g. the folder does not exist).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        count: int,
        width: int,
        max_length: int,
        attrs: Mapping[str, object],
        dtype: str = "uint8",
        compression: str = "gzip",
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    ) -> None:
        _check_layout(count, width, max_length, chunk_samples)
        _check_choice("dtype", dtype, STORAGE_DTYPES)
        _check_choice("compression", compression, COMPRESSIONS)
        if not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level={compression_level!r}, expected 0..9")
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.count, self.width, self.max_length = count, width, max_length
        self._dtype = np.dtype(dtype)
        self._chunk = min(chunk_samples, count)
        file_attrs = _file_attrs(attrs, width)
        self._received = 0  # rows handed to write()
        self._written = 0  # rows stored in the file
        self._pending: list[dict[str, npt.NDArray[Any]]] = []
        self._pending_rows = 0
        self._file: h5py.File | None = h5py.File(
            self.tmp_path, "w", libver=_LIBVER, rdcc_nbytes=self._cache_bytes()
        )
        try:
            self._datasets = self._create_datasets(compression, compression_level)
            self._file.attrs.update(file_attrs)
        except BaseException:
            self.discard()
            raise

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def write(
        self,
        images: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        lengths: npt.NDArray[Any],
        boxes: npt.NDArray[Any],
        source_index: npt.NDArray[Any],
    ) -> None:
        """Append the next block of B samples.

        Args:
            images: ``(B, 28, W)`` in the file's storage dtype (float32 values in [0, 1]).
            labels: ``(B, L)`` integer digits 0..9, padded with -1.
            lengths: ``(B,)`` integer digit counts, 1..L.
            boxes: ``(B, L, 4)`` integer ink boxes, -1 padded.
            source_index: ``(B, L)`` integer MNIST indices, -1 padded.

        Raises:
            ValueError: A shape or value is wrong, or the block goes past ``count``.
            TypeError: ``images`` is not in the storage dtype, or metadata is not integer.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        block = self._check_block(images, labels, lengths, boxes, source_index)
        rows = len(block[IMAGES])
        if self._received + rows > self.count:
            raise ValueError(
                f"{self.path}: a block of {rows} samples after {self._received} goes past "
                f"count={self.count}"
            )
        self._pending.append(block)
        self._pending_rows += rows
        self._received += rows
        self._flush(final=self._received == self.count)

    def close(self) -> None:
        """Finish the file: check every sample arrived, then move it to its final name.

        Raises:
            ValueError: Fewer than ``count`` samples were written; the temporary file is
                deleted and the final name is left untouched.
            OSError: The file cannot be flushed or renamed; the temporary file is deleted.
        """
        if self._file is None:
            return
        if self._received < self.count:
            self.discard()
            raise ValueError(
                f"{self.path}: only {self._received} of {self.count} samples were written; "
                "the incomplete file was discarded"
            )
        try:
            self._file.close()
            self._file = None
            with open(self.tmp_path, "rb+") as handle:  # the rename must never expose lost pages
                os.fsync(handle.fileno())
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.discard()
            raise
        logger.info("wrote %s (%d samples)", self.path, self.count)

    def discard(self) -> None:
        """Close and delete the temporary file; the final name is never touched."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        if self.tmp_path.exists():
            self.tmp_path.unlink()
            logger.warning("discarded incomplete %s", self.tmp_path)

    def _cache_bytes(self) -> int:
        # Enough chunk cache to hold one partly written chunk of every dataset at once.
        per_row = HEIGHT * self.width * self._dtype.itemsize
        metadata_rows = min(self.count, _METADATA_CHUNK_ROWS)
        per_meta_row = self.max_length * (1 + 2 * 4 + 4) + 2
        return max(_MIN_CACHE_BYTES, 2 * (self._chunk * per_row + metadata_rows * per_meta_row))

    def _create_datasets(self, compression: str, level: int) -> dict[str, h5py.Dataset]:
        assert self._file is not None
        filters: dict[str, Any] = {"fletcher32": True}
        if compression != "none":
            filters["compression"] = compression
            filters["compression_opts"] = level if compression == "gzip" else None
        n, length = self.count, self.max_length
        shapes = {
            IMAGES: (n, HEIGHT, self.width),
            LABELS: (n, length),
            LENGTHS: (n,),
            BOXES: (n, length, 4),
            SOURCE_INDEX: (n, length),
        }
        datasets = {}
        for name, shape in shapes.items():
            dtype = self._dtype if name == IMAGES else np.dtype(_FIELD_DTYPES[name])
            rows = self._chunk if name == IMAGES else min(n, _METADATA_CHUNK_ROWS)
            shuffle = compression != "none" and dtype.itemsize > 1
            datasets[name] = self._file.create_dataset(
                name,
                shape=shape,
                dtype=dtype,
                chunks=(rows, *shape[1:]),
                fillvalue=0 if name == IMAGES else PAD,
                shuffle=shuffle,
                **filters,
            )
        return datasets

    def _check_block(
        self,
        images: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        lengths: npt.NDArray[Any],
        boxes: npt.NDArray[Any],
        source_index: npt.NDArray[Any],
    ) -> dict[str, npt.NDArray[Any]]:
        images = np.asarray(images)
        rows, length = len(images), self.max_length
        if images.shape[1:] != (HEIGHT, self.width) or images.ndim != 3:
            raise ValueError(f"images has shape {images.shape}, expected (B, 28, {self.width})")
        if images.dtype != self._dtype:
            raise TypeError(f"images has dtype {images.dtype}, expected {self._dtype} (storage)")
        if self._dtype.kind == "f" and rows and not (images.min() >= 0 and images.max() <= 1):
            raise ValueError("float32 images must hold values in [0, 1]")
        return {
            IMAGES: images,
            LABELS: _as_field(LABELS, labels, (rows, length), -1, 9),
            LENGTHS: _as_field(LENGTHS, lengths, (rows,), 1, length),
            BOXES: _as_field(BOXES, boxes, (rows, length, 4), -1, np.iinfo(np.int16).max),
            SOURCE_INDEX: _as_field(
                SOURCE_INDEX, source_index, (rows, length), -1, np.iinfo(np.int32).max
            ),
        }

    def _flush(self, *, final: bool) -> None:
        # Write the buffered rows in whole chunks; keep the remainder until it fills one.
        ready = self._pending_rows if final else self._pending_rows // self._chunk * self._chunk
        if ready == 0:
            return
        merged = {
            name: self._pending[0][name]
            if len(self._pending) == 1
            else np.concatenate([block[name] for block in self._pending])
            for name in DATASETS
        }
        start = self._written
        for name, array in merged.items():
            self._datasets[name][start : start + ready] = array[:ready]
        self._written += ready
        self._pending_rows -= ready
        self._pending = (
            [{name: array[ready:].copy() for name, array in merged.items()}]
            if self._pending_rows
            else []
        )


def _check_layout(count: int, width: int, max_length: int, chunk_samples: int) -> None:
    for name, value in (
        ("count", count),
        ("width", width),
        ("max_length", max_length),
        ("chunk_samples", chunk_samples),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}={value!r}, expected an integer >= 1")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name}={value!r} is not supported, expected one of {valid}")


def _file_attrs(attrs: Mapping[str, object], width: int) -> dict[str, object]:
    missing = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing:
        raise ValueError(f"attrs lacks {', '.join(missing)}; a split file records all of them")
    own: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "seqbuilder_version": _package_version(),
        "height": HEIGHT,
        "width": width,
    }
    result: dict[str, object] = {}
    for key, value in attrs.items():
        if not isinstance(value, str | int | float | bool | np.generic):
            raise TypeError(
                f"attrs[{key!r}] is a {type(value).__name__}, expected str, int, float or bool"
            )
        if key in own and value != own[key]:
            raise ValueError(f"attrs[{key!r}] is {value!r}, but the file's {key} is {own[key]!r}")
        result[key] = value
    return result | own


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
    return array.astype(_FIELD_DTYPES[name], copy=False)


@dataclass(frozen=True)
class _Layout:
    """What validating a file learns about it; small, so readers carry it across pickling."""

    count: int
    width: int
    max_length: int
    dtype: str
    chunk_bytes: int
    attrs: dict[str, object]


def _open_h5(path: Path, **options: Any) -> h5py.File:
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
        return h5py.File(name, "r", **options)
    except FileNotFoundError as error:
        raise DatasetFormatError(f"{name}: no such file") from error
    except OSError as error:
        if "truncated" in str(error):
            raise DatasetFormatError(
                f"{name}: truncated file ({size} bytes); it was cut short, copy or build it again"
            ) from error
        raise DatasetFormatError(f"{name}: cannot open as HDF5 ({_reason(error)})") from error


def _reason(error: OSError) -> str:
    # h5py messages look like "Unable to open file (bad object header version number)".
    text = error.strerror or str(error)
    return text.split("(", 1)[-1].rstrip(")") if "(" in text else text


def _validate(file: h5py.File, name: str) -> _Layout:
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
    chunks = images.chunks or images.shape
    return _Layout(
        count=int(images.shape[0]),
        width=int(images.shape[2]),
        max_length=int(file[LABELS].shape[1]),
        dtype=images.dtype.name,
        chunk_bytes=int(np.prod(chunks)) * images.dtype.itemsize,
        attrs={key: _plain(value) for key, value in file.attrs.items()},
    )


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


def _plain(value: Any) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


class SequenceDataset:
    """Read a built split, one ``(image, label)`` sample at a time.

    The constructor validates the file and closes it again; each process (the main one, a
    spawned ``multiprocessing`` worker or a PyTorch ``DataLoader`` worker) opens its own handle
    on first access, and a forked child never reuses its parent's. Pickling keeps the path and
    the few numbers learnt from validation, never an open handle. ``labels`` and ``lengths``
    (L + 2 bytes per sample) are read once per process; images are read per sample.

    Args:
        path: A ``<split>.h5`` file written by seqbuilder.

    Raises:
        DatasetFormatError: The file is missing, not HDF5, truncated, lacks a dataset, has
            inconsistent datasets or a newer ``format_version``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with _open_h5(self.path) as file:
            self._layout = _validate(file, os.fspath(path))
        self._reset()

    def _reset(self) -> None:
        self._pid: int | None = None
        self._file: h5py.File | None = None
        self._images: h5py.Dataset | None = None
        self._labels: npt.NDArray[np.int8] = np.zeros((0, 0), np.int8)  # (N, L), per process
        self._lengths: npt.NDArray[np.int16] = np.zeros(0, np.int16)  # (N,)

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "layout": self._layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._layout = state["layout"]
        self._reset()

    def __len__(self) -> int:
        return self._layout.count

    def __repr__(self) -> str:
        layout = self._layout
        return (
            f"SequenceDataset({os.fspath(self.path)!r}, n={layout.count}, width={layout.width}, "
            f"dtype={layout.dtype})"
        )

    def __getitem__(
        self, index: SupportsIndex
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Return sample ``index`` (negative counts from the end).

        Returns:
            ``(image, label)``: image ``(28, W)`` float32 in [0, 1] (uint8 files give
            ``value / 255``), label ``(length,)`` int64 digits.

        Raises:
            IndexError: ``index`` is out of range.
            TypeError: ``index`` is not an integer.
            DatasetFormatError: The sample's chunk cannot be read (a corrupt file).
        """
        position = self._position(index)
        images = self._handle()
        try:
            raw = images[position]
        except OSError as error:
            raise DatasetFormatError(
                f"{self.path}: sample {position} is corrupt ({_reason(error)})"
            ) from error
        image = raw if raw.dtype == np.float32 else np.divide(raw, 255, dtype=np.float32)
        label = self._labels[position, : self._lengths[position]].astype(np.int64)
        return image, label

    @property
    def attrs(self) -> dict[str, object]:
        """The file attributes (seed, split, source, config, ...), as plain Python values."""
        return dict(self._layout.attrs)

    @property
    def width(self) -> int:
        """W, the image width."""
        return self._layout.width

    @property
    def max_length(self) -> int:
        """L, the most digits a sample can hold."""
        return self._layout.max_length

    @property
    def storage_dtype(self) -> str:
        """How ``images`` is stored: ``"uint8"`` or ``"float32"``."""
        return self._layout.dtype

    def close(self) -> None:
        """Close this process's handle; the next access opens the file again."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._reset()

    def __enter__(self) -> SequenceDataset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _position(self, index: SupportsIndex) -> int:
        position = operator.index(index)
        count = self._layout.count
        if not -count <= position < count:
            raise IndexError(f"index {index} is out of range for {count} samples")
        return position % count

    def _handle(self) -> h5py.Dataset:
        if self._pid != os.getpid():
            # A forked child inherits the parent's handle; HDF5 handles must not cross a fork,
            # so drop the reference (never close it: that is the parent's) and open afresh.
            self._reset()
        if self._images is None:
            cache = max(_MIN_CACHE_BYTES, 4 * self._layout.chunk_bytes)
            self._file = _open_h5(self.path, rdcc_nbytes=cache)
            self._images = self._file[IMAGES]
            self._labels = self._file[LABELS][()]
            self._lengths = self._file[LENGTHS][()]
            self._pid = os.getpid()
        return self._images


def read_samples(
    path: str | os.PathLike[str], indices: Sequence[int] | npt.NDArray[np.integer[Any]]
) -> tuple[npt.NDArray[np.float32], list[str]]:
    """Read some samples of a built file, for the gallery.

    Args:
        path: A ``<split>.h5`` file.
        indices: Sample indices (negative counts from the end).

    Returns:
        ``(images, labels)``: images ``(K, 28, W)`` float32 in [0, 1]; labels the digit strings,
        e.g. ``"0965"``.

    Raises:
        DatasetFormatError: The file is not a valid seqbuilder file.
        IndexError: An index is out of range.
    """
    with SequenceDataset(path) as dataset:
        images = np.zeros((len(indices), HEIGHT, dataset.width), dtype=np.float32)
        labels = []
        for row, index in enumerate(indices):
            images[row], digits = dataset[int(index)]
            labels.append("".join(str(digit) for digit in digits))
    return images, labels


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
    with _open_h5(Path(path)) as file:
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
        f"read latency:  {_read_latency(dataset):.0f} µs mean per random sample "
        f"({_LATENCY_READS} reads, freshly opened)",
    ]
    return "\n".join(lines)


def _dataset_row(dataset: h5py.Dataset) -> str:
    compression = dataset.compression or "none"
    if compression == "gzip":
        compression = f"gzip level {dataset.compression_opts}"
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
        raise DatasetFormatError(f"{name}: cannot read labels ({_reason(error)})") from error
    return lengths, digits


def _histogram_text(counts: npt.NDArray[np.int64], *, first: int) -> str:
    return "  ".join(
        f"{value}: {int(count)}" for value, count in enumerate(counts, start=first) if count
    )


def _read_latency(dataset: SequenceDataset) -> float:
    """Return the mean microseconds of a single random ``dataset[i]`` on a fresh handle."""
    dataset.close()
    dataset._handle()  # open outside the timing: the question is the per-sample cost
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
