"""Tests of the PNG writers: single-sample PNGs and the labelled gallery grid."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqbuilder.errors import DatasetFormatError
from seqbuilder.image.engine import generate_batch
from seqbuilder.image.options import ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist
from seqbuilder.store.writer import SplitWriter
from seqbuilder.view.gallery import (
    CANVAS_COLOR,
    CAPTION_COLOR,
    CAPTION_HEIGHT,
    MISMATCH_COLOR,
    PADDING,
    render_gallery,
    render_gallery_file,
    save_png,
)

WIDTH, MAX_LENGTH = 120, 4


@pytest.fixture(scope="module")
def mnist(real_mnist_dir: Path) -> MnistSource:
    return load_mnist("train", data_dir=real_mnist_dir)


def compose(mnist: MnistSource, count: int, background: str = "black") -> dict[str, np.ndarray]:
    """Compose ``count`` real MNIST sequences of 1..MAX_LENGTH digits, as stored (uint8)."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, MAX_LENGTH, size=count, endpoint=True)
    digits = rng.integers(0, 10, size=(count, MAX_LENGTH))
    options = ComposeOptions(background=background)
    batch = generate_batch(mnist, digits, lengths, (0, 2), WIDTH, options, rng, np.uint8)
    return {
        "images": batch.images,
        "labels": np.where(np.arange(MAX_LENGTH) < lengths[:, None], digits, -1),
        "lengths": lengths,
        "boxes": batch.boxes,
        "source_index": batch.source_index,
    }


def build_file(path: Path, mnist: MnistSource, count: int, background: str = "black") -> Path:
    samples = compose(mnist, count, background)
    attrs = {
        "config": "width: 120\n",
        "seed": 3,
        "split": "test",
        "source": "train",
        "source_sha256": mnist.sha256,
        "background": background,
    }
    with SplitWriter(
        path, count=count, width=WIDTH, max_length=MAX_LENGTH, attrs=attrs, chunk_samples=4
    ) as writer:
        writer.write(*samples.values())
    return path


def caption_strip(grid: Image.Image, index: int, columns: int, cell: tuple[int, int]) -> np.ndarray:
    """Return the RGB pixels of cell ``index``'s caption strip."""
    width, height = cell
    row, column = divmod(index, columns)
    left = PADDING + column * (width + PADDING)
    top = PADDING + row * (height + CAPTION_HEIGHT + PADDING) + height
    return np.asarray(grid)[top : top + CAPTION_HEIGHT, left : left + width]


# --- save_png ----------------------------------------------------------------------------------


def test_save_png_writes_round_value_times_255_as_8_bit_grayscale(tmp_path: Path) -> None:
    every_level = np.arange(256, dtype=np.float32) / np.float32(255)
    halves = (np.arange(256) + 0.5) / 255  # exact ties and their float neighbours
    noise = np.random.default_rng(0).random(256)
    image = np.stack([every_level, halves.clip(0, 1), noise] * 10).astype(np.float32)[:28]
    path = save_png(image, tmp_path / "0965.png")
    with Image.open(path) as png:
        assert (png.mode, png.size, png.format) == ("L", (256, 28), "PNG")
        pixels = np.asarray(png)
    expected = np.array([[round(float(value) * 255) for value in row] for row in image])
    np.testing.assert_array_equal(pixels, expected)
    np.testing.assert_array_equal(pixels[0], np.arange(256))
    assert [p.name for p in tmp_path.iterdir()] == ["0965.png"]


@pytest.mark.parametrize(
    ("image", "match"),
    [
        pytest.param(
            np.zeros((2, 28, 10)), "image has shape (2, 28, 10), expected (H, W)", id="3d"
        ),
        pytest.param(np.full((28, 10), 1.5), "image values must be in [0, 1]", id="above-one"),
        pytest.param(np.full((28, 10), np.nan), "image values must be in [0, 1]", id="nan"),
    ],
)
def test_save_png_rejects_bad_images_and_writes_nothing(
    tmp_path: Path, image: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        save_png(image, tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


# --- render_gallery ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "columns", "grid_cells"),
    [
        pytest.param(6, 3, (3, 2), id="full-rows"),
        pytest.param(5, 2, (2, 3), id="last-row-short"),
        pytest.param(2, 4, (2, 1), id="fewer-samples-than-columns"),
    ],
)
def test_gallery_is_an_rgb_grid_of_enlarged_cells(
    mnist: MnistSource, count: int, columns: int, grid_cells: tuple[int, int]
) -> None:
    samples = compose(mnist, count)
    images = samples["images"] / np.float32(255)
    grid = render_gallery(images, ["0123"] * count, scale=2, columns=columns)
    cell_width, cell_height = WIDTH * 2, 28 * 2
    grid_columns, grid_rows = grid_cells
    assert grid.mode == "RGB"
    assert grid.size == (
        PADDING + grid_columns * (cell_width + PADDING),
        PADDING + grid_rows * (cell_height + CAPTION_HEIGHT + PADDING),
    )
    pixels = np.asarray(grid)
    assert tuple(pixels[0, 0]) == CANVAS_COLOR  # the separation around and between cells
    # The first cell is the first sample, enlarged 2x by repeating pixels, shown as stored.
    cell = pixels[PADDING : PADDING + cell_height, PADDING : PADDING + cell_width, 0]
    enlarged = samples["images"][0].repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(cell, enlarged)


def test_gallery_prints_each_label_beneath_its_cell(mnist: MnistSource) -> None:
    images = compose(mnist, 3)["images"] / np.float32(255)
    grid = render_gallery(images, ["7", "0965", "12"], columns=3)
    for index in range(3):
        strip = caption_strip(grid, index, 3, (WIDTH * 2, 28 * 2))
        assert (strip != CAPTION_COLOR).any(axis=-1).sum() > 20  # glyph pixels, not blank


def test_gallery_caption_grows_with_the_label(mnist: MnistSource) -> None:
    images = compose(mnist, 2)["images"] / np.float32(255)
    grid = render_gallery(images, ["1", "1234"], columns=2)
    ink = [
        (caption_strip(grid, index, 2, (WIDTH * 2, 28 * 2)) != CAPTION_COLOR).any(axis=-1).sum()
        for index in range(2)
    ]
    assert ink[1] > 2 * ink[0]


def test_gallery_shows_white_background_files_as_stored(mnist: MnistSource) -> None:
    stored = compose(mnist, 2, background="white")["images"]
    assert stored.mean() > 128  # mostly paper
    grid = np.asarray(render_gallery(stored / np.float32(255), ["1", "2"], scale=1, columns=2))
    np.testing.assert_array_equal(
        grid[PADDING : PADDING + 28, PADDING : PADDING + WIDTH, 1], stored[0]
    )


def test_gallery_marks_wrong_predictions_in_red(mnist: MnistSource) -> None:
    images = compose(mnist, 2)["images"] / np.float32(255)
    grid = render_gallery(images, ["0965", "12"], predictions=["0965", "17"], columns=2)
    cell = (WIDTH * 2, 28 * 2)
    is_red = [
        (caption_strip(grid, index, 2, cell) == MISMATCH_COLOR).all(axis=-1).any()
        for index in range(2)
    ]
    assert is_red == [False, True]


@pytest.mark.parametrize(
    ("images", "labels", "options", "match"),
    [
        pytest.param(
            np.zeros((0, 28, 10)),
            [],
            {},
            "images has shape (0, 28, 10), expected (K, H, W) with K >= 1",
            id="empty",
        ),
        pytest.param(
            np.zeros((28, 10)),
            ["1"],
            {},
            "images has shape (28, 10), expected (K, H, W) with K >= 1",
            id="2d",
        ),
        pytest.param(
            np.zeros((2, 28, 10)),
            ["1"],
            {},
            "1 labels for 2 images, expected one each",
            id="labels",
        ),
        pytest.param(
            np.zeros((1, 28, 10)),
            ["1"],
            {"predictions": []},
            "0 predictions for 1 images, expected one each",
            id="predictions",
        ),
        pytest.param(
            np.zeros((1, 28, 10)),
            ["1"],
            {"scale": 0},
            "scale=0, expected an integer >= 1",
            id="scale",
        ),
        pytest.param(
            np.zeros((1, 28, 10)),
            ["1"],
            {"columns": 0},
            "columns=0, expected an integer >= 1",
            id="columns",
        ),
    ],
)
def test_gallery_rejects_bad_arguments(
    images: np.ndarray, labels: list[str], options: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        render_gallery(images, labels, **options)  # type: ignore[arg-type]


# --- render_gallery_file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "requested", "shown"),
    [
        pytest.param(10, 4, 4, id="first-samples"),
        pytest.param(3, 16, 3, id="file-smaller-than-count"),
    ],
)
def test_gallery_file_renders_the_first_samples_to_a_png(
    tmp_path: Path, mnist: MnistSource, stored: int, requested: int, shown: int
) -> None:
    h5_path = build_file(tmp_path / "test.h5", mnist, stored)
    output = render_gallery_file(h5_path, requested, tmp_path / "gallery.png")
    assert output == tmp_path / "gallery.png"
    with Image.open(output) as png:
        assert (png.format, png.mode) == ("PNG", "RGB")
        columns = (png.width - PADDING) // (WIDTH * 2 + PADDING)
        rows = (png.height - PADDING) // (28 * 2 + CAPTION_HEIGHT + PADDING)
        grid = png.copy()
    assert columns * rows >= shown > columns * (rows - 1)
    assert (caption_strip(grid, shown - 1, columns, (WIDTH * 2, 56)) != CAPTION_COLOR).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.png", "test.h5"]


def test_gallery_file_names_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "data.h5"
    bad.write_text("not hdf5")
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(str(bad))}: not an HDF5 file$"):
        render_gallery_file(bad, 4, tmp_path / "gallery.png")
    assert not (tmp_path / "gallery.png").exists()


def test_gallery_file_needs_at_least_one_sample(tmp_path: Path, mnist: MnistSource) -> None:
    h5_path = build_file(tmp_path / "test.h5", mnist, 2)
    with pytest.raises(ValueError, match=r"^count=0, expected at least 1 sample$"):
        render_gallery_file(h5_path, 0, tmp_path / "gallery.png")
