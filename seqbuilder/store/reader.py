"""Read built files back: the :class:`SequenceDataset` reader and small helpers.

Files are checked by :mod:`seqbuilder.store.layout` before anything is read.

Usage::

    from seqbuilder.store.reader import SequenceDataset, read_samples

    ds = SequenceDataset("outputs/.../train.h5")  # validated now, opened lazily per process
    image, label = ds[0]                           # (28, W) float32 in [0, 1]; int64 digits
    images, labels = read_samples("outputs/.../train.h5", [0, 5])  # (2, 28, W); ["0965", "31"]

For generative models, which condition on a fixed-size label and usually want images in
[-1, 1] (a tanh output)::

    ds = SequenceDataset(path, label_format="padded", value_range=(-1, 1))
    image, label = ds[0]  # (28, W) float32 in [-1, 1]; (L,) int64, e.g. [0, 9, 6, 5, -1, -1]
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, SupportsIndex, cast, overload

import h5py
import numpy as np
import numpy.typing as npt

from ..errors import DatasetFormatError
from .batch import ChunkReader, batch_positions
from .layout import h5_reason, open_h5, validate_split
from .options import LabelFormat, ReadOptions, check_cache_bytes, check_options
from .schema import HEIGHT, IMAGES, LABELS, LENGTHS, MIN_CACHE_BYTES
from .shared import empty_images

Sample = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
# images (n, 28, W) float32, labels (n, L) int64 padded, lengths (n,) int64
Batch = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]
Indices = Sequence[int] | npt.NDArray[np.integer[Any]]

#: Decoded chunks that :meth:`SequenceDataset.batch` keeps per process: 32 MiB is 740 chunks
#: of a default build, room for a :class:`~seqbuilder.build.shuffle.ChunkShuffle` buffer of a
#: few hundred chunks.
BATCH_CACHE_BYTES = 32 << 20


class SequenceDataset:
    """Read a built split: one ``(image, label)`` sample, or a batch of them, at a time.

    The constructor validates the file and closes it again; each process (the main one, a
    spawned ``multiprocessing`` worker or a PyTorch ``DataLoader`` worker) opens its own handle
    on first access, and a forked child never reuses its parent's. Pickling keeps the path and
    the few numbers learnt from validation, never an open handle. ``labels`` and ``lengths``
    (L + 2 bytes per sample) are read once per process; images are read per sample by
    ``ds[i]``, by whole chunks by :meth:`batch` (many times faster per sample).

    The defaults give the contract's samples. Code that trains a generative model usually wants
    a fixed-size conditioning label and images in a tanh's range: ``label_format="padded"`` and
    ``value_range=(-1, 1)``.

    Args:
        path: A ``<split>.h5`` file written by seqbuilder.
        label_format: ``"digits"``: a label is the ``(length,)`` int64 digits. ``"padded"``: a
            ``(max_length,)`` int64 array, the digits left-aligned, then ``pad_value``.
        pad_value: What fills a ``"padded"`` label after the digits (default -1; e.g. 10 for
            an embedding table with a "no digit" row); :meth:`batch` pads with it too.
        value_range: ``(low, high)``, the values that stored 0 and 1 map to, linearly: the
            default ``(0, 1)`` leaves images as stored, ``(-1, 1)`` gives ``2 * x - 1``.
        cache_bytes: Decoded chunks :meth:`batch` keeps per process (default 32 MiB).

    Raises:
        DatasetFormatError: The file is missing, not HDF5, truncated, lacks a dataset, has
            inconsistent datasets or a newer ``format_version``.
        ValueError: ``label_format`` is not one of ``"digits"``, ``"padded"``; ``pad_value`` is
            a digit 0..9; ``value_range`` is not two finite numbers with ``low < high``;
            ``cache_bytes`` is negative.
        TypeError: ``pad_value`` or ``cache_bytes`` is not an integer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        label_format: LabelFormat = "digits",
        pad_value: int = -1,
        value_range: tuple[float, float] = (0.0, 1.0),
        cache_bytes: int = BATCH_CACHE_BYTES,
    ) -> None:
        self._options = check_options(label_format, pad_value, value_range)
        self._cache_bytes = check_cache_bytes(cache_bytes)
        self.path = Path(path)
        with open_h5(self.path) as file:
            self._layout = validate_split(file, os.fspath(path))
        self._reset()

    def _reset(self) -> None:
        self._pid: int | None = None
        self._file: h5py.File | None = None
        self._images: h5py.Dataset | None = None
        self._reader: ChunkReader | None = None
        self._labels: npt.NDArray[np.int8] = np.zeros((0, 0), np.int8)  # (N, L), per process
        self._lengths: npt.NDArray[np.int16] = np.zeros(0, np.int16)  # (N,)

    def __getstate__(self) -> dict[str, object]:
        return {
            "path": self.path,
            "layout": self._layout,
            "options": self._options,
            "cache_bytes": self._cache_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._layout = state["layout"]
        self._options = state.get("options", ReadOptions())
        self._cache_bytes = state.get("cache_bytes", BATCH_CACHE_BYTES)
        self._reset()

    def __len__(self) -> int:
        return self._layout.count

    def __repr__(self) -> str:
        layout = self._layout
        return (
            f"SequenceDataset({os.fspath(self.path)!r}, n={layout.count}, width={layout.width}, "
            f"dtype={layout.dtype})"
        )

    @overload
    def __getitem__(self, index: SupportsIndex) -> Sample: ...

    @overload
    def __getitem__(self, index: list[int] | tuple[int, ...] | range) -> Batch: ...

    def __getitem__(self, index: SupportsIndex | Indices) -> Sample | Batch:
        """Return sample ``index`` (negative counts from the end); a list of indices: a batch.

        ``ds[[3, 1, 4]]`` (a list, tuple, range or 1-D integer array) is :meth:`batch`, so a
        PyTorch ``DataLoader`` whose sampler yields lists of indices (``batch_size=None``)
        reads whole batches.

        Returns:
            ``(image, label)``: image ``(28, W)`` float32 in [0, 1] (uint8 files give
            ``value / 255``), or in ``value_range``; label ``(length,)`` int64 digits, or
            ``(max_length,)`` padded with ``pad_value`` when ``label_format="padded"``.

        Raises:
            IndexError: ``index`` is out of range.
            TypeError: ``index`` is not an integer (nor a sequence of them).
            DatasetFormatError: The sample's chunk cannot be read (a corrupt file).
        """
        if isinstance(index, (list, tuple, range, np.ndarray)) and np.ndim(index) == 1:
            return self.batch(index)
        position = self._position(cast("SupportsIndex", index))
        images = self._handle()
        try:
            raw = images[position]
        except OSError as error:
            raise DatasetFormatError(
                f"{self.path}: sample {position} is corrupt ({h5_reason(error)})"
            ) from error
        image = self._options.values(raw)
        length = int(self._lengths[position])
        label = self._options.padded_labels(self._labels[position], np.int64(length))
        return image, label if self._options.label_format == "padded" else label[:length]

    def batch(self, indices: Indices) -> Batch:
        """Read the samples ``indices`` in one call, decoding each chunk once.

        Equal to stacking ``ds[i]`` for each index, in the order asked (repeats allowed), but
        read chunk by chunk: sort the indices by chunk, decode each chunk once (through a cache
        of decoded chunks, so the next batches of a chunk-aware shuffle find them), gather.

        Args:
            indices: a sequence or 1-D array of sample indices (negative counts from the end).

        Returns:
            ``(images, labels, lengths)``: images ``(n, 28, W)`` float32 (as ``ds[i]``, in
            ``value_range``); labels ``(n, max_length)`` int64, the digits then ``pad_value``
            (-1 by default); lengths ``(n,)`` int64.

        Raises:
            IndexError: an index is out of range.
            TypeError: ``indices`` is not a 1-D sequence of integers.
            DatasetFormatError: a chunk cannot be read (a corrupt file).
        """
        positions = batch_positions(indices, self._layout.count)
        self._handle()
        assert self._reader is not None
        raw = self._reader.read(positions)
        images = self._options.values(raw, out=empty_images(raw.shape))
        lengths = self._lengths[positions].astype(np.int64)
        return images, self._options.padded_labels(self._labels[positions], lengths), lengths

    def __getitems__(self, indices: list[int]) -> list[Sample]:
        """Return ``[ds[i] for i in indices]``, read as one :meth:`batch`.

        PyTorch's ``DataLoader`` calls this with each batch of its ``batch_sampler`` (or of
        ``batch_size``), so a per-sample ``collate_fn`` still gets samples, read chunk-wise.
        """
        images, labels, lengths = self.batch(indices)
        if self._options.label_format == "padded":
            return list(zip(images, labels, strict=True))
        cut = lengths.tolist()
        return [(image, labels[row, : cut[row]]) for row, image in enumerate(images)]

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

    @property
    def chunk_samples(self) -> int:
        """Samples per stored chunk of ``images``: the unit a read decompresses."""
        return self._layout.chunk_samples

    def close(self) -> None:
        """Close this process's handle; the next access opens the file again."""
        if self._file is not None and self._pid == os.getpid():
            if self._reader is not None:
                self._reader.close()
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
            layout = self._layout
            cache = max(MIN_CACHE_BYTES, 4 * layout.chunk_bytes)
            self._file = open_h5(self.path, rdcc_nbytes=cache)
            self._images = self._file[IMAGES]
            self._labels = self._file[LABELS][()]
            self._lengths = self._file[LENGTHS][()]
            self._reader = ChunkReader(
                self._images, layout.chunk_samples, self._cache_bytes, os.fspath(self.path)
            )
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


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read the labels of every sample of a built file, without its images.

    Args:
        path: A ``<split>.h5`` file.

    Returns:
        One digit string per sample, in file order, e.g. ``["0965", "31", ...]``.

    Raises:
        DatasetFormatError: The file is not a valid seqbuilder file.
    """
    with open_h5(Path(path)) as file:
        validate_split(file, os.fspath(path))
        labels = file[LABELS][()]  # (N, L) int8, -1 padded
        lengths = file[LENGTHS][()]  # (N,)
    return ["".join(map(str, row[:length])) for row, length in zip(labels, lengths, strict=True)]
