"""Encode arrays into finished HDF5 chunks, byte for byte as the file's filters would.

The build's costly part is compression. :func:`encode_block` runs it in the worker processes
for every dataset of a block (``images`` and the per-sample metadata), applying the pipeline
HDF5 would (shuffle for multi-byte dtypes, then gzip or lzf, then the fletcher32 checksum), so
the writing process only stores finished bytes with direct chunk writes
(:meth:`~seqbuilder.store.writer.SplitWriter.write_block`). Reading the file back goes through
HDF5's own filters, which verify the result.

A block's chunks travel as one :class:`EncodedBlock`: a single buffer holding every chunk back
to back, and for each dataset where its chunks start and end in it. One buffer, rather than a
list of small ``bytes``, is what a worker can hand to the writer in one piece.

Deflate engines, all writing zlib streams that any HDF5 deflate filter (h5py, HDF5 1.10's
tools, ``datasets``) reads: ``zlib`` (exactly the chunks HDF5 itself stores), ``rle`` (zlib's
run-length strategy, in the standard library: about twice as fast as level 4 and smaller on
MNIST's black background), ``isal`` (Intel ISA-L, optional, several times faster again) and
``auto`` (:func:`resolve_deflate`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .schema import DATASETS, IMAGES, check_block

#: Compressions that :func:`encode_chunks` can produce.
ENCODABLE = ("gzip", "lzf", "none")

_MODULUS = 0xFFFF


_POSITIONS = np.arange(0, dtype=np.int64)


def _positions(count: int) -> npt.NDArray[np.int64]:
    """``arange(count)`` as a view of one cached array, grown as needed."""
    global _POSITIONS
    if len(_POSITIONS) < count:
        _POSITIONS = np.arange(max(count, 2 * len(_POSITIONS)), dtype=np.int64)
    return _POSITIONS[:count]


class ChunkFormat(NamedTuple):
    """How one dataset's chunks are stored: rows per chunk, filters, and the edge fill."""

    rows: int  # samples per chunk
    compression: str  # gzip, lzf or none
    level: int  # gzip level
    deflate: str = "zlib"  # gzip encoder: zlib, rle or isal
    fill: int = 0  # the dataset's fill value: what HDF5 stores past the last sample


class BlockEncoding(NamedTuple):
    """Everything a worker needs to make a writer's chunks: small and picklable."""

    width: int
    max_length: int
    dtype: str  # storage dtype of images
    formats: Mapping[str, ChunkFormat]  # by dataset name, in DATASETS order


class EncodedBlock(NamedTuple):
    """The finished chunks of every dataset for ``rows`` samples, in one buffer.

    Chunk ``k`` of dataset ``name`` is ``data[bounds[name][k]:bounds[name][k + 1]]``, stored with
    filter mask ``masks[name][k]``.
    """

    rows: int
    data: Any  # bytes-like: bytes, bytearray, memoryview or a uint8 array
    bounds: Mapping[str, list[int]]  # per dataset: chunk count + 1 offsets into data
    masks: Mapping[str, list[int]]  # per dataset: one filter mask per chunk

    def chunks(self, name: str) -> Iterator[tuple[memoryview, int]]:
        """Yield ``(stored bytes, filter mask)`` of each chunk of dataset ``name``, in order."""
        view = memoryview(self.data).cast("B")
        bounds = self.bounds[name]
        for number, mask in enumerate(self.masks[name]):
            yield view[bounds[number] : bounds[number + 1]], mask


def resolve_deflate(deflate: str, level: int) -> str:
    """Return the deflate engine that ``deflate`` stands for at gzip ``level``.

    ``auto`` takes levels 1..3 as asking for speed: the fastest engine installed, ``isal``
    (``pip install 'seqbuilder[fast]'``), else ``rle``, both in the standard library's zlib
    format. At level 0 (stored) and 4..9 it is ``zlib``, exactly HDF5's own chunks. Any other
    name stands for itself.
    """
    if deflate != "auto":
        return deflate
    if not 1 <= level <= 3:
        return "zlib"
    return "isal" if _has_isal() else "rle"


def _has_isal() -> bool:
    try:
        import isal  # noqa: F401
    except ImportError:
        return False
    return True


def can_encode(compression: str) -> bool:
    """Whether chunks of ``compression`` can be made here (lzf needs ``python-lzf``)."""
    if compression == "lzf":
        try:
            import lzf  # noqa: F401
        except ImportError:
            return False
        return True
    return compression in ENCODABLE


def encode_block(
    encoding: BlockEncoding,
    images: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    lengths: npt.NDArray[Any],
    boxes: npt.NDArray[Any],
    source_index: npt.NDArray[Any],
) -> EncodedBlock:
    """Check a block of B samples as the writer would, then encode every dataset's chunks.

    Args:
        encoding: the writer's :meth:`~seqbuilder.store.writer.SplitWriter.block_encoding`.
        images: ``(B, 28, W)`` in the storage dtype.
        labels: ``(B, L)`` digits, padded with -1.
        lengths: ``(B,)`` digit counts.
        boxes: ``(B, L, 4)`` ink boxes, -1 padded.
        source_index: ``(B, L)`` MNIST indices, -1 padded.

    Returns:
        The block's chunks, ready for
        :meth:`~seqbuilder.store.writer.SplitWriter.write_block`.

    Raises:
        ValueError: a shape or value is wrong.
        TypeError: ``images`` is not in the storage dtype, or metadata is not integer.
    """
    arrays = check_block(
        images,
        labels,
        lengths,
        boxes,
        source_index,
        width=encoding.width,
        max_length=encoding.max_length,
        dtype=np.dtype(encoding.dtype),
    )
    parts: list[bytes | memoryview] = []
    bounds: dict[str, list[int]] = {}
    masks: dict[str, list[int]] = {}
    offset = 0
    for name in DATASETS:
        chunk_format = encoding.formats[name]
        chunks = _encode(arrays[name], chunk_format)
        masks[name] = [mask for _, _, mask in chunks]
        ends = [offset]
        for data, checksum, _ in chunks:
            parts += (data, checksum)
            offset += len(data) + 4
            ends.append(offset)
        bounds[name] = ends
    return EncodedBlock(len(arrays[IMAGES]), b"".join(parts), bounds, masks)


def encode_chunks(
    images: npt.NDArray[Any],
    chunk_samples: int,
    compression: str,
    level: int,
    deflate: str = "zlib",
    *,
    fill: int = 0,
) -> list[tuple[bytes, int]]:
    """Turn ``images`` (or any per-sample array) into stored HDF5 chunks of ``chunk_samples``.

    A short last chunk is padded with ``fill`` to the full chunk shape, as HDF5 keeps edge
    chunks whole and fills them with the dataset's fill value.

    Args:
        images: ``(B, ...)`` in the dataset's dtype.
        chunk_samples: samples per chunk.
        compression: ``"gzip"``, ``"lzf"`` or ``"none"``.
        level: gzip level 0..9 (0..3 with isal).
        deflate: the gzip encoder: ``"zlib"`` gives exactly HDF5's own chunks; ``"rle"``
            (zlib's run-length strategy) and ``"isal"`` (Intel ISA-L, optional) are faster and
            write standard zlib streams that HDF5's deflate filter reads like any other.
        fill: the dataset's fill value.

    Returns:
        ``(data, filter_mask)`` per chunk: ``filter_mask`` has the lzf filter's bit set where
        lzf could not shrink a chunk, which HDF5 then stores raw, as its own lzf filter does.
    """
    chunk_format = ChunkFormat(chunk_samples, compression, level, deflate, fill)
    return [
        (bytes(data) + checksum, mask)
        for data, checksum, mask in _encode(np.asarray(images), chunk_format)
    ]


def _encode(
    array: npt.NDArray[Any], chunk_format: ChunkFormat
) -> list[tuple[bytes | memoryview, bytes, int]]:
    """``(filtered data, fletcher32 checksum, filter mask)`` of each chunk of ``array``."""
    rows, compression, level, deflate, fill = chunk_format
    shuffled = array.dtype.itemsize > 1 and compression != "none"
    lzf_bit = 1 << (1 if shuffled else 0)  # the lzf filter's place in the pipeline
    short = -len(array) % rows
    if short:  # pad the block once, so every chunk below is a view
        padding = np.full((short, *array.shape[1:]), fill, array.dtype)
        array = np.concatenate([array, padding])
    flat = np.ascontiguousarray(array).reshape(-1, rows * int(np.prod(array.shape[1:])))
    if shuffled:  # HDF5's shuffle: the first bytes of every element, then the second bytes...
        size = array.dtype.itemsize
        chunk_bytes = flat.view(np.uint8).reshape(len(flat), -1, size).transpose(0, 2, 1)
        flat = np.ascontiguousarray(chunk_bytes).reshape(len(flat), -1)
    else:
        flat = flat.view(np.uint8)
    compress = _compressor(compression, level, deflate)
    encoded: list[tuple[bytes | memoryview, bytes, int]] = []
    for chunk in flat:
        raw: memoryview = chunk.data
        data: bytes | memoryview = raw
        mask = 0
        if compress is not None:
            packed = compress(raw)
            if packed is None:  # lzf could not shrink it: stored raw, the filter skipped
                mask = lzf_bit
            else:
                data = packed
        encoded.append((data, fletcher32(data), mask))
    return encoded


def _compressor(
    compression: str, level: int, deflate: str
) -> Callable[[memoryview], bytes | None] | None:
    """The function that filters one chunk's bytes, or None when nothing does."""
    if compression == "gzip":
        return _DEFLATE_ENGINES[deflate](level)
    if compression == "lzf":
        import lzf

        return lambda data: lzf.compress(bytes(data), len(data) - 1)
    return None


def _zlib(level: int) -> Callable[[memoryview], bytes]:
    return lambda data: zlib.compress(data, level)


def _rle(level: int) -> Callable[[memoryview], bytes]:
    # Only runs of one repeated byte are matched (distance 1): on images that are mostly one
    # background value this compresses better than zlib's default search, in half the time.
    # The level no longer matters above 0, which, as for any zlib stream, stores the data.
    def compress(data: memoryview) -> bytes:
        stream = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
        return stream.compress(data) + stream.flush()

    return compress


def _isal(level: int) -> Callable[[memoryview], bytes]:
    from isal import isal_zlib

    compress: Callable[[memoryview, int], bytes] = isal_zlib.compress
    return lambda data: compress(data, level)


_DEFLATE_ENGINES: dict[str, Callable[[int], Callable[[memoryview], bytes]]] = {
    "zlib": _zlib,
    "rle": _rle,
    "isal": _isal,
}


def fletcher32(data: bytes | memoryview) -> bytes:
    """Return HDF5's fletcher32 checksum of ``data`` as the 4 bytes its filter appends.

    HDF5 sums big-endian 16-bit words (an odd last byte as the high byte of a word) and folds
    the sums with end-around carry; that equals arithmetic modulo 65535, except that a sum
    which is a non-zero multiple of 65535 folds to 65535, not 0.
    """
    padded = bytes(data) + b"\0" if len(data) % 2 else data
    words = np.frombuffer(padded, ">u2").astype(np.int64)
    count = len(words)
    total = int(words.sum())
    if total == 0:
        return bytes(4)
    # sum2 adds the running sum1 after every word: word i counts (count - i) times, so
    # sum2 = count * total - sum(i * word_i). Both fit in int64 for any chunk under 2 GiB.
    weighted = count * total - int(np.dot(words, _positions(count)))
    sum1 = (total - 1) % _MODULUS + 1
    sum2 = (weighted - 1) % _MODULUS + 1
    return ((sum2 << 16) | sum1).to_bytes(4, "little")
