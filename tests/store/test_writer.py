"""Tests of the HDF5 split format: schema, round trip, atomic writes, reader, errors, info."""

from __future__ import annotations

import functools
import multiprocessing
import operator
import pickle
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import seqbuilder
from seqbuilder.errors import DatasetFormatError
from seqbuilder.image.engine import generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist
from seqbuilder.store.reader import SequenceDataset, read_samples
from seqbuilder.store.schema import DATASETS, FORMAT_VERSION
from seqbuilder.store.writer import SplitWriter
from seqbuilder.view.info import describe

COUNT, WIDTH, MAX_LENGTH = 100, 160, 5
SPACING = (-2, 4)  # 5 digits with gaps up to 4 need 156 columns
ATTRS = {
    "config": "seed: 1234\nwidth: 160\n",
    "seed": 1234,
    "split": "train",
    "source": "train",
    "background": "black",
}

Samples = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def mnist(real_mnist_dir: Path) -> MnistSource:
    return load_mnist("train", data_dir=real_mnist_dir)


def compose_samples(mnist: MnistSource, dtype: type[np.uint8] | type[np.float32]) -> Samples:
    """Compose COUNT real MNIST sequences; the same seed gives the same draws for both dtypes."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, MAX_LENGTH, size=COUNT, endpoint=True)
    digits = rng.integers(0, 10, size=(COUNT, MAX_LENGTH))
    batch = generate_batch(mnist, digits, lengths, SPACING, WIDTH, ComposeOptions(), rng, dtype)
    return {
        "images": batch.images,
        "labels": np.where(np.arange(MAX_LENGTH) < lengths[:, None], digits, -1),
        "lengths": lengths,
        "boxes": batch.boxes,
        "source_index": batch.source_index,
    }


@pytest.fixture(scope="module")
def samples(mnist: MnistSource) -> Samples:
    return compose_samples(mnist, np.uint8)


@pytest.fixture(scope="module")
def float_samples(mnist: MnistSource) -> Samples:
    return compose_samples(mnist, np.float32)


def write_split(
    path: Path,
    samples: Samples,
    mnist: MnistSource,
    blocks: Sequence[int] = (COUNT,),
    **options: Any,
) -> Path:
    """Write ``samples`` to ``path`` in blocks of the given sizes (cycled until all are in)."""
    attrs = {**ATTRS, "source_sha256": mnist.sha256}
    dtype = samples["images"].dtype.name
    with SplitWriter(
        path, count=COUNT, width=WIDTH, max_length=MAX_LENGTH, attrs=attrs, dtype=dtype, **options
    ) as writer:
        start, turn = 0, 0
        while start < COUNT:
            stop = min(COUNT, start + blocks[turn % len(blocks)])
            writer.write(*(array[start:stop] for array in samples.values()))
            start, turn = stop, turn + 1
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, samples: Samples, mnist: MnistSource) -> Path:
    path = tmp_path_factory.mktemp("built") / "train.h5"
    return write_split(path, samples, mnist, blocks=(30,), chunk_samples=8)


# --- schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compression", "expected_filter", "expected_opts"),
    [
        pytest.param("gzip", "gzip", 6, id="gzip-level-6"),
        pytest.param("lzf", "lzf", None, id="lzf"),
        pytest.param("none", None, None, id="uncompressed"),
    ],
)
def test_file_has_the_contract_schema(
    tmp_path: Path,
    samples: Samples,
    mnist: MnistSource,
    compression: str,
    expected_filter: str | None,
    expected_opts: int | None,
) -> None:
    path = write_split(
        tmp_path / "train.h5",
        samples,
        mnist,
        compression=compression,
        compression_level=6,
        chunk_samples=16,
    )
    with h5py.File(path, "r") as file:
        assert set(file) == set(DATASETS)
        shapes = {name: (file[name].shape, file[name].dtype) for name in DATASETS}
        assert shapes == {
            "images": ((COUNT, 28, WIDTH), np.uint8),
            "labels": ((COUNT, MAX_LENGTH), np.int8),
            "lengths": ((COUNT,), np.int16),
            "boxes": ((COUNT, MAX_LENGTH, 4), np.int16),
            "source_index": ((COUNT, MAX_LENGTH), np.int32),
        }
        images = file["images"]
        assert images.chunks == (16, 28, WIDTH)
        assert (images.compression, images.compression_opts) == (expected_filter, expected_opts)
        assert all(file[name].chunks[1:] == file[name].shape[1:] for name in DATASETS)
        assert dict(file.attrs) == {
            **ATTRS,
            "source_sha256": mnist.sha256,
            "format_version": FORMAT_VERSION,
            "seqbuilder_version": seqbuilder.__version__,
            "height": 28,
            "width": WIDTH,
        }
        assert all(type(file.attrs[key]) is str for key in ("config", "split", "source_sha256"))


def test_file_uses_the_oldest_superblock_so_hdf5_1_10_tools_open_it(built: Path) -> None:
    # Byte 8 is the superblock version: 0 is what HDF5 1.8/1.10 h5ls and h5dump read.
    assert built.read_bytes()[:9] == b"\x89HDF\r\n\x1a\n\x00"


def test_chunk_samples_larger_than_the_split_is_capped(
    tmp_path: Path, samples: Samples, mnist: MnistSource
) -> None:
    path = write_split(tmp_path / "train.h5", samples, mnist, chunk_samples=10_000)
    with h5py.File(path, "r") as file:
        assert file["images"].chunks == (COUNT, 28, WIDTH)


# --- round trip and streaming ------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["uint8", "float32"])
def test_reader_returns_what_was_written(
    tmp_path: Path, samples: Samples, float_samples: Samples, mnist: MnistSource, storage: str
) -> None:
    source = samples if storage == "uint8" else float_samples
    path = write_split(tmp_path / "train.h5", source, mnist, blocks=(17,))
    dataset = SequenceDataset(path)
    for index in (0, 1, 50, COUNT - 1):
        image, label = dataset[index]
        expected = samples["images"][index] / np.float32(255)
        assert image.dtype == np.float32
        assert image.shape == (28, WIDTH)
        np.testing.assert_array_equal(image, expected)  # uint8 / 255 == the float32 draw
        assert label.dtype == np.int64
        np.testing.assert_array_equal(label, source["labels"][index, : source["lengths"][index]])
    with h5py.File(path, "r") as file:
        for name, array in source.items():
            np.testing.assert_array_equal(file[name][()], array, err_msg=name)
    assert dataset.storage_dtype == storage


@pytest.mark.parametrize(
    "blocks",
    [
        pytest.param((1,), id="one-sample-at-a-time"),
        pytest.param((7,), id="blocks-of-7"),
        pytest.param((16,), id="whole-chunks"),
        pytest.param((3, 50, 1, 46), id="mixed-sizes"),
    ],
)
def test_streaming_in_blocks_equals_one_big_write(
    tmp_path: Path, samples: Samples, mnist: MnistSource, blocks: tuple[int, ...]
) -> None:
    whole = write_split(tmp_path / "whole.h5", samples, mnist, chunk_samples=8)
    streamed = write_split(tmp_path / "streamed.h5", samples, mnist, blocks, chunk_samples=8)
    with h5py.File(whole, "r") as one, h5py.File(streamed, "r") as other:
        for name in DATASETS:
            np.testing.assert_array_equal(one[name][()], other[name][()], err_msg=name)


# --- atomic writes -----------------------------------------------------------------------------


def test_exception_inside_the_writer_leaves_no_file(
    tmp_path: Path, samples: Samples, mnist: MnistSource
) -> None:
    path = tmp_path / "train.h5"
    with (
        pytest.raises(RuntimeError, match="worker died"),
        SplitWriter(
            path,
            count=COUNT,
            width=WIDTH,
            max_length=MAX_LENGTH,
            attrs={**ATTRS, "source_sha256": mnist.sha256},
        ) as writer,
    ):
        writer.write(*(array[:40] for array in samples.values()))
        assert (tmp_path / "train.h5.tmp").exists()
        raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []


def test_failed_rebuild_keeps_the_previous_complete_file(
    tmp_path: Path, samples: Samples, mnist: MnistSource
) -> None:
    path = write_split(tmp_path / "train.h5", samples, mnist)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"train\.h5: only 40 of 100 samples were written; the "):
        write_split(path, {k: v[:40] for k, v in samples.items()}, mnist, blocks=(40, 10**6))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.h5"]


# --- writer argument checks --------------------------------------------------------------------


def _writer(path: Path, **overrides: Any) -> SplitWriter:
    arguments: dict[str, Any] = {
        "count": COUNT,
        "width": WIDTH,
        "max_length": MAX_LENGTH,
        "attrs": {**ATTRS, "source_sha256": "0" * 64},
    }
    return SplitWriter(path, **(arguments | overrides))


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        pytest.param(
            {"dtype": "int16"},
            ValueError,
            "dtype='int16' is not supported, expected one of 'uint8', 'float32'",
            id="dtype",
        ),
        pytest.param(
            {"compression": "brotli"},
            ValueError,
            "compression='brotli' is not supported, expected one of 'gzip', 'lzf', 'none', "
            "'zstd', 'blosc'",
            id="compression",
        ),
        pytest.param(
            {"compression_level": 10}, ValueError, "compression_level=10, expected 0..9", id="level"
        ),
        pytest.param({"count": -1}, ValueError, "count=-1, expected an integer >= 0", id="count"),
        pytest.param(
            {"chunk_samples": 0},
            ValueError,
            "chunk_samples=0, expected an integer >= 1",
            id="chunk",
        ),
        pytest.param(
            {"attrs": {"seed": 1}},
            ValueError,
            "attrs lacks config, split, source, source_sha256, background; ",
            id="missing-attrs",
        ),
        pytest.param(
            {"attrs": {**ATTRS, "source_sha256": None}},
            TypeError,
            "attrs['source_sha256'] is a NoneType, expected str, int, float or bool",
            id="attr-type",
        ),
        pytest.param(
            {"attrs": {**ATTRS, "source_sha256": "0", "width": 99}},
            ValueError,
            "attrs['width'] is 99, but the file's width is 160",
            id="attr-conflict",
        ),
    ],
)
def test_writer_rejects_bad_arguments_before_creating_a_file(
    tmp_path: Path, overrides: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=re.escape(match)):
        _writer(tmp_path / "train.h5", **overrides)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        pytest.param(
            {"images": lambda a: a.astype(np.float32)},
            TypeError,
            "images has dtype float32, expected uint8 (storage)",
            id="image-dtype",
        ),
        pytest.param(
            {"images": lambda a: a[:, :, :-1]},
            ValueError,
            "images has shape (10, 28, 159), expected (B, 28, 160)",
            id="image-width",
        ),
        pytest.param(
            {"labels": lambda a: a + 5},
            ValueError,
            "labels holds values outside -1..9",
            id="label-range",
        ),
        pytest.param(
            {"lengths": lambda a: a[:-1]},
            ValueError,
            "lengths has shape (9,), expected (10,)",
            id="lengths-shape",
        ),
        pytest.param(
            {"boxes": lambda a: a.astype(np.float32)},
            TypeError,
            "boxes has dtype float32, expected integers",
            id="boxes-dtype",
        ),
    ],
)
def test_writer_rejects_bad_blocks(
    tmp_path: Path,
    samples: Samples,
    change: dict[str, Callable[[np.ndarray], np.ndarray]],
    error: type[Exception],
    match: str,
) -> None:
    block = {name: array[:10] for name, array in samples.items()}
    block.update({name: edit(block[name]) for name, edit in change.items()})
    with pytest.raises(error, match=re.escape(match)), _writer(tmp_path / "train.h5") as writer:
        writer.write(*block.values())
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_samples_past_count(tmp_path: Path, samples: Samples) -> None:
    message = r"train\.h5: a block of 100 samples after 100 goes past count=100"
    with pytest.raises(ValueError, match=message), _writer(tmp_path / "train.h5") as writer:
        writer.write(*samples.values())
        writer.write(*samples.values())
    assert list(tmp_path.iterdir()) == []


# --- reader ------------------------------------------------------------------------------------


def test_reader_length_and_negative_indices(built: Path, samples: Samples) -> None:
    dataset = SequenceDataset(built)
    assert len(dataset) == COUNT
    last_image, last_label = dataset[-1]
    image, label = dataset[COUNT - 1]
    np.testing.assert_array_equal(last_image, image)
    np.testing.assert_array_equal(last_label, label)
    first = dataset[np.int64(-COUNT)][1]
    np.testing.assert_array_equal(first, samples["labels"][0, : samples["lengths"][0]])
    assert dataset.attrs["split"] == "train"
    assert (dataset.width, dataset.max_length) == (WIDTH, MAX_LENGTH)


@pytest.mark.parametrize("index", [COUNT, -COUNT - 1, 10**9])
def test_reader_raises_index_error_out_of_range(built: Path, index: int) -> None:
    with pytest.raises(IndexError, match=rf"index {index} is out of range for 100 samples"):
        SequenceDataset(built)[index]


def test_reader_rejects_a_non_integer_index(built: Path) -> None:
    with pytest.raises(TypeError, match="'float' object cannot be interpreted as an integer"):
        SequenceDataset(built)[1.5]  # type: ignore[index]


def test_reader_survives_pickle_with_an_open_handle(built: Path) -> None:
    dataset = SequenceDataset(built)
    expected_image, expected_label = dataset[42]  # the handle is open now
    clone = pickle.loads(pickle.dumps(dataset))
    image, label = clone[42]
    np.testing.assert_array_equal(image, expected_image)
    np.testing.assert_array_equal(label, expected_label)
    clone.close()
    dataset.close()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_reader_works_in_worker_processes(built: Path, method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.fail(f"start method {method!r} is unavailable on this platform")
    dataset = SequenceDataset(built)
    expected = [dataset[index] for index in (3, -1)]  # the parent's handle is open before fork
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map(functools.partial(operator.getitem, dataset), [3, -1])
    for (image, label), (expected_image, expected_label) in zip(results, expected, strict=True):
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(label, expected_label)
    dataset.close()


def test_read_samples_gives_images_and_digit_strings(built: Path, samples: Samples) -> None:
    images, labels = read_samples(built, [0, 5, -1])
    assert images.shape == (3, 28, WIDTH)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images[1], samples["images"][5] / np.float32(255))
    for index, text in zip((0, 5, COUNT - 1), labels, strict=True):
        assert text == "".join(map(str, samples["labels"][index, : samples["lengths"][index]]))


# --- bad files ---------------------------------------------------------------------------------


def _not_hdf5(path: Path) -> None:
    path.write_text("seed: 1\n" * 100)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _missing_boxes(path: Path) -> None:
    with h5py.File(path, "a") as file:
        del file["boxes"]


def _newer_version(path: Path) -> None:
    with h5py.File(path, "a") as file:
        file.attrs["format_version"] = 7


def _no_version(path: Path) -> None:
    with h5py.File(path, "a") as file:
        del file.attrs["format_version"]


def _short_lengths(path: Path) -> None:
    with h5py.File(path, "a") as file:
        lengths = file["lengths"][:-1]
        del file["lengths"]
        file["lengths"] = lengths


BAD_FILES = [
    pytest.param(_not_hdf5, "not an HDF5 file", id="not-hdf5"),
    pytest.param(_empty, "empty file, expected an HDF5 file from seqbuilder", id="empty"),
    pytest.param(_truncated, "truncated file (", id="truncated"),
    pytest.param(
        _missing_boxes,
        "missing dataset 'boxes'; "
        "a seqbuilder file holds images, labels, lengths, boxes, source_index",
        id="missing-dataset",
    ),
    pytest.param(
        _newer_version,
        "format_version 7 is newer than this seqbuilder reads (1); upgrade seqbuilder",
        id="newer-format",
    ),
    pytest.param(
        _no_version, "no format_version attribute; not a seqbuilder file", id="no-format-version"
    ),
    pytest.param(
        _short_lengths,
        "datasets disagree on the sample count "
        "(images 100, labels 100, lengths 99, boxes 100, source_index 100)",
        id="inconsistent-count",
    ),
]
READERS = [
    pytest.param(SequenceDataset, id="SequenceDataset"),
    pytest.param(describe, id="describe"),
    pytest.param(lambda path: read_samples(path, [0]), id="read_samples"),
]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("damage", "message"), BAD_FILES)
def test_bad_file_gives_a_one_line_error_naming_it(
    tmp_path: Path,
    built: Path,
    damage: Callable[[Path], None],
    message: str,
    reader: Callable[[Path], object],
) -> None:
    path = tmp_path / "data.h5"
    shutil.copyfile(built, path)
    damage(path)
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(f'{path}: {message}')}") as info:
        reader(path)
    assert "\n" not in str(info.value)


def test_corrupt_chunk_is_reported_not_returned(tmp_path: Path, built: Path) -> None:
    path = tmp_path / "data.h5"
    data = bytearray(built.read_bytes())
    middle = len(data) // 2  # inside the images chunks, which fill most of the file
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    dataset = SequenceDataset(path)
    pattern = rf"^{re.escape(str(path))}: sample \d+ is corrupt \(.+\)$"
    with pytest.raises(DatasetFormatError, match=pattern):
        for index in range(len(dataset)):
            dataset[index]


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.h5"
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(str(path))}: no such file$"):
        SequenceDataset(path)


# --- describe ----------------------------------------------------------------------------------


def test_describe_reports_the_figures(built: Path, samples: Samples, mnist: MnistSource) -> None:
    text = describe(built)
    lengths = np.bincount(samples["lengths"], minlength=MAX_LENGTH + 1)
    digits = np.bincount(samples["labels"][samples["labels"] >= 0], minlength=10)
    with h5py.File(built, "r") as file:
        stored = file["images"].id.get_storage_size()
    ratio = samples["images"].nbytes / stored
    expected_lines = [
        f"{built}: 100 samples of 28 x 160, up to 5 digits",
        "lengths:       " + "  ".join(f"{n}: {c}" for n, c in enumerate(lengths) if c),
        "digits:        " + "  ".join(f"{d}: {c}" for d, c in enumerate(digits) if c),
        "seed:          1234",
        "split:         train",
        f"source:        MNIST train, sha256 {mnist.sha256}",
        "background:    black",
        f"format:        version 1, written by seqbuilder {seqbuilder.__version__}",
    ]
    lines = text.splitlines()
    for line in expected_lines:
        assert line in lines
    images_line = next(line for line in lines if line.lstrip().startswith("images"))
    assert "(100, 28, 160)" in images_line
    assert "uint8" in images_line
    assert "chunks (8, 28, 160)" in images_line
    assert "gzip level 1" in images_line
    assert f"(ratio {ratio:.2f}x)" in images_line
    assert re.search(r"^read latency:  \d+ µs mean per random sample \(200 reads", text, re.M)


@pytest.mark.parametrize("compression", ["lzf", "none"])
def test_describe_names_other_compressions(
    tmp_path: Path, samples: Samples, mnist: MnistSource, compression: str
) -> None:
    path = write_split(tmp_path / "train.h5", samples, mnist, compression=compression)
    images_line = describe(path).splitlines()[1]
    assert re.search(rf"chunks \(8, 28, 160\)\s+{compression}\s", images_line)
