"""IDX parsing: round trips, every malformed header, corrupt gzip, hostile sizes, fuzzing."""

from __future__ import annotations

import gzip
import re
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from isal import igzip

from seqbuilder.errors import IdxFormatError
from seqbuilder.mnist import idx
from seqbuilder.mnist.idx import DTYPES, parse_idx, read_idx
from tests.support.idx_files import idx_bytes, write_idx


@pytest.fixture(params=["isal", "zlib"])
def gunzip(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Read .gz files with ISA-L (a test dependency, as in the ``fast`` extra) or zlib.

    For ``zlib``, ISA-L is hidden, as on an install without the ``fast`` extra.
    """
    if request.param == "zlib":
        monkeypatch.setitem(sys.modules, "isal", None)  # import isal now fails
    return str(request.param)


def test_gzip_files_are_read_with_isal_when_it_is_installed(tmp_path: Path, gunzip: str) -> None:
    path = write_idx(tmp_path / "x-idx.gz", np.arange(4, dtype=np.uint8))
    with idx._OPENERS[".gz"](str(path)) as stream:
        assert type(stream) is (igzip.GzipFile if gunzip == "isal" else gzip.GzipFile)


def _header(magic: int, *dims: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


ARRAYS = [
    pytest.param(np.arange(12, dtype=np.uint8).reshape(3, 4), id="ubyte-2d"),
    pytest.param(np.array([-128, -1, 0, 127], dtype=np.int8), id="sbyte-1d"),
    pytest.param(np.array([[-32768, 258], [1, 32767]], dtype=np.int16), id="int16"),
    pytest.param(np.array([-(2**31), 2**31 - 1, 66000], dtype=np.int32), id="int32"),
    pytest.param(np.array([0.5, -1e30, np.inf], dtype=np.float32), id="float32"),
    pytest.param(np.linspace(-1, 1, 24).reshape(2, 3, 4), id="float64-3d"),
    pytest.param(np.zeros((0, 28, 28), dtype=np.uint8), id="empty"),
]

# (file bytes, what the message must say after "<name>: ")
MALFORMED = [
    pytest.param(b"", "truncated header: file has 0 bytes", id="empty-file"),
    pytest.param(b"\x00\x00\x08", "truncated header: file has 3 bytes", id="short-magic"),
    pytest.param(
        _header(0x1F8B0801, 1) + b"\x00",
        "bad magic number 0x1F8B0801, expected 0x0000TTNN",
        id="bad-magic",
    ),
    pytest.param(
        _header(0x00000A01, 1) + b"\x00",
        "magic number 0x00000A01 has unknown type code 0x0A, expected one of 0x08 (ubyte)",
        id="unknown-type-code",
    ),
    pytest.param(_header(0x00000800), "magic number 0x00000800 means 0 dims", id="ndim-0"),
    pytest.param(
        _header(0x00000803, 2, 2),
        "truncated header: 3 dims need 16 header bytes, file has 12",
        id="truncated-header",
    ),
    pytest.param(
        _header(0x00000801, 10) + bytes(5),
        "truncated: header declares 10 payload bytes, file has 5",
        id="truncated-payload",
    ),
    pytest.param(
        _header(0x00000B01, 3) + bytes(5),
        "truncated: header declares 6 payload bytes, file has 5",
        id="truncated-int16-payload",
    ),
    pytest.param(
        _header(0x00000801, 3) + bytes(5),
        "trailing bytes: header declares 3 payload bytes, file has",
        id="trailing-bytes",
    ),
    pytest.param(
        _header(0x00000E03, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(100),
        f"truncated: header declares {8 * (2**32 - 1) ** 3} payload bytes, file has 100",
        id="declares-terabytes",
    ),
]


@pytest.mark.parametrize("array", ARRAYS)
def test_parse_idx_round_trips_every_type_in_native_order(array: np.ndarray) -> None:
    parsed = parse_idx(idx_bytes(array), "x.idx")
    assert parsed.dtype == array.dtype.newbyteorder("=")
    assert parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, array)


@pytest.mark.usefixtures("gunzip")
@pytest.mark.parametrize("suffix", [pytest.param("", id="raw"), pytest.param(".gz", id="gz")])
@pytest.mark.parametrize("array", ARRAYS)
def test_read_idx_reads_raw_and_gzip_files(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    parsed = read_idx(write_idx(tmp_path / f"x-idx{suffix}", array))
    assert parsed.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(parsed, array)


def test_dtype_table_covers_the_six_idx_types() -> None:
    assert sorted(DTYPES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_parse_idx_rejects_malformed_data_naming_it(data: bytes, message: str) -> None:
    with pytest.raises(IdxFormatError, match=f"^labels-file: {re.escape(message)}"):
        parse_idx(data, "labels-file")


@pytest.mark.usefixtures("gunzip")
@pytest.mark.parametrize("suffix", [pytest.param("", id="raw"), pytest.param(".gz", id="gz")])
@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_read_idx_rejects_malformed_files_naming_them(
    tmp_path: Path, data: bytes, message: str, suffix: str
) -> None:
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(IdxFormatError, match=f"^{re.escape(str(path))}: {re.escape(message)}"):
        read_idx(path)


def _gz_of_valid_file() -> bytes:
    return gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)), mtime=0)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


CORRUPT_GZIP = [
    pytest.param(_flip(_gz_of_valid_file(), -6), "CRC check failed", id="bad-crc"),
    pytest.param(_flip(_gz_of_valid_file(), -2), "Incorrect length", id="bad-length-trailer"),
    pytest.param(_gz_of_valid_file()[:-12], "end-of-stream marker", id="truncated-gzip"),
    pytest.param(_flip(_gz_of_valid_file(), 40), "", id="corrupt-deflate-data"),
    pytest.param(idx_bytes(np.zeros(3, np.uint8)), "Not a gzipped file", id="raw-named-gz"),
]


@pytest.mark.usefixtures("gunzip")
@pytest.mark.parametrize(("data", "reason"), CORRUPT_GZIP)
def test_read_idx_turns_corrupt_gzip_into_idx_format_error(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(data)
    pattern = f"^{re.escape(str(path))}: corrupt gzip stream: .*{re.escape(reason)}"
    with pytest.raises(IdxFormatError, match=pattern):
        read_idx(path)


def test_read_idx_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here.gz")


# (header, payload size, message); the payload is built in the test to keep collection light.
HOSTILE = [
    pytest.param(
        _header(0x00000803, 2**32 - 1, 2**32 - 1, 2**32 - 1),
        1000,
        "truncated: header declares",
        id="header-declares-terabytes",
    ),
    pytest.param(
        _header(0x00000801, 1000),
        64 << 20,
        "trailing bytes: header declares 1000 payload bytes",
        id="gzip-bomb-64MiB",
    ),
]


@pytest.mark.usefixtures("gunzip")
@pytest.mark.parametrize(("header", "size", "message"), HOSTILE)
def test_read_idx_never_allocates_more_than_the_file_holds(
    tmp_path: Path, header: bytes, size: int, message: str
) -> None:
    path = tmp_path / "hostile-idx.gz"
    path.write_bytes(gzip.compress(header + bytes(size), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match=re.escape(message)):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


# --- property-based: nothing but IdxFormatError ever escapes ---------------------------------

_CODES = st.sampled_from([*DTYPES, 0x00, 0x07, 0x0A, 0xFF])


@st.composite
def _idx_like(draw: st.DrawFn) -> bytes:
    """Bytes that look like an IDX file: plausible header, payload of about the right size."""
    code, ndim = draw(_CODES), draw(st.integers(0, 4))
    dims = draw(
        st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), min_size=ndim, max_size=ndim)
    )
    prefix = draw(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\xff\x00"]))
    head = prefix + bytes([code, ndim]) + struct.pack(f">{ndim}I", *dims)
    head = head[: draw(st.integers(0, len(head)))] if draw(st.booleans()) else head
    return head + draw(st.binary(max_size=300))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64) | _idx_like())
def test_parse_idx_raises_only_idx_format_error(data: bytes) -> None:
    try:
        array = parse_idx(data, "fuzz")
    except IdxFormatError as exc:
        assert str(exc).startswith("fuzz: ")
    else:
        assert array.nbytes == len(data) - 4 - 4 * array.ndim


@settings(max_examples=60, deadline=None)
@given(data=_idx_like(), compress=st.booleans())
def test_read_idx_agrees_with_parse_idx(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, compress: bool
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / ("f.gz" if compress else "f")
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        expected = parse_idx(data, str(path))
    except IdxFormatError as exc:
        # read_idx stops reading one byte past the payload, so it cannot count trailing bytes.
        message = str(exc)
        if "trailing bytes" in message:
            message = re.sub(r"file has \d+$", "file has more", message)
        with pytest.raises(IdxFormatError, match=f"^{re.escape(message)}$"):
            read_idx(path)
    else:
        np.testing.assert_array_equal(read_idx(path), expected)
