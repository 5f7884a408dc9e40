"""Encode images into finished HDF5 chunks, byte for byte as the file's filters would.

The build's costly part is compression. :func:`encode_chunks` runs it in the worker
processes, applying the same pipeline HDF5 would (shuffle for multi-byte dtypes, then gzip or
lzf, then the fletcher32 checksum), so the writing process only stores bytes with a direct
chunk write. Reading the file back goes through HDF5's own filters, which verify the result.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

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


def can_encode(compression: str) -> bool:
    """Whether chunks of ``compression`` can be made here (lzf needs ``python-lzf``)."""
    if compression == "lzf":
        try:
            import lzf  # noqa: F401
        except ImportError:
            return False
        return True
    return compression in ENCODABLE


def encode_chunks(
    images: npt.NDArray[Any],
    chunk_samples: int,
    compression: str,
    level: int,
    deflate: str = "zlib",
) -> list[tuple[bytes, int]]:
    """Turn ``images`` into stored HDF5 chunks of ``chunk_samples`` samples each.

    A short last chunk is padded with zeros to the full chunk shape, as HDF5 keeps edge chunks
    whole.

    Args:
        images: ``(B, 28, W)`` in the storage dtype.
        chunk_samples: samples per chunk.
        compression: ``"gzip"``, ``"lzf"`` or ``"none"``.
        level: gzip level 0..9 (0..3 with isal).
        deflate: the gzip encoder: ``"zlib"`` gives exactly HDF5's own chunks; ``"isal"``
            (Intel ISA-L, optional) is several times faster and writes standard zlib streams
            that HDF5's deflate filter reads like any other.

    Returns:
        ``(data, filter_mask)`` per chunk: ``filter_mask`` has the lzf filter's bit set where
        lzf could not shrink a chunk, which HDF5 then stores raw, as its own lzf filter does.
    """
    shuffled = images.dtype.itemsize > 1 and compression != "none"
    lzf_bit = 1 << (1 if shuffled else 0)  # the lzf filter's place in the pipeline
    count = len(images)
    short = -count % chunk_samples
    if short:  # pad the block once, so every chunk below is a view
        padding = np.zeros((short, *images.shape[1:]), images.dtype)
        images = np.concatenate([images, padding])
    rows = np.ascontiguousarray(images).reshape(-1, chunk_samples * images[0].size)
    compress = _deflate(deflate)
    encoded = []
    for chunk in rows:
        data: bytes | memoryview = _shuffle(chunk) if shuffled else chunk.data.cast("B")
        mask = 0
        if compression == "gzip":
            data = compress(data, level)
        elif compression == "lzf":
            import lzf

            packed = lzf.compress(bytes(data), len(data) - 1)
            if packed is None:
                mask = lzf_bit
            else:
                data = packed
        encoded.append((bytes(data) + fletcher32(data), mask))
    return encoded


def _deflate(engine: str) -> Callable[[Any, int], bytes]:
    """The ``compress(data, level)`` of a deflate engine, both giving zlib streams."""
    if engine == "isal":
        from isal import isal_zlib

        return isal_zlib.compress
    return zlib.compress


def _shuffle(chunk: npt.NDArray[Any]) -> bytes:
    """HDF5's shuffle: the first bytes of every element, then the second bytes, and so on."""
    size = chunk.dtype.itemsize
    return chunk.view(np.uint8).reshape(-1, size).T.tobytes()


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
