"""Read many samples in one call, chunk by chunk: the batch path of ``SequenceDataset``.

A sample read alone costs a whole chunk's decompression plus h5py's per-call overhead. A batch
read groups the asked samples by chunk, decodes each chunk once, keeps the decoded chunks in a
small cache (a chunk-aware shuffle touches each chunk again in the next batches), and gathers
the samples back into the asked order.

Decoding: a default build stores ``images`` as uint8 chunks filtered by deflate then fletcher32
(no shuffle: one-byte values). For such chunks :class:`ChunkReader` fetches the stored bytes
(``read_direct_chunk``) and inflates them itself, with ISA-L (``isal``, from
``seqbuilder[fast]``) when installed, else zlib: about 2x (zlib) to 3.5x (isal) faster than
h5py's slicing of the same chunk-aligned rows, which runs HDF5's filter pipeline. The fletcher32
checksum of the compressed bytes is not recomputed; the zlib stream's own adler32 checksum of
the inflated bytes still turns a corrupt chunk into an error. Any other layout (lzf, none,
zstd, blosc, shuffle, float32 with shuffle, a merged file's virtual datasets, a chunk HDF5 stored
unfiltered) is read through h5py's slicing of chunk-aligned rows, which every filter supports.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, cast

import h5py
import numpy as np
import numpy.typing as npt

from ..errors import DatasetFormatError, InvalidTypeError
from .layout import h5_reason

Inflate = Callable[[Any], bytes]


def _inflater() -> tuple[Inflate, tuple[type[Exception], ...]]:
    """The fastest zlib-stream decoder installed, and the exceptions it raises on bad data."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib.decompress, (zlib.error,)
    return isal_zlib.decompress, (cast("type[Exception]", isal_zlib.error), zlib.error)


_INFLATE, _INFLATE_ERRORS = _inflater()
#: The filter pipelines the direct path decodes, as HDF5 filter ids in pipeline order.
_DIRECT_PIPELINES = {
    (h5py.h5z.FILTER_DEFLATE,): 0,  # trailing checksum bytes to strip
    (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_FLETCHER32): 4,
}


class ChunkReader:
    """Gather samples of an ``images`` dataset by whole chunks, through a decoded-chunk cache.

    The cache is one array of ``slots`` chunks, reused least recently used first, so a batch
    whose chunks are all decoded is one gather; only missing chunks cost Python work.

    Args:
        images: the open ``(N, 28, W)`` dataset.
        chunk_samples: samples per chunk (for a merged file, the shard files' chunk size).
        cache_bytes: decoded chunks kept, in bytes (at least one chunk is kept).
        name: the file, for error messages.
    """

    def __init__(
        self, images: h5py.Dataset, chunk_samples: int, cache_bytes: int, name: str
    ) -> None:
        self._images = images
        self._count = int(images.shape[0])
        self._chunk = chunk_samples
        self._name = name
        self._dtype = images.dtype
        self._shape = (chunk_samples, *images.shape[1:])  # one decoded chunk
        self._chunk_bytes = int(np.prod(self._shape)) * self._dtype.itemsize
        self._slots = max(1, cache_bytes // max(self._chunk_bytes, 1))
        self._cache: npt.NDArray[Any] | None = None  # (slots, c, 28, W), made on first use
        self._slot_of: OrderedDict[int, int] = OrderedDict()  # chunk id -> slot, LRU first
        self._trailer = _direct_trailer(images, chunk_samples)

    @property
    def direct(self) -> bool:
        """Whether chunks are inflated here rather than by HDF5's filter pipeline."""
        return self._trailer is not None

    def read(self, positions: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """Return the stored images at ``positions`` (valid, non-negative), in that order.

        Returns:
            ``(n, 28, W)`` in the storage dtype.

        Raises:
            DatasetFormatError: a chunk cannot be read or decoded (a corrupt file).
        """
        if self._cache is None:
            self._cache = np.empty((self._slots, *self._shape), self._dtype)
        rows = self._cache.reshape(-1, *self._shape[1:])  # every cached sample, by slot
        chunk_ids = positions // self._chunk
        offsets = positions - chunk_ids * self._chunk
        wanted, inverse = np.unique(chunk_ids, return_inverse=True)
        if len(wanted) <= self._slots:  # the usual case: one gather
            slots = np.array([self._slot(chunk_id) for chunk_id in wanted.tolist()], np.int64)
            return rows[slots[inverse] * self._chunk + offsets]
        out = np.empty((len(positions), *self._shape[1:]), self._dtype)
        for first in range(0, len(wanted), self._slots):  # more chunks than the cache holds
            group = wanted[first : first + self._slots].tolist()
            slots = np.array([self._slot(chunk_id) for chunk_id in group], np.int64)
            take = (inverse >= first) & (inverse < first + len(group))
            out[take] = rows[slots[inverse[take] - first] * self._chunk + offsets[take]]
        return out

    def _slot(self, chunk_id: int) -> int:
        """The cache slot holding chunk ``chunk_id``, decoding it into the oldest slot if absent.

        Touching at most ``slots`` chunks in a row never evicts one of them.
        """
        slot = self._slot_of.get(chunk_id)
        if slot is not None:
            self._slot_of.move_to_end(chunk_id)
            return slot
        if len(self._slot_of) < self._slots:
            slot = len(self._slot_of)
        else:
            slot = self._slot_of.popitem(last=False)[1]
        assert self._cache is not None
        self._decode(chunk_id, self._cache[slot])
        self._slot_of[chunk_id] = slot
        return slot

    def _decode(self, chunk_id: int, into: npt.NDArray[Any]) -> None:
        first = chunk_id * self._chunk
        last = min(first + self._chunk, self._count)
        try:
            if self._trailer is not None:
                mask, stored = self._images.id.read_direct_chunk((first, 0, 0))
                if mask == 0:  # every filter ran; HDF5 may skip an optional one (then slice)
                    into[...] = self._inflate(stored, first, last)
                    return
            self._images.read_direct(into, np.s_[first:last], np.s_[0 : last - first])
        except OSError as error:
            raise DatasetFormatError(
                f"{self._name}: the chunk of samples {first}..{last - 1} is corrupt "
                f"({h5_reason(error)})"
            ) from error

    def _inflate(self, stored: bytes, first: int, last: int) -> npt.NDArray[Any]:
        payload = memoryview(stored)[: len(stored) - (self._trailer or 0)]
        try:
            data = _INFLATE(payload)
        except _INFLATE_ERRORS as error:
            raise DatasetFormatError(
                f"{self._name}: the chunk of samples {first}..{last - 1} is corrupt ({error})"
            ) from error
        if len(data) != self._chunk_bytes:
            raise DatasetFormatError(
                f"{self._name}: the chunk of samples {first}..{last - 1} inflates to "
                f"{len(data)} bytes, expected {self._chunk_bytes}"
            )
        return np.frombuffer(data, self._dtype).reshape(self._shape)


def batch_positions(
    indices: Sequence[int] | npt.NDArray[np.integer[Any]], count: int
) -> npt.NDArray[np.int64]:
    """Turn sample indices (negative counts from the end) into positions ``0..count - 1``.

    Raises:
        IndexError: an index is out of range.
        TypeError: ``indices`` is not a 1-D sequence of integers.
    """
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"indices is a {array.ndim}-D {array.dtype} array, expected 1-D integers"
        )
    positions = array.astype(np.int64)
    outside = (positions < -count) | (positions >= count)
    if outside.any():
        bad = int(positions[np.argmax(outside)])
        raise IndexError(f"index {bad} is out of range for {count} samples")
    return positions % count


def _direct_trailer(images: h5py.Dataset, chunk_samples: int) -> int | None:
    """Checksum bytes after the deflate stream when chunks can be inflated here, else None."""
    if images.is_virtual or images.chunks != (chunk_samples, *images.shape[1:]):
        return None
    plist = images.id.get_create_plist()
    pipeline = tuple(plist.get_filter(index)[0] for index in range(plist.get_nfilters()))
    return _DIRECT_PIPELINES.get(pipeline)
