"""``SequenceDataset.batch``: many samples in one call, read chunk by chunk, equal to ``ds[i]``.

Files are written with :class:`SplitWriter` in every storage layout, so both read paths run:
deflate chunks inflated by seqbuilder itself, and everything else through h5py's slicing.
"""

from __future__ import annotations

import os
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from seqbuilder import SequenceDataset
from seqbuilder.errors import DatasetFormatError
from seqbuilder.store import batch as batch_module
from seqbuilder.store.batch import ChunkReader
from seqbuilder.store.chunks import fletcher32
from seqbuilder.store.options import ReadOptions
from seqbuilder.store.writer import SplitWriter

COUNT, WIDTH, MAX_LENGTH = 100, 40, 4
ATTRS = {
    "config": "seed: 0\n",
    "seed": 0,
    "split": "train",
    "source": "train",
    "source_sha256": "-",
    "background": "black",
}
# (dtype, compression, level, chunk_samples, inflated by seqbuilder itself)
LAYOUTS = [
    pytest.param("uint8", "gzip", 4, 8, True, id="gzip-chunks-of-8"),
    pytest.param("uint8", "gzip", 0, 7, True, id="gzip-level-0-short-last-chunk"),
    pytest.param("uint8", "lzf", 4, 8, False, id="lzf"),
    pytest.param("uint8", "none", 4, 8, False, id="uncompressed"),
    pytest.param("uint8", "zstd", 4, 8, False, id="zstd-plugin"),
    pytest.param("float32", "gzip", 4, 8, False, id="float32-gzip-shuffled"),
    pytest.param("float32", "none", 4, 16, False, id="float32-uncompressed"),
]


def write(path: Path, dtype: str, compression: str, level: int, chunk_samples: int) -> Path:
    """Write COUNT samples of sparse random ink and random 1..4-digit labels to ``path``."""
    rng = np.random.default_rng(5)
    ink = rng.integers(0, 256, (COUNT, 28, WIDTH)) * (rng.random((COUNT, 28, WIDTH)) < 0.2)
    images = ink.astype(np.uint8) if dtype == "uint8" else (ink / 255).astype(np.float32)
    lengths = rng.integers(1, MAX_LENGTH, COUNT, endpoint=True)
    valid = np.arange(MAX_LENGTH) < lengths[:, None]
    labels = np.where(valid, rng.integers(0, 10, (COUNT, MAX_LENGTH)), -1)
    boxes = np.where(valid[..., None], 1, -1) * np.ones(4, np.int64)
    source_index = np.where(valid, 1, -1)
    with SplitWriter(
        path,
        count=COUNT,
        width=WIDTH,
        max_length=MAX_LENGTH,
        attrs=ATTRS,
        dtype=dtype,
        compression=compression,
        compression_level=level,
        chunk_samples=chunk_samples,
    ) as writer:
        writer.write(images, labels, lengths, boxes, source_index)
    return path


@pytest.fixture(scope="module")
def gzip_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("batch") / "train.h5", "uint8", "gzip", 4, 8)


def stacked(dataset: SequenceDataset, indices: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``batch`` must equal: ``ds[i]`` one by one (default options), labels padded."""
    samples = [dataset[int(index)] for index in indices]
    images = np.stack([image for image, _ in samples])
    labels = np.full((len(samples), dataset.max_length), -1, np.int64)
    for row, (_, digits) in enumerate(samples):
        labels[row, : len(digits)] = digits
    lengths = np.array([len(digits) for _, digits in samples], np.int64)
    return images, labels, lengths


def assert_same_batch(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    for name, a, b in zip(("images", "labels", "lengths"), got, expected, strict=True):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert a.tobytes() == b.tobytes(), f"{name} differ"


@pytest.mark.parametrize(("dtype", "compression", "level", "chunk", "direct"), LAYOUTS)
def test_a_batch_equals_stacking_single_reads_in_every_storage_layout(
    tmp_path: Path, dtype: str, compression: str, level: int, chunk: int, direct: bool
) -> None:
    path = write(tmp_path / "train.h5", dtype, compression, level, chunk)
    dataset = SequenceDataset(path)
    # unsorted, repeated and negative indices, across every chunk including the short last one
    indices = np.random.default_rng(1).integers(-COUNT, COUNT, 300)

    batch = dataset.batch(indices)

    assert_same_batch(batch, stacked(dataset, indices))
    assert batch[0].dtype == np.float32 and batch[1].dtype == batch[2].dtype == np.int64
    with h5py.File(path) as file:
        assert ChunkReader(file["images"], chunk, 1 << 20, str(path)).direct is direct
    assert dataset.chunk_samples == chunk


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"label_format": "padded", "pad_value": 10}, id="pad-with-10"),
        pytest.param({"value_range": (-1, 1)}, id="tanh-range"),
    ],
)
def test_a_batch_follows_the_reader_options(gzip_h5: Path, options: dict[str, Any]) -> None:
    dataset = SequenceDataset(gzip_h5, **options)
    indices = [5, 99, 0, 5, 42]

    images, labels, lengths = dataset.batch(indices)

    for row, index in enumerate(indices):
        image, label = dataset[index]
        assert image.tobytes() == images[row].tobytes()
        assert label[: lengths[row]].tolist() == labels[row, : lengths[row]].tolist()
    padding = labels[np.arange(MAX_LENGTH) >= lengths[:, None]]
    assert (padding == options.get("pad_value", -1)).all()


def test_indexing_with_a_list_array_or_range_is_a_batch(gzip_h5: Path) -> None:
    dataset = SequenceDataset(gzip_h5)
    expected = dataset.batch([3, 4, 5])

    for indices in ([3, 4, 5], (3, 4, 5), range(3, 6), np.array([3, 4, 5])):
        assert_same_batch(dataset[indices], expected)  # type: ignore[index]
    image, label = dataset[np.int64(4)]
    assert image.tobytes() == expected[0][1].tobytes()
    assert label.tolist() == expected[1][1, : expected[2][1]].tolist()


@pytest.mark.parametrize("label_format", ["digits", "padded"])
def test_getitems_gives_the_samples_of_single_reads(gzip_h5: Path, label_format: str) -> None:
    dataset = SequenceDataset(gzip_h5, label_format=label_format)  # type: ignore[arg-type]

    samples = dataset.__getitems__([7, 1, 7, 64])

    for (image, label), index in zip(samples, [7, 1, 7, 64], strict=True):
        alone_image, alone_label = dataset[index]
        assert image.tobytes() == alone_image.tobytes()
        assert (label.dtype, label.tolist()) == (np.int64, alone_label.tolist())


@pytest.mark.parametrize("cache_bytes", [0, 3 * 8 * 28 * WIDTH, 1 << 20])
def test_batches_stay_exact_whatever_the_chunk_cache_holds(gzip_h5: Path, cache_bytes: int) -> None:
    # 0 keeps one chunk (a batch of 13 chunks is read in groups); 3 chunks evict all the time
    dataset = SequenceDataset(gzip_h5, cache_bytes=cache_bytes)
    reference = SequenceDataset(gzip_h5)
    rng = np.random.default_rng(2)

    for _ in range(20):
        indices = rng.integers(0, COUNT, int(rng.integers(1, 60)))
        assert_same_batch(dataset.batch(indices), stacked(reference, indices))


def test_an_empty_batch_has_the_batch_shapes(gzip_h5: Path) -> None:
    images, labels, lengths = SequenceDataset(gzip_h5).batch([])

    assert (images.shape, images.dtype) == ((0, 28, WIDTH), np.float32)
    assert (labels.shape, labels.dtype) == ((0, MAX_LENGTH), np.int64)
    assert (lengths.shape, lengths.dtype) == ((0,), np.int64)


@pytest.mark.parametrize(
    ("indices", "error", "match"),
    [
        pytest.param([0, 100], IndexError, "index 100 is out of range for 100 samples", id="past"),
        pytest.param([-101], IndexError, "index -101 is out of range for 100 samples", id="neg"),
        pytest.param(
            [[0, 1]], TypeError, "indices is a 2-D int64 array, expected 1-D integers", id="2d"
        ),
        pytest.param(
            [0.5], TypeError, "indices is a 1-D float64 array, expected 1-D integers", id="float"
        ),
    ],
)
def test_bad_indices_are_refused_naming_the_value(
    gzip_h5: Path, indices: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        SequenceDataset(gzip_h5).batch(indices)


@pytest.mark.parametrize(
    ("cache_bytes", "error", "match"),
    [
        pytest.param(-1, ValueError, "cache_bytes=-1, expected >= 0", id="negative"),
        pytest.param(1.5, TypeError, "cache_bytes=1.5, expected an integer", id="float"),
    ],
)
def test_a_bad_cache_size_is_refused(
    gzip_h5: Path, cache_bytes: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        SequenceDataset(gzip_h5, cache_bytes=cache_bytes)


@pytest.mark.parametrize("compression", ["gzip", "lzf"])  # inflated here; by HDF5's filter
def test_a_corrupt_chunk_is_an_error_naming_its_samples(tmp_path: Path, compression: str) -> None:
    path = write(tmp_path / "corrupt.h5", "uint8", compression, 4, 8)
    with h5py.File(path) as file:
        info = file["images"].id.get_chunk_info_by_coord((8, 0, 0))
    with path.open("r+b") as handle:  # overwrite the middle of the compressed stream
        handle.seek(info.byte_offset + info.size // 2)
        handle.write(b"\xff" * 16)
    dataset = SequenceDataset(path)

    with pytest.raises(DatasetFormatError, match=r"corrupt\.h5: the chunk of samples 8\.\.15 "):
        dataset.batch([3, 9])
    assert dataset.batch([3, 20])[0].shape == (2, 28, WIDTH)  # the other chunks still read


def test_a_chunk_that_inflates_to_the_wrong_size_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "short.h5", "uint8", "gzip", 4, 8)
    data = zlib.compress(bytes(100))
    with h5py.File(path, "r+") as file:  # a well-formed stream, but of 100 bytes
        file["images"].id.write_direct_chunk((16, 0, 0), data + fletcher32(data))

    with pytest.raises(
        DatasetFormatError,
        match=r"short\.h5: the chunk of samples 16\.\.23 inflates to 100 bytes, expected 8960$",
    ):
        SequenceDataset(path).batch([17])


def test_a_dataset_pickled_after_batch_reads_reads_the_same(gzip_h5: Path) -> None:
    dataset = SequenceDataset(gzip_h5, cache_bytes=4096)
    first = dataset.batch(range(0, COUNT, 3))

    copy = pickle.loads(pickle.dumps(dataset))

    assert_same_batch(copy.batch(range(0, COUNT, 3)), first)


@pytest.fixture(params=list(batch_module.INFLATERS), ids=list(batch_module.INFLATERS))
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each decoder the direct path can use, installed for the test (``[test]`` has them all)."""
    inflate, errors = batch_module.INFLATERS[request.param]()
    monkeypatch.setattr(batch_module, "_INFLATE", inflate)
    monkeypatch.setattr(batch_module, "_INFLATE_ERRORS", errors)
    return str(request.param)


def test_every_decoder_reads_the_same_batches(gzip_h5: Path, inflater: str) -> None:
    indices = np.random.default_rng(3).integers(0, COUNT, 200)

    assert_same_batch(
        SequenceDataset(gzip_h5).batch(indices), stacked(SequenceDataset(gzip_h5), indices)
    )


def test_every_decoder_turns_a_corrupt_or_short_chunk_into_the_same_error(
    tmp_path: Path, inflater: str
) -> None:
    path = write(tmp_path / "bad.h5", "uint8", "gzip", 4, 8)
    short = zlib.compress(bytes(100))
    with h5py.File(path, "r+") as file:
        info = file["images"].id.get_chunk_info_by_coord((8, 0, 0))
        file["images"].id.write_direct_chunk((16, 0, 0), short + fletcher32(short))
    with path.open("r+b") as handle:
        handle.seek(info.byte_offset + info.size // 2)
        handle.write(b"\xff" * 16)
    dataset = SequenceDataset(path)

    with pytest.raises(
        DatasetFormatError, match=r"bad\.h5: the chunk of samples 8\.\.15 is corrupt"
    ):
        dataset.batch([9])
    with pytest.raises(
        DatasetFormatError,
        match=r"bad\.h5: the chunk of samples 16\.\.23 inflates to 100 bytes, expected 8960$",
    ):
        dataset.batch([17])
    assert dataset.batch([3, 30])[0].shape == (2, 28, WIDTH)


def test_chunks_read_the_same_when_hdf5_cannot_list_them(
    gzip_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = SequenceDataset(gzip_h5).batch(range(COUNT))
    monkeypatch.delattr(os, "pread")  # as on Windows: read_direct_chunk for every chunk

    assert_same_batch(SequenceDataset(gzip_h5).batch(range(COUNT)), listed)


def test_closing_a_dataset_closes_its_raw_file_handle(gzip_h5: Path) -> None:
    dataset = SequenceDataset(gzip_h5)
    dataset.batch([0, 50])
    opened = len(os.listdir("/proc/self/fd"))

    dataset.close()

    assert len(os.listdir("/proc/self/fd")) < opened
    assert dataset.batch([0, 50])[0].shape == (2, 28, WIDTH)  # and opens again on demand


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)], ids=["unit", "tanh"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_values_written_into_a_given_array_are_the_same_bits(
    value_range: tuple[float, float], dtype: str
) -> None:
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 256, (3, 28, WIDTH)).astype(np.uint8)
    stored = raw if dtype == "uint8" else (raw / 255).astype(np.float32)
    options = ReadOptions(value_range=value_range)
    out = np.empty(raw.shape, np.float32)

    written = options.values(stored, out=out)

    assert written is out and written.tobytes() == options.values(stored).tobytes()
