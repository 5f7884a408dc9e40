"""Chunks encoded outside HDF5 (``seqbuilder.store.chunks``) against HDF5's own filter pipeline.

The workers of a build compress ``images`` chunks themselves and the parent stores the bytes with
a direct chunk write, so the encoder must reproduce HDF5's pipeline exactly: shuffle for
multi-byte dtypes, gzip or lzf, then the fletcher32 checksum. The oracle is HDF5 itself: files
written the plain way (``SplitWriter.write``, HDF5 filtering) and the chunks it stores
(``read_direct_chunk``). Images are real MNIST digits, read by this module's own IDX reader.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import hdf5plugin  # noqa: F401  (registers zstd and blosc, so this module can read those files)
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from seqbuilder import SequenceDataset
from seqbuilder.cli import main
from seqbuilder.errors import DatasetFormatError
from seqbuilder.store.chunks import (
    EncodedBlock,
    can_encode,
    encode_block,
    encode_chunks,
    fletcher32,
)
from seqbuilder.store.writer import SplitWriter

DATASETS = ("images", "labels", "lengths", "boxes", "source_index")
ATTRS = {
    "config": "made: by test_chunks\n",
    "seed": 0,
    "split": "train",
    "source": "test",
    "source_sha256": "0" * 64,
    "background": "black",
}
COMPRESSIONS = ("gzip", "lzf", "none")
DTYPES = ("uint8", "float32")
# HDF5 filter ids (H5Zpublic.h and the registered plugin ids).
DEFLATE, SHUFFLE, FLETCHER32, LZF, BLOSC, ZSTD = 1, 2, 3, 32000, 32001, 32015
# The filter that may fail softly and then sits in the mask: lzf, after shuffle when there is one.
LZF_MASK_BIT = {"uint8": 1 << 0, "float32": 1 << 1}


class Samples(NamedTuple):
    """Samples in the order SplitWriter.write takes them: two MNIST digits side by side."""

    images: npt.NDArray[Any]  # (N, 28, 56) uint8 or float32
    labels: npt.NDArray[np.int8]  # (N, 2)
    lengths: npt.NDArray[np.int16]  # (N,)
    boxes: npt.NDArray[np.int16]  # (N, 2, 4)
    source_index: npt.NDArray[np.int32]  # (N, 2)

    def rows(self, start: int, stop: int) -> Samples:
        return Samples(*(array[start:stop] for array in self))


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """An unsigned-byte IDX file (gzip or raw) as an array of its dims."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="session")
def mnist_test_split(real_mnist_dir: Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Real MNIST test images ``(10000, 28, 28)`` and labels."""

    def find(name: str) -> Path:
        raw = real_mnist_dir / name
        return raw if raw.is_file() else raw.with_name(f"{name}.gz")

    return read_idx(find("t10k-images-idx3-ubyte")), read_idx(find("t10k-labels-idx1-ubyte"))


@pytest.fixture
def make_samples(
    mnist_test_split: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]],
) -> Callable[[int, str], Samples]:
    digits, labels = mnist_test_split

    def make(count: int, dtype: str) -> Samples:
        left, right = np.arange(0, 2 * count, 2), np.arange(1, 2 * count, 2)
        images = np.concatenate([digits[left], digits[right]], axis=2)
        if dtype == "float32":
            images = np.divide(images, 255, dtype=np.float32)
        return Samples(
            images=images,
            labels=np.stack([labels[left], labels[right]], axis=1).astype(np.int8),
            lengths=np.full(count, 2, np.int16),
            boxes=np.full((count, 2, 4), -1, np.int16),
            source_index=np.stack([left, right], axis=1).astype(np.int32),
        )

    return make


def write_file(
    path: Path,
    samples: Samples,
    compression: str,
    *,
    encoded: bool,
    level: int = 4,
    chunk_samples: int = 8,
    block: int = 16,
) -> Path:
    """Write ``samples`` in blocks of ``block`` rows, plainly or as pre-encoded chunks.

    Encoded blocks must hold whole chunks of every dataset; a file below 4096 samples has one
    metadata chunk, so it is encoded as one block whatever ``block`` says.
    """
    count = len(samples.lengths)
    with SplitWriter(
        path,
        count=count,
        width=samples.images.shape[2],
        max_length=2,
        attrs=ATTRS,
        dtype=samples.images.dtype.name,
        compression=compression,
        compression_level=level,
        chunk_samples=chunk_samples,
    ) as writer:
        encoding = writer.block_encoding("zlib", block) if encoded else None
        if encoded and encoding is None:
            block = count
            encoding = writer.block_encoding("zlib", block)
            assert encoding is not None
        for start in range(0, count, block):
            part = samples.rows(start, start + block)
            if encoding is not None:
                writer.write_block(encode_block(encoding, *part))
            else:
                writer.write(*part)
    return path


def read_datasets(path: Path) -> dict[str, npt.NDArray[Any]]:
    with h5py.File(path, "r") as file:
        return {name: file[name][()] for name in DATASETS}


def stored_chunks(path: Path, name: str = "images") -> list[tuple[tuple[int, ...], int, bytes]]:
    """Every stored chunk of dataset ``name`` as ``(offset, filter_mask, bytes)``, in order."""
    with h5py.File(path, "r") as file:
        images = file[name].id
        chunks = []
        for number in range(images.get_num_chunks()):
            offset = images.get_chunk_info(number).chunk_offset
            mask, data = images.read_direct_chunk(offset)
            chunks.append((offset, mask, bytes(data)))
    return chunks


def assert_same_arrays(
    first: dict[str, npt.NDArray[Any]], second: dict[str, npt.NDArray[Any]]
) -> None:
    for name in DATASETS:
        assert first[name].dtype == second[name].dtype, name
        assert first[name].shape == second[name].shape, name
        assert np.array_equal(first[name], second[name]), f"{name} differs"


# --- encoded files against plain HDF5 writes ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_encoded_chunks_read_back_as_the_images_and_as_a_plain_write(
    make_samples: Callable[[int, str], Samples], tmp_path: Path, compression: str, dtype: str
) -> None:
    samples = make_samples(37, dtype)  # 4 whole chunks of 8 and a short one of 5

    encoded = write_file(tmp_path / "encoded.h5", samples, compression, encoded=True)
    plain = write_file(tmp_path / "plain.h5", samples, compression, encoded=False, block=5)

    data = read_datasets(encoded)
    assert data["images"].dtype == np.dtype(dtype)
    assert np.array_equal(data["images"], samples.images)
    assert np.array_equal(data["source_index"], samples.source_index)
    assert_same_arrays(data, read_datasets(plain))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("compression", "level"),
    [
        pytest.param("gzip", 1, id="gzip-1"),
        pytest.param("gzip", 4, id="gzip-4"),
        pytest.param("gzip", 9, id="gzip-9"),
        pytest.param("none", 4, id="none"),
    ],
)
def test_gzip_and_uncompressed_chunks_are_byte_identical_to_the_ones_hdf5_stores(
    make_samples: Callable[[int, str], Samples],
    tmp_path: Path,
    compression: str,
    level: int,
    dtype: str,
) -> None:
    samples = make_samples(37, dtype)

    encoded = write_file(tmp_path / "e.h5", samples, compression, encoded=True, level=level)
    plain = write_file(tmp_path / "p.h5", samples, compression, encoded=False, level=level)

    assert len(stored_chunks(plain)) == 5
    assert_same_stored_chunks(encoded, plain)


def assert_same_stored_chunks(ours: Path, hdf5s: Path) -> None:
    """Every dataset of ``ours`` stores exactly the chunks HDF5 stored in ``hdf5s``."""
    for name in DATASETS:
        mine, theirs = stored_chunks(ours, name), stored_chunks(hdf5s, name)
        assert [offset for offset, _, _ in mine] == [offset for offset, _, _ in theirs], name
        for (offset, mask, data), (_, hdf5_mask, hdf5_data) in zip(mine, theirs, strict=True):
            assert mask == hdf5_mask == 0, (name, offset)
            assert data == hdf5_data, f"{name} chunk at {offset} differs from HDF5's"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_blocks_of_4096_encode_every_dataset_as_hdf5_does_up_to_a_short_edge_chunk(
    make_samples: Callable[[int, str], Samples], tmp_path: Path, compression: str, dtype: str
) -> None:
    # two blocks: the second ends in edge chunks, which HDF5 pads with the fill value
    # (0 for images, -1 for the metadata)
    samples = make_samples(4096 + 13, dtype)

    encoded = write_file(tmp_path / "e.h5", samples, compression, encoded=True, block=4096)
    plain = write_file(tmp_path / "p.h5", samples, compression, encoded=False, block=1000)

    assert len(stored_chunks(encoded, "labels")) == 2
    assert_same_stored_chunks(encoded, plain)
    assert_same_arrays(read_datasets(encoded), samples._asdict())


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize(
    "count", [pytest.param(13, id="13-of-chunks-of-8"), pytest.param(5, id="5-below-one-chunk")]
)
def test_a_short_last_chunk_round_trips(
    make_samples: Callable[[int, str], Samples], tmp_path: Path, compression: str, count: int
) -> None:
    samples = make_samples(count, "uint8")

    path = write_file(tmp_path / "short.h5", samples, compression, encoded=True)

    assert np.array_equal(read_datasets(path)["images"], samples.images)
    chunks = stored_chunks(path)
    with h5py.File(path, "r") as file:
        chunk_rows = file["images"].chunks[0]
    assert len(chunks) == -(-count // chunk_rows)
    if compression == "none":
        # HDF5 keeps edge chunks whole: the missing rows are stored as zeros (the fill value).
        last = len(chunks) - 1
        rows = samples.images[last * chunk_rows :]
        padding = np.zeros((chunk_rows - len(rows), 28, 56), np.uint8)
        assert chunks[-1][2][:-4] == np.concatenate([rows, padding]).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_incompressible_lzf_chunk_is_stored_raw_with_the_filter_mask_bit_and_reads_back(
    tmp_path: Path, dtype: str
) -> None:
    rng = np.random.default_rng(7)
    count = 16
    if dtype == "uint8":
        images: npt.NDArray[Any] = rng.integers(0, 256, (count, 28, 56), dtype=np.uint8)
    else:  # random bits below 0x3F800000 are floats in [0, 1) that lzf cannot shrink either
        bits = rng.integers(0, 2**32, (count, 28, 56), dtype=np.uint32) & np.uint32(0x3F7FFFFF)
        images = bits.view(np.float32)
    samples = Samples(
        images,
        np.zeros((count, 2), np.int8),
        np.ones(count, np.int16),
        np.full((count, 2, 4), -1, np.int16),
        np.zeros((count, 2), np.int32),
    )

    encoded = write_file(tmp_path / "e.h5", samples, "lzf", encoded=True)
    plain = write_file(tmp_path / "p.h5", samples, "lzf", encoded=False)

    chunks = stored_chunks(encoded)
    assert [mask for _, mask, _ in chunks] == [LZF_MASK_BIT[dtype]] * 2
    assert [mask for _, mask, _ in chunks] == [mask for _, mask, _ in stored_chunks(plain)]
    chunk_bytes = 8 * 28 * 56 * images.dtype.itemsize
    assert [len(data) for _, _, data in chunks] == [chunk_bytes + 4] * 2  # raw plus checksum
    assert np.array_equal(read_datasets(encoded)["images"], images)


def test_only_gzip_lzf_and_none_can_be_encoded_outside_hdf5(tmp_path: Path) -> None:
    assert [can_encode(name) for name in ("gzip", "lzf", "none", "zstd", "blosc")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    writer = SplitWriter(
        tmp_path / "zstd.h5", count=8, width=28, max_length=1, attrs=ATTRS, compression="zstd"
    )
    assert writer.block_encoding("zlib", 8) is None
    nothing = EncodedBlock(0, b"", {name: [0] for name in DATASETS}, {n: [] for n in DATASETS})
    with pytest.raises(ValueError, match=r"zstd chunks cannot be pre-encoded"):
        writer.write_block(nothing)
    writer.discard()
    assert list(tmp_path.iterdir()) == []


# --- fletcher32 ---------------------------------------------------------------------------------


def hdf5_checksum(payload: bytes) -> tuple[bytes, bytes]:
    """What HDF5 stores for ``payload`` as one unfiltered chunk: ``(payload, checksum)``."""
    with h5py.File(io.BytesIO(), "w") as file:
        dataset = file.create_dataset(
            "x", data=np.frombuffer(payload, np.uint8), chunks=(len(payload),), fletcher32=True
        )
        _, stored = dataset.id.read_direct_chunk((0,))
    return bytes(stored[:-4]), bytes(stored[-4:])


def runs_of_bytes(runs: list[tuple[int, int]]) -> bytes:
    return b"".join(bytes([value]) * length for value, length in runs)


PAYLOADS = st.one_of(
    st.binary(min_size=1, max_size=2048),
    st.lists(
        st.tuples(st.sampled_from([0, 1, 0x7F, 0x80, 0xFE, 0xFF]), st.integers(1, 40_000)),
        min_size=1,
        max_size=8,
    ).map(runs_of_bytes),
    # long pseudo-random payloads: sums far past the 16-bit folds
    st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 300_000)).map(
        lambda seed_size: np.random.default_rng(seed_size[0]).bytes(seed_size[1])
    ),
)


@settings(max_examples=120, deadline=None, database=None)
@given(payload=PAYLOADS)
@example(payload=b"\x00")
@example(payload=b"\xff")
@example(payload=b"\x00" * 100_001)
@example(payload=b"\xff" * 7)
@example(payload=b"\xff" * 2 * 65_535)  # every word 0xFFFF: both sums are multiples of 65535
@example(payload=b"\xff" * (2 * 65_535 + 1))
@example(payload=b"\x00\x01" * 65_535)  # sum1 is exactly 65535
@example(payload=b"\x80" * 300_001)
def test_fletcher32_equals_the_checksum_hdf5_appends(payload: bytes) -> None:
    stored, checksum = hdf5_checksum(payload)

    assert stored == payload
    assert fletcher32(payload) == checksum


# --- every filter through a real build -----------------------------------------------------------

# One narrow digit per sample keeps the slowest filter (gzip 9 on shuffled float32) quick;
# test_shards.py covers many blocks and worker counts.
FILTER_BUILD = (
    "~splits.test",
    "splits.train.count=1500",
    "sequences.max_length=1",
    "width=32",
    "gallery.count=0",
    "workers=2",
)
FILTERS = [
    pytest.param("gzip", 1, [DEFLATE], id="gzip-1"),
    pytest.param("gzip", 9, [DEFLATE], id="gzip-9"),
    pytest.param("lzf", 4, [LZF], id="lzf"),
    pytest.param("none", 4, [], id="none"),
    pytest.param("zstd", 4, [ZSTD], id="zstd"),
    pytest.param("blosc", 4, [BLOSC], id="blosc"),
]


def cli_env(real_mnist_dir: Path, root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEQBUILDER_DATA": str(real_mnist_dir),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }


@pytest.fixture(scope="module")
def uncompressed_builds(
    real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """``storage.compression=none`` builds of FILTER_BUILD, per dtype, by the real command."""
    root = tmp_path_factory.mktemp("uncompressed")
    runs = {}
    for dtype in DTYPES:
        run_dir = root / dtype
        overrides = [*FILTER_BUILD, "storage.compression=none", f"storage.dtype={dtype}"]
        result = subprocess.run(
            [sys.executable, "-m", "seqbuilder", "build", *overrides, f"hydra.run.dir={run_dir}"],
            cwd=root,
            env=cli_env(real_mnist_dir, root),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        runs[dtype] = run_dir
    return runs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("compression", "level", "pipeline"), FILTERS)
def test_every_filter_round_trips_through_a_build_to_the_uncompressed_arrays(
    run_build: Callable[..., Path],
    uncompressed_builds: dict[str, Path],
    compression: str,
    level: int,
    pipeline: list[int],
    dtype: str,
) -> None:
    run_dir = run_build(
        *FILTER_BUILD,
        f"storage.compression={compression}",
        f"storage.compression_level={level}",
        f"storage.dtype={dtype}",
    )

    path = run_dir / "train.h5"
    with h5py.File(path, "r") as file:
        plist = file["images"].id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    shuffled = dtype == "float32" and compression in ("gzip", "lzf")
    assert [f[0] for f in filters] == [SHUFFLE] * shuffled + pipeline + [FLETCHER32]
    if compression == "gzip":
        assert filters[shuffled][2] == (level,)
    assert_same_arrays(read_datasets(path), read_datasets(uncompressed_builds[dtype] / "train.h5"))
    with SequenceDataset(path) as dataset:
        image, _ = dataset[1499]
    expected = read_datasets(uncompressed_builds[dtype] / "train.h5")["images"][1499]
    assert np.array_equal(image, expected if dtype == "float32" else expected / np.float32(255))


# --- corruption ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_a_corrupted_stored_chunk_gives_the_readers_one_line_error(
    make_samples: Callable[[int, str], Samples],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    compression: str,
) -> None:
    path = write_file(tmp_path / "train.h5", make_samples(24, "uint8"), compression, encoded=True)
    with h5py.File(path, "r") as file:
        info = file["images"].id.get_chunk_info(1)  # samples 8..15
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset + info.size // 2)
        byte = handle.read(1)[0]
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte ^ 0xFF]))

    with SequenceDataset(path) as dataset:
        dataset[3]  # another chunk still reads
        with pytest.raises(DatasetFormatError, match=r"train\.h5: sample 10 is corrupt") as caught:
            dataset[10]
    assert "\n" not in str(caught.value)

    code = main(["gallery", str(path), "--count", "16", "--output", str(tmp_path / "g.png")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("seqbuilder: error: ")
    assert "is corrupt" in err[0]
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("level", [0, 1, 3])
def test_isal_deflate_builds_read_back_as_the_uncompressed_arrays(
    run_build: Callable[..., Path], uncompressed_builds: dict[str, Path], level: int, dtype: str
) -> None:
    run_dir = run_build(
        *FILTER_BUILD,
        "storage.deflate=isal",
        f"storage.compression_level={level}",
        f"storage.dtype={dtype}",
    )

    path = run_dir / "train.h5"
    assert_same_arrays(read_datasets(path), read_datasets(uncompressed_builds[dtype] / "train.h5"))


@pytest.mark.parametrize("deflate", ["isal", "rle"])
def test_isal_and_rle_deflate_chunks_are_zlib_streams_of_the_same_bytes(deflate: str) -> None:
    images = np.random.default_rng(3).integers(0, 4, (20, 28, 30), dtype=np.uint8)

    their_chunks = encode_chunks(images, 8, "gzip", 1, deflate=deflate)
    zlib_chunks = encode_chunks(images, 8, "gzip", 1)

    for (their_data, _), (zlib_data, _) in zip(their_chunks, zlib_chunks, strict=True):
        assert their_data != zlib_data
        assert zlib.decompress(their_data[:-4]) == zlib.decompress(zlib_data[:-4])
        assert their_data[-4:] == fletcher32(their_data[:-4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rle_deflate_builds_read_back_as_the_uncompressed_arrays(
    run_build: Callable[..., Path], uncompressed_builds: dict[str, Path], dtype: str
) -> None:
    run_dir = run_build(*FILTER_BUILD, "storage.deflate=rle", f"storage.dtype={dtype}")

    path = run_dir / "train.h5"
    assert_same_arrays(read_datasets(path), read_datasets(uncompressed_builds[dtype] / "train.h5"))


@pytest.mark.parametrize(
    ("start", "rows", "message"),
    [
        pytest.param(0, 12, "an encoded block of 12 samples after 0 is not aligned", id="cut"),
        pytest.param(8, 8, "an encoded block of 8 samples after 16 is not aligned", id="late"),
        pytest.param(0, 40, "an encoded block of 40 samples after 0 goes past count=24", id="past"),
    ],
)
def test_a_block_that_does_not_fill_whole_chunks_is_refused(
    make_samples: Callable[[int, str], Samples],
    tmp_path: Path,
    start: int,
    rows: int,
    message: str,
) -> None:
    samples = make_samples(40, "uint8")
    writer = SplitWriter(
        tmp_path / "t.h5", count=24, width=56, max_length=2, attrs=ATTRS, chunk_samples=8
    )
    encoding = writer.block_encoding("zlib", 24)
    assert encoding is not None
    assert writer.block_encoding("zlib", 12) is None  # 12 would cut the 24-row metadata chunk
    if start:
        writer.write(*samples.rows(0, 16))
    with pytest.raises(ValueError, match=message):
        writer.write_block(encode_block(encoding, *samples.rows(start, start + rows)))
    writer.discard()
