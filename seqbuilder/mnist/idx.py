"""Parse IDX files, the binary format MNIST ships in.

An IDX file is a 4-byte magic number ``0x0000TTNN`` (two zero bytes, a type code ``TT`` and the
number of dimensions ``NN``), then ``NN`` big-endian uint32 sizes, then the elements in C order,
big-endian. MNIST images are ``0x00000803`` (uint8, 3 dims) and labels ``0x00000801``.

Two functions::

    from seqbuilder.mnist.idx import parse_idx, read_idx

    labels = parse_idx(raw_bytes, "labels.idx")         # pure: validates the bytes you pass
    images = read_idx("train-images-idx3-ubyte.gz")     # a raw or gzip file, by suffix

Both validate the header and the exact payload length and raise :class:`IdxFormatError` naming
the file and what is wrong. ``read_idx`` streams: it reads the header, then at most the declared
payload plus one byte, so a header that declares terabytes or a gzip bomb is rejected without
allocating more than the file really holds. Multi-byte elements come back in native byte order.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from ..errors import IdxFormatError

#: Element type code (third byte of the magic number) -> big-endian numpy dtype.
DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_TYPE_NAMES = {
    0x08: "ubyte",
    0x09: "sbyte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


class _GzipReader(NamedTuple):
    """How to open a gzip file for reading, and what its corrupt streams raise."""

    open: Callable[[str, str], io.BufferedIOBase]
    errors: tuple[type[Exception], ...]


_ZLIB_ERRORS: tuple[type[Exception], ...] = (gzip.BadGzipFile, zlib.error, EOFError)


def _gzip_reader() -> _GzipReader:
    """ISA-L's gzip reader when it is installed (the ``fast`` extra), else the standard one.

    ISA-L decompresses MNIST's training images in about half of zlib's time.
    """
    try:
        from isal import igzip, isal_zlib
    except ImportError:
        return _GzipReader(gzip.GzipFile, _ZLIB_ERRORS)
    isal_error = cast(type[Exception], isal_zlib.error)  # its stubs call it an instance
    return _GzipReader(igzip.GzipFile, (*_ZLIB_ERRORS, isal_error))


# Suffix -> how to open the file for binary reading; anything else is read as raw IDX.
# Both are closed by the caller's `with`.
_OPENERS: dict[str, Callable[[str], io.BufferedIOBase]] = {
    ".gz": lambda path: _gzip_reader().open(path, "rb"),
    "": lambda path: open(path, "rb"),  # noqa: SIM115
}

_READ_CHUNK = 1 << 20


class _Header(NamedTuple):
    magic: int
    dtype: np.dtype[Any]
    dims: tuple[int, ...]
    size: int  # header length in bytes

    @property
    def payload_bytes(self) -> int:
        return math.prod(self.dims) * self.dtype.itemsize


def _parse_magic(head: bytes, name: str) -> tuple[int, np.dtype[Any], int]:
    """Validate the 4-byte magic number; return it with its dtype and number of dims."""
    if len(head) < 4:
        raise IdxFormatError(
            f"{name}: truncated header: file has {len(head)} bytes, an IDX file needs at least "
            "4 for the magic number"
        )
    (magic,) = struct.unpack(">I", head[:4])
    if magic >> 16:
        raise IdxFormatError(
            f"{name}: bad magic number 0x{magic:08X}, expected 0x0000TTNN (two zero bytes, a "
            "type code, the number of dims); is this an IDX file?"
        )
    code, ndim = magic >> 8, magic & 0xFF
    if code not in DTYPES:
        valid = ", ".join(f"0x{c:02X} ({t})" for c, t in _TYPE_NAMES.items())
        raise IdxFormatError(
            f"{name}: magic number 0x{magic:08X} has unknown type code 0x{code:02X}, "
            f"expected one of {valid}"
        )
    if ndim == 0:
        raise IdxFormatError(f"{name}: magic number 0x{magic:08X} means 0 dims, expected >= 1")
    return magic, DTYPES[code], ndim


def _parse_header(head: bytes, name: str) -> _Header:
    """Validate a complete header (magic number and dims) at the start of ``head``."""
    magic, dtype, ndim = _parse_magic(head, name)
    size = 4 + 4 * ndim
    if len(head) < size:
        raise IdxFormatError(
            f"{name}: truncated header: {ndim} dims need {size} header bytes, file has {len(head)}"
        )
    dims = struct.unpack(f">{ndim}I", head[4:size])
    # A zero dim makes the payload empty, so the length check passes, but numpy still refuses
    # a shape whose other dims multiply past its index range; no real file looks like that.
    if 0 in dims and math.prod(dim for dim in dims if dim) * dtype.itemsize > sys.maxsize:
        raise IdxFormatError(f"{name}: dims {dims} are empty yet overflow any addressable size")
    return _Header(magic, dtype, dims, size)


def _to_array(
    payload: bytes | bytearray | memoryview, header: _Header, name: str, *, exact: bool
) -> npt.NDArray[Any]:
    """Check the payload length against the header and view it as a native-order array."""
    want, have = header.payload_bytes, len(payload)
    if have < want:
        raise IdxFormatError(
            f"{name}: truncated: header declares {want} payload bytes, file has {have}"
        )
    if have > want:
        has = str(have) if exact else "more"
        raise IdxFormatError(
            f"{name}: trailing bytes: header declares {want} payload bytes, file has {has}"
        )
    array = np.frombuffer(payload, dtype=header.dtype).reshape(header.dims)
    if not header.dtype.isnative:
        array = array.astype(header.dtype.newbyteorder("="))
    return array


def parse_idx(data: bytes, name: str) -> npt.NDArray[Any]:
    """Validate the bytes of a whole (decompressed) IDX file and return its array.

    Args:
        data: The complete file contents: header and payload.
        name: What to call the data in error messages, usually its file name.

    Returns:
        The array, shape as declared by the header, dtype one of uint8, int8, int16, int32,
        float32 or float64 in native byte order. Single-byte types are a zero-copy view of
        ``data`` (read-only when ``data`` is ``bytes``).

    Raises:
        IdxFormatError: The magic number is not ``0x0000TTNN``, the type code is unknown, it
            declares 0 dims, the header is cut short, or the payload is shorter or longer than
            the dims declare.
    """
    header = _parse_header(bytes(data[: 4 + 4 * 255]), name)
    return _to_array(memoryview(data)[header.size :], header, name, exact=True)


def _read_exactly_or_less(stream: io.BufferedIOBase, limit: int) -> bytearray:
    """Read up to ``limit`` bytes in chunks, so memory follows what the file really holds."""
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = stream.read(min(_READ_CHUNK, limit - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read and validate an IDX file, gzip-compressed if its name ends in ``.gz``.

    Args:
        path: The file. ``.gz`` files are decompressed as they are read.

    Returns:
        The array as :func:`parse_idx` returns it (writable).

    Raises:
        IdxFormatError: The header or length is invalid (see :func:`parse_idx`), or the gzip
            stream is corrupt or truncated.
        FileNotFoundError: ``path`` does not exist (other ``OSError`` for unreadable files).
    """
    name = os.fspath(path)
    opener = _OPENERS.get(Path(name).suffix, _OPENERS[""])
    with opener(name) as stream:
        try:
            head = stream.read(4)
            _, _, ndim = _parse_magic(head, name)
            head += stream.read(4 * ndim)
            header = _parse_header(head, name)
            # One byte more than declared is enough to tell "trailing bytes" apart.
            payload = _read_exactly_or_less(stream, header.payload_bytes + 1)
        except _gzip_reader().errors as exc:
            raise IdxFormatError(f"{name}: corrupt gzip stream: {exc}") from exc
    return _to_array(payload, header, name, exact=False)
