"""Turn images and labels into PNGs: one sample (``save_png``) or a labelled grid (gallery).

Usage::

    from seqbuilder.view.gallery import render_gallery, render_gallery_file, save_png

    save_png(image, "0965.png")                        # (28, W) float32 -> 8-bit grayscale
    render_gallery_file("train.h5", 16, "gallery.png")  # first 16 samples of a built file
    grid = render_gallery(images, labels, predictions=predicted)  # mismatches in red

Pixels are shown as stored: a ``background="white"`` file already holds dark ink on white, so
it appears that way. A grid is RGB so that captions can carry colour (a wrong prediction is red,
caption and frame); :mod:`seqbuilder.view.inspection` uses that to show what a model did.
Every file is written to ``<name>.tmp`` and renamed, so a PNG never appears half-written.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from .._atomic import atomic_path
from ..errors import InvalidValueError
from ..store.reader import SequenceDataset, read_samples

logger = logging.getLogger(__name__)

PADDING = 6  # pixels of canvas between cells and around the grid
FONT_SIZE = 14
CAPTION_HEIGHT = FONT_SIZE + 8  # one line of text and its margins
MAX_GRID_WIDTH = 1200  # default columns keep the grid about this wide

CANVAS_COLOR = (200, 200, 200)  # light grey: separates cells, even white-background ones
CAPTION_COLOR = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)
MISMATCH_COLOR = (200, 0, 0)
FRAME_WIDTH = 2  # pixels of the red frame around a mismatching cell, inside the padding

FontType = ImageFont.ImageFont | ImageFont.FreeTypeFont


def to_uint8(image: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.uint8]:
    """Return ``round(value * 255)`` of values in [0, 1] as uint8.

    Raises:
        ValueError: A value is outside [0, 1] or not finite.
    """
    values = np.asarray(image, dtype=np.float64)  # float64: k / 255 in float32 rounds back to k
    if values.size and not (values.min() >= 0.0 and values.max() <= 1.0):
        raise InvalidValueError("image values must be in [0, 1]")
    return np.rint(values * 255.0).astype(np.uint8)


def save_png(image: npt.NDArray[np.floating[Any]], path: str | os.PathLike[str]) -> Path:
    """Save a 2-D image as an 8-bit grayscale PNG, pixel = ``round(value * 255)``, atomically.

    Args:
        image: ``(H, W)`` float values in [0, 1], e.g. ``(28, W)`` float32.
        path: Where to write; replaced only once the PNG is complete.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``image`` is not 2-D or has values outside [0, 1].
    """
    if np.ndim(image) != 2:
        raise InvalidValueError(f"image has shape {np.shape(image)}, expected (H, W)")
    return save_image(Image.fromarray(to_uint8(image), mode="L"), Path(path))


def render_gallery(
    images: npt.NDArray[np.floating[Any]],
    labels: Sequence[str],
    *,
    scale: int = 2,
    columns: int | None = None,
    predictions: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
) -> Image.Image:
    """Lay samples out in a grid, each enlarged and captioned with its label.

    Args:
        images: ``(K, H, W)`` float values in [0, 1], shown as stored.
        labels: K captions, e.g. ``"0965"``.
        scale: Integer nearest-neighbour enlargement (>= 1).
        columns: Cells per row; by default as many as keep the grid about
            :data:`MAX_GRID_WIDTH` pixels wide.
        predictions: Optional K predicted labels; a caption then reads ``"0965 -> 0966"``, and
            where the prediction differs from the label the caption is red and a red frame
            surrounds the cell. An empty prediction is shown as ``(none)``.
        titles: Optional K texts put before each caption, e.g. ``"#17"`` for a sample index.

    Returns:
        An RGB image.

    Raises:
        ValueError: ``images`` is not 3-D or empty, lengths disagree, ``scale`` or ``columns``
            is below 1, or a value is outside [0, 1].
    """
    count = _check_gallery_args(images, labels, scale, columns, predictions)
    if titles is not None and len(titles) != count:
        raise InvalidValueError(f"{len(titles)} titles for {count} images, expected one each")
    cell_height, cell_width = images.shape[1] * scale, images.shape[2] * scale
    font = _font()
    captions = _captions(labels, predictions, titles)
    cell_width = max(cell_width, *(_text_width(font, text) + 4 for text, _ in captions))
    if columns is None:
        columns = max(1, (MAX_GRID_WIDTH - PADDING) // (cell_width + PADDING))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    grid = Image.new(
        "RGB",
        (
            PADDING + columns * (cell_width + PADDING),
            PADDING + rows * (cell_height + CAPTION_HEIGHT + PADDING),
        ),
        CANVAS_COLOR,
    )
    draw = ImageDraw.Draw(grid)
    pixels = to_uint8(images)
    for index, (text, color) in enumerate(captions):
        row, column = divmod(index, columns)
        left = PADDING + column * (cell_width + PADDING)
        top = PADDING + row * (cell_height + CAPTION_HEIGHT + PADDING)
        _paste_tile(grid, pixels[index], (left, top), cell_width, scale)
        caption_box = (
            left,
            top + cell_height,
            left + cell_width - 1,
            top + cell_height + CAPTION_HEIGHT - 1,
        )
        draw.rectangle(caption_box, fill=CAPTION_COLOR)
        draw.text((left + 2, top + cell_height + 3), text, fill=color, font=font)
        if color == MISMATCH_COLOR:  # a frame in the padding, so errors stand out in a big grid
            frame = (left - 3, top - 3, caption_box[2] + 3, caption_box[3] + 3)
            draw.rectangle(frame, outline=MISMATCH_COLOR, width=FRAME_WIDTH)
    return grid


def render_gallery_file(
    h5_path: str | os.PathLike[str], count: int, output: str | os.PathLike[str]
) -> Path:
    """Render the first ``count`` samples of a built file (fewer if it is smaller) to a PNG.

    Args:
        h5_path: A ``<split>.h5`` file written by seqbuilder.
        count: How many samples to show (>= 1).
        output: The PNG to write, atomically.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``count`` is below 1.
        DatasetFormatError: ``h5_path`` is not a valid seqbuilder file.
    """
    if count < 1:
        raise InvalidValueError(f"count={count!r}, expected at least 1 sample")
    with SequenceDataset(h5_path) as dataset:
        shown = min(count, len(dataset))
    if shown == 0:
        raise InvalidValueError(
            f"{os.fspath(h5_path)}: holds no samples, so there is nothing to show"
        )
    images, labels = read_samples(h5_path, range(shown))
    path = save_image(render_gallery(images, labels), Path(output))
    logger.info("wrote gallery of %d samples from %s to %s", shown, h5_path, path)
    return path


def _check_gallery_args(
    images: npt.NDArray[np.floating[Any]],
    labels: Sequence[str],
    scale: int,
    columns: int | None,
    predictions: Sequence[str] | None,
) -> int:
    if np.ndim(images) != 3 or len(images) == 0:
        raise InvalidValueError(
            f"images has shape {np.shape(images)}, expected (K, H, W) with K >= 1"
        )
    count = len(images)
    if len(labels) != count:
        raise InvalidValueError(f"{len(labels)} labels for {count} images, expected one each")
    if predictions is not None and len(predictions) != count:
        raise InvalidValueError(
            f"{len(predictions)} predictions for {count} images, expected one each"
        )
    if scale < 1:
        raise InvalidValueError(f"scale={scale!r}, expected an integer >= 1")
    if columns is not None and columns < 1:
        raise InvalidValueError(f"columns={columns!r}, expected an integer >= 1")
    return count


def _captions(
    labels: Sequence[str], predictions: Sequence[str] | None, titles: Sequence[str] | None
) -> list[tuple[str, tuple[int, int, int]]]:
    prefixes = [""] * len(labels) if titles is None else [f"{title}: " for title in titles]
    if predictions is None:
        return [
            (f"{prefix}{label}", TEXT_COLOR) for prefix, label in zip(prefixes, labels, strict=True)
        ]
    return [
        (
            f"{prefix}{label} -> {guess or '(none)'}",
            TEXT_COLOR if str(guess) == str(label) else MISMATCH_COLOR,
        )
        for prefix, label, guess in zip(prefixes, labels, predictions, strict=True)
    ]


def _paste_tile(
    grid: Image.Image,
    pixels: npt.NDArray[np.uint8],
    corner: tuple[int, int],
    width: int,
    scale: int,
) -> None:
    # Centred in its cell: a caption wider than the sample widens the cell, not the sample.
    tile = Image.fromarray(pixels, mode="L")
    tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
    grid.paste(tile.convert("RGB"), (corner[0] + (width - tile.width) // 2, corner[1]))


def _font() -> FontType:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_width(font: FontType, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return math.ceil(right - left)


def save_image(image: Image.Image, path: Path) -> Path:
    """Write ``image`` as a PNG at ``path``, atomically.

    Raises:
        OutputError: the folder is missing or the file cannot be written.
    """
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")
    return path
