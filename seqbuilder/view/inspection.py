"""Show what a model did with a dataset, or what a generative model made, as a gallery.

Two sources, one grid (:func:`seqbuilder.view.gallery.render_gallery`):

- a built ``<split>.h5`` with a recogniser's predictions CSV (``index,prediction`` rows, as
  ``examples/train_recognizer.py`` writes): each cell reads ``#17: 0965 -> 0966``, red with a
  red frame where the prediction is wrong; ``errors_only`` keeps only those;
- a ``.npy`` array of generated images ``(N, 28, W)``, uint8 or float in [0, 1], with optional
  labels (``(N, L)`` -1-padded digits or ``(N,)`` strings).

Usage::

    from seqbuilder.view.inspection import parse_indices, render_inspection

    render_inspection("test.h5", "errors.png", predictions="preds.csv", errors_only=True)
    render_inspection("samples.npy", "samples.png", labels="labels.npy",
                      indices=parse_indices("0-15"))

Every user mistake (a malformed CSV or array, an index out of range) is a one-line
``ValueError`` naming the file and, for a CSV, the line.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError, InvalidValueError
from ..store.reader import read_labels, read_samples
from ..store.schema import HEIGHT
from .gallery import render_gallery, save_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inspection:
    """What :func:`render_inspection` drew.

    Attributes:
        path: The PNG written.
        shown: Indices of the samples in the grid, in grid order.
        total: Samples in the source file or array.
        predicted: Samples that have a prediction (0 without a predictions CSV).
        mismatches: Predictions that differ from their label.
    """

    path: Path
    shown: list[int]
    total: int
    predicted: int
    mismatches: int


def render_inspection(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    count: int = 32,
    predictions: str | os.PathLike[str] | None = None,
    errors_only: bool = False,
    indices: Sequence[int] | None = None,
    labels: str | os.PathLike[str] | None = None,
) -> Inspection:
    """Render samples with what a model made of them, or samples a model made, to a PNG.

    ``source`` is a built ``<split>.h5`` or a ``.npy`` array of generated images (see
    :func:`load_sample_array`). Each cell's caption starts with the sample's index. Which
    samples are shown: ``indices`` if given (all of them, in that order), else the first
    ``count``; with ``predictions`` only samples the CSV covers, and with ``errors_only`` only
    those whose prediction differs from the label.

    Args:
        source: A ``.h5`` file written by seqbuilder, or a ``.npy`` array ``(N, 28, W)``.
        output: The PNG to write, atomically.
        count: How many samples to show when ``indices`` is not given (>= 1).
        predictions: A CSV of ``index,prediction`` rows (see :func:`read_predictions`);
            captions then read ``"#17: 0965 -> 0966"``, red with a red frame where they differ.
        errors_only: Show only the samples whose prediction differs from the label.
        indices: Sample indices to show, e.g. ``parse_indices("3,17,40-49")``.
        labels: For a ``.npy`` source, a ``.npy`` array of its labels
            (see :func:`load_label_array`); a ``.h5`` file has its own.

    Returns:
        An :class:`Inspection`.

    Raises:
        ValueError: A bad argument or file: ``count`` below 1, an index out of range, an index
            without a prediction, a malformed CSV or array, ``errors_only`` without
            ``predictions``, predictions without labels, labels for a ``.h5`` source, or no
            sample left to show.
        DatasetFormatError: ``source`` is not a valid seqbuilder file.
    """
    if count < 1:
        raise InvalidValueError(f"count={count!r}, expected at least 1 sample")
    if errors_only and predictions is None:
        raise InvalidValueError("errors_only needs predictions: a CSV of index,prediction rows")
    name = os.fspath(source)
    is_array = Path(source).suffix.lower() == ".npy"
    if labels is not None and not is_array:
        raise InvalidValueError(f"labels are for a .npy source; {name} holds its own labels")
    images: npt.NDArray[np.float32] | None = None
    if is_array:
        images = load_sample_array(source)
        total = len(images)
        truth = load_label_array(labels, total) if labels is not None else None
    else:
        truth = read_labels(source)
        total = len(truth)
    guesses = None if predictions is None else read_predictions(predictions, total, name)
    if guesses is not None and truth is None:
        raise InvalidValueError(
            f"predictions need labels to compare with: give the labels of {name} (--labels)"
        )
    chosen = _choose(name, total, count, indices, guesses, truth if errors_only else None)
    if images is None:
        shown_images, shown_labels = read_samples(source, chosen)
    else:
        shown_images = images[chosen]
        shown_labels = [truth[i] for i in chosen] if truth is not None else [""] * len(chosen)
    grid = render_gallery(
        shown_images,
        shown_labels,
        predictions=None if guesses is None else [guesses[i] for i in chosen],
        titles=[f"#{index}" for index in chosen],
    )
    path = save_image(grid, Path(output))
    mismatches = 0
    if guesses is not None and truth is not None:
        mismatches = sum(guess != truth[index] for index, guess in guesses.items())
    logger.info("wrote %d samples of %s to %s", len(chosen), name, path)
    return Inspection(path, chosen, total, 0 if guesses is None else len(guesses), mismatches)


def parse_indices(text: str) -> list[int]:
    """Parse a list of sample indices such as ``"3,17,42"`` or ``"0-9,20"`` (ranges inclusive).

    Raises:
        ValueError: A part is not a non-negative integer or an ``a-b`` range with ``a <= b``.
    """
    indices: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise InvalidValueError(
                f"indices {text!r}: {part.strip()!r} is not an index or a range such as 40-49"
            )
        start, stop = int(first), int(last) if dash else int(first)
        if stop < start:
            raise InvalidValueError(f"indices {text!r}: range {part.strip()!r} runs backwards")
        indices.extend(range(start, stop + 1))
    return indices


def read_predictions(
    path: str | os.PathLike[str], total: int, source: str = "the source"
) -> dict[int, str]:
    """Read a predictions CSV: a header ``index,prediction``, then one row per predicted sample.

    ``index`` is a sample's index in the source (0-based); ``prediction`` the predicted digits,
    possibly empty. Rows may come in any order and cover any subset of the samples.

    Args:
        path: The CSV file.
        total: Samples in the source; every index must be below it.
        source: The source's name, for messages.

    Returns:
        ``{index: prediction}``.

    Raises:
        ValueError: The file is unreadable, empty, not UTF-8, lacks the header, or a row has
            the wrong number of fields, a non-integer, repeated or out-of-range index, or a
            prediction that is not digits.
    """
    name = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except UnicodeDecodeError as error:
        raise InvalidValueError(
            f"{name}: not UTF-8 text ({error.reason}), expected a CSV"
        ) from None
    except OSError as error:
        raise InputError(f"{name}: cannot read ({error.strerror or error})") from None
    header = [field.strip() for field in rows[0]] if rows else []
    if header != ["index", "prediction"]:
        raise InvalidValueError(
            f"{name}: first line is {','.join(header)!r}, expected index,prediction"
        )
    predictions: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        where = f"{name}:{line}"
        if len(row) != 2:
            raise InvalidValueError(
                f"{where}: {len(row)} fields {row!r}, expected index,prediction"
            )
        text, guess = row[0].strip(), row[1].strip()
        if not text.isdigit():
            raise InvalidValueError(f"{where}: index {text!r} is not a non-negative integer")
        index = int(text)
        if index >= total:
            raise InvalidValueError(
                f"{where}: index {index} is out of range for the {total} samples of {source}"
            )
        if index in predictions:
            raise InvalidValueError(f"{where}: index {index} appears twice")
        if guess and not (guess.isascii() and guess.isdigit()):
            raise InvalidValueError(f"{where}: prediction {guess!r} is not a string of digits")
        predictions[index] = guess
    return predictions


def load_sample_array(path: str | os.PathLike[str]) -> npt.NDArray[np.float32]:
    """Load a ``.npy`` array of generated samples as float32 images in [0, 1].

    Accepts ``(N, 28, W)`` (or ``(N, 1, 28, W)``, a channel axis) uint8 (value / 255) or
    floating point values in [0, 1].

    Returns:
        ``(N, 28, W)`` float32 in [0, 1].

    Raises:
        ValueError: The file is not a numpy array, or the array has another shape, another
            dtype, values outside [0, 1] or non-finite values.
    """
    array = _load_npy(path)
    name = os.fspath(path)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1] != HEIGHT or 0 in array.shape:
        raise InvalidValueError(
            f"{name}: array of shape {array.shape}, expected (N, 28, W) with N >= 1"
        )
    if array.dtype == np.uint8:
        scaled: npt.NDArray[np.float32] = np.divide(array, 255, dtype=np.float32)
        return scaled
    if array.dtype.kind != "f":
        raise InvalidValueError(
            f"{name}: dtype {array.dtype}, expected uint8 or float values in [0, 1]"
        )
    low, high = float(np.min(array)), float(np.max(array))
    if not (low >= 0.0 and high <= 1.0):  # also false for NaN
        hint = " (for a tanh output in [-1, 1], save (x + 1) / 2)" if low < 0 else ""
        raise InvalidValueError(
            f"{name}: values span [{low:g}, {high:g}], expected float values in [0, 1]{hint}"
        )
    images: npt.NDArray[np.float32] = array.astype(np.float32)  # (N, 28, W)
    return images


def load_label_array(path: str | os.PathLike[str], total: int) -> list[str]:
    """Load a ``.npy`` array of labels, one per sample, as digit strings.

    Accepts ``(N, L)`` integers, digits 0..9 padded with a negative value such as -1 (the
    ``labels`` layout of a built file), ``(N,)`` non-negative integers (each shown in decimal)
    or ``(N,)`` strings.

    Args:
        path: The ``.npy`` file.
        total: N, the number of samples the labels belong to.

    Returns:
        N strings, e.g. ``["0965", "31"]``.

    Raises:
        ValueError: The file is not a numpy array, or the array has the wrong length, shape or
            dtype, or holds a digit above 9 or a negative single label.
    """
    array = _load_npy(path)
    name = os.fspath(path)
    if array.ndim not in (1, 2) or len(array) != total:
        raise InvalidValueError(
            f"{name}: labels of shape {array.shape}, expected ({total}, L) padded digits or "
            f"({total},) labels, one per sample"
        )
    if array.dtype.kind in "US":
        return [value.decode() if isinstance(value, bytes) else str(value) for value in array]
    if array.dtype.kind not in "iu":
        raise InvalidValueError(
            f"{name}: labels of dtype {array.dtype}, expected integers or strings"
        )
    if array.ndim == 1:
        if array.size and int(array.min()) < 0:
            raise InvalidValueError(f"{name}: a label is {int(array.min())}, expected labels >= 0")
        return [str(int(value)) for value in array]
    if array.size and int(array.max()) > 9:
        raise InvalidValueError(
            f"{name}: a digit is {int(array.max())}, expected 0..9 (or -1 padding)"
        )
    return ["".join(str(int(digit)) for digit in row if digit >= 0) for row in array]


def _load_npy(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    name = os.fspath(path)
    try:
        # allow_pickle=False: a .npy from elsewhere must not run code when loaded.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except (OSError, ValueError, EOFError) as error:
        raise InvalidValueError(f"{name}: not a numpy .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise InvalidValueError(f"{name}: holds several arrays (.npz), expected one .npy array")
    return array


def _choose(
    name: str,
    total: int,
    count: int,
    indices: Sequence[int] | None,
    predictions: dict[int, str] | None,
    errors_of: Sequence[str] | None,
) -> list[int]:
    """Pick the samples to show; see :func:`render_inspection`."""
    if indices is not None:
        bad = [index for index in indices if not 0 <= index < total]
        if bad:
            raise InvalidValueError(
                f"index {bad[0]} is out of range for the {total} samples of {name}"
            )
        missing = [
            index for index in indices if predictions is not None and index not in predictions
        ]
        if missing:
            raise InvalidValueError(f"index {missing[0]} has no prediction in the predictions CSV")
        chosen = list(indices)
    else:
        chosen = sorted(predictions) if predictions is not None else list(range(total))
    if errors_of is not None and predictions is not None:
        chosen = [index for index in chosen if predictions[index] != errors_of[index]]
    if indices is None:
        chosen = chosen[:count]
    if not chosen:
        raise InvalidValueError(
            f"nothing to show: every one of the {len(predictions or {})} predictions matches "
            "its label"
            if errors_of is not None
            else f"nothing to show: {name} holds no samples"
        )
    return chosen
