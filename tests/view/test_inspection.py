"""Inspecting models in the gallery: a predictions CSV over a built file, and generated .npy arrays.

The built file is the session's tiny build (``test.h5``: 50 samples of 28 x 200). Which cells are
marked is read back from the PNG's pixels: a mismatching cell has red caption text and a red frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqbuilder.cli import main
from seqbuilder.errors import InputError
from seqbuilder.store.reader import read_labels, read_samples
from seqbuilder.view.gallery import (
    CAPTION_COLOR,
    CAPTION_HEIGHT,
    MAX_GRID_WIDTH,
    MISMATCH_COLOR,
    PADDING,
    TEXT_COLOR,
)
from seqbuilder.view.inspection import (
    load_label_array,
    load_sample_array,
    parse_indices,
    read_predictions,
    render_inspection,
)

WIDTH, SCALE = 200, 2
CELL = (WIDTH * SCALE, 28 * SCALE)  # (width, height) of a sample's tile
COLUMNS = (MAX_GRID_WIDTH - PADDING) // (CELL[0] + PADDING)


@pytest.fixture
def test_h5(tiny_run_dir: Path) -> Path:
    return tiny_run_dir / "test.h5"


@pytest.fixture
def truth(test_h5: Path) -> list[str]:
    return read_labels(test_h5)


def write_csv(path: Path, rows: dict[int, str] | list[str]) -> Path:
    items = rows.items() if isinstance(rows, dict) else enumerate(rows)
    path.write_text("index,prediction\n" + "".join(f"{i},{p}\n" for i, p in items))
    return path


def wrong(label: str) -> str:
    """A prediction that differs from ``label`` in its first digit."""
    return str((int(label[0]) + 1) % 10) + label[1:]


def cell_origin(index: int) -> tuple[int, int]:
    """The (left, top) pixel of grid cell ``index``."""
    row, column = divmod(index, COLUMNS)
    return PADDING + column * (CELL[0] + PADDING), PADDING + row * (
        CELL[1] + CAPTION_HEIGHT + PADDING
    )


def caption(grid: np.ndarray, index: int) -> np.ndarray:
    left, top = cell_origin(index)
    return grid[top + CELL[1] : top + CELL[1] + CAPTION_HEIGHT, left : left + CELL[0]]


def has_color(pixels: np.ndarray, color: tuple[int, int, int]) -> bool:
    return bool((pixels == color).all(axis=-1).any())


def red_cells(png: Path, cells: int) -> list[int]:
    """Indices of the grid cells whose caption text is red."""
    grid = np.asarray(Image.open(png).convert("RGB"))
    return [index for index in range(cells) if has_color(caption(grid, index), MISMATCH_COLOR)]


def grid_cells(png: Path) -> int:
    """How many rows x columns of cells the grid has room for."""
    with Image.open(png) as image:
        columns = (image.width - PADDING) // (CELL[0] + PADDING)
        rows = (image.height - PADDING) // (CELL[1] + CAPTION_HEIGHT + PADDING)
    return rows * columns


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("seqbuilder: error: "), err
    return err


# --- predictions CSV over a built file ----------------------------------------------------------


def test_prediction_mode_marks_exactly_the_mismatching_samples_in_red(
    test_h5: Path, truth: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = list(truth)
    for index in (1, 4, 7):
        predictions[index] = wrong(truth[index])
    predictions[9] = ""  # no digits read at all is a mismatch too
    csv_path = write_csv(tmp_path / "preds.csv", predictions)
    output = tmp_path / "grid.png"

    code = main(
        [
            "gallery",
            str(test_h5),
            "--predictions",
            str(csv_path),
            "--count",
            "10",
            "--output",
            str(output),
        ]
    )

    assert code == 0
    assert capsys.readouterr().out == (
        f"4 of 50 predictions wrong (92.00% right); showing 10\n{output}\n"
    )
    assert red_cells(output, 10) == [1, 4, 7, 9]
    grid = np.asarray(Image.open(output).convert("RGB"))
    for index in range(10):  # right ones keep black text; wrong ones get a red frame too
        left, top = cell_origin(index)
        assert has_color(caption(grid, index), TEXT_COLOR) == (index not in (1, 4, 7, 9))
        assert tuple(grid[top + 10, left - 2]) == (
            MISMATCH_COLOR if index in (1, 4, 7, 9) else (200, 200, 200)
        )


def test_errors_only_shows_only_the_mismatches_in_index_order(
    test_h5: Path, truth: list[str], tmp_path: Path
) -> None:
    wrong_at = [3, 17, 42]
    predictions = {i: wrong(label) if i in wrong_at else label for i, label in enumerate(truth)}
    csv_path = write_csv(tmp_path / "preds.csv", dict(reversed(predictions.items())))

    result = render_inspection(
        test_h5, tmp_path / "errors.png", predictions=csv_path, errors_only=True
    )

    assert result.shown == wrong_at
    assert (result.total, result.predicted, result.mismatches) == (50, 50, 3)
    assert grid_cells(result.path) == 4  # 3 cells, 2 per row
    assert red_cells(result.path, 3) == [0, 1, 2]
    images, _ = read_samples(test_h5, wrong_at)
    grid = np.asarray(Image.open(result.path).convert("L"))
    for cell, image in enumerate(images):
        left, top = cell_origin(cell)
        tile = grid[top : top + CELL[1], left : left + CELL[0]]
        expected = np.rint(image * 255).repeat(SCALE, axis=0).repeat(SCALE, axis=1)
        np.testing.assert_array_equal(tile, expected)


def test_a_csv_covering_some_samples_shows_only_those(
    test_h5: Path, truth: list[str], tmp_path: Path
) -> None:
    csv_path = write_csv(tmp_path / "preds.csv", {30: truth[30], 8: wrong(truth[8])})

    result = render_inspection(test_h5, tmp_path / "grid.png", predictions=csv_path)

    assert (result.shown, result.predicted, result.mismatches) == ([8, 30], 2, 1)
    assert red_cells(result.path, 2) == [0]


def test_indices_pick_the_samples_in_the_order_given(test_h5: Path, tmp_path: Path) -> None:
    output = tmp_path / "picked.png"

    code = main(["gallery", str(test_h5), "--indices", "5,1-2,49", "--output", str(output)])

    assert code == 0
    assert grid_cells(output) == 4
    images, _ = read_samples(test_h5, [5, 1, 2, 49])
    grid = np.asarray(Image.open(output).convert("L"))
    for cell, image in enumerate(images):
        left, top = cell_origin(cell)
        np.testing.assert_array_equal(
            grid[top : top + CELL[1] : SCALE, left : left + CELL[0] : SCALE],
            np.rint(image * 255),
        )


def test_indices_with_predictions_show_the_listed_samples_even_past_count(
    test_h5: Path, truth: list[str], tmp_path: Path
) -> None:
    predictions = [wrong(label) for label in truth]
    csv_path = write_csv(tmp_path / "preds.csv", predictions)

    result = render_inspection(
        test_h5, tmp_path / "g.png", predictions=csv_path, indices=[0, 1, 2], count=1
    )

    assert result.shown == [0, 1, 2]
    assert red_cells(result.path, 3) == [0, 1, 2]


def test_the_recognizer_csv_format_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("index,prediction\r\n2,0965\r\n0,\r\n\r\n1,007\r\n")

    assert read_predictions(path, 3) == {2: "0965", 0: "", 1: "007"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("3,17,42", [3, 17, 42], id="list"),
        pytest.param("0-3", [0, 1, 2, 3], id="range-inclusive"),
        pytest.param(" 7 , 2-3 ", [7, 2, 3], id="spaces"),
        pytest.param("4-4", [4], id="one-long-range"),
    ],
)
def test_parse_indices(text: str, expected: list[int]) -> None:
    assert parse_indices(text) == expected


CSV_ERRORS = [
    pytest.param(
        "index,prediction\n50,123\n",
        "preds.csv:2: index 50 is out of range for the 50 samples of ",
        id="index-out-of-range",
    ),
    pytest.param(
        "idx,pred\n0,1\n",
        "preds.csv: first line is 'idx,pred', expected index,prediction",
        id="bad-header",
    ),
    pytest.param("", "preds.csv: first line is '', expected index,prediction", id="empty"),
    pytest.param(
        "index,prediction\n0,1,2\n",
        "preds.csv:2: 3 fields ['0', '1', '2'], expected index,prediction",
        id="three-fields",
    ),
    pytest.param(
        "index,prediction\nzero,1\n",
        "preds.csv:2: index 'zero' is not a non-negative integer",
        id="index-not-integer",
    ),
    pytest.param(
        "index,prediction\n-1,1\n",
        "preds.csv:2: index '-1' is not a non-negative integer",
        id="negative-index",
    ),
    pytest.param(
        "index,prediction\n0,1\n1,2\n0,3\n",
        "preds.csv:4: index 0 appears twice",
        id="duplicate",
    ),
    pytest.param(
        "index,prediction\n0,12a\n",
        "preds.csv:2: prediction '12a' is not a string of digits",
        id="prediction-not-digits",
    ),
]


@pytest.mark.parametrize(("content", "match"), CSV_ERRORS)
def test_a_bad_predictions_csv_exits_2_with_one_line_naming_it(
    test_h5: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    match: str,
) -> None:
    csv_path = tmp_path / "preds.csv"
    csv_path.write_text(content)
    output = tmp_path / "g.png"

    code = main(["gallery", str(test_h5), "--predictions", str(csv_path), "--output", str(output)])

    assert code == 2
    assert match in one_error_line(capsys)
    assert not output.exists()


def test_a_csv_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "preds.csv"
    path.write_bytes(b"index,prediction\n\xff\xfe\x00\n")
    with pytest.raises(ValueError, match=r"preds\.csv: not UTF-8 text \(.*\), expected a CSV$"):
        read_predictions(path, 3)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param(["--errors-only"], "--errors-only needs --predictions CSV", id="errors-only"),
        pytest.param(
            ["--indices", "3-x"],
            "indices '3-x': '3-x' is not an index or a range such as 40-49",
            id="bad-indices",
        ),
        pytest.param(
            ["--indices", "9-2"], "indices '9-2': range '9-2' runs backwards", id="backwards"
        ),
        pytest.param(
            ["--indices", "2,50"], "index 50 is out of range for the 50 samples of", id="index-50"
        ),
        pytest.param(
            ["--labels", "labels.npy"],
            "labels are for a .npy source; ",
            id="labels-for-h5",
        ),
    ],
)
def test_bad_gallery_options_exit_2_with_one_line(
    test_h5: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    match: str,
) -> None:
    code = main(["gallery", str(test_h5), *options, "--output", str(tmp_path / "g.png")])

    assert code == 2
    assert match in one_error_line(capsys)


def test_an_index_without_a_prediction_is_an_error(test_h5: Path, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "preds.csv", {0: "1"})
    with pytest.raises(ValueError, match=r"^index 3 has no prediction in the predictions CSV$"):
        render_inspection(test_h5, tmp_path / "g.png", predictions=csv_path, indices=[0, 3])


def test_errors_only_with_no_errors_says_so(
    test_h5: Path, truth: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = write_csv(tmp_path / "preds.csv", truth)
    output = tmp_path / "g.png"

    code = main(
        [
            "gallery",
            str(test_h5),
            "--predictions",
            str(csv_path),
            "--errors-only",
            "--output",
            str(output),
        ]
    )

    assert code == 2
    assert "nothing to show: every one of the 50 predictions matches its label" in (
        one_error_line(capsys)
    )
    assert not output.exists()


# --- generated samples (.npy) -------------------------------------------------------------------


def generated(count: int = 5, width: int = 64) -> np.ndarray:
    """``count`` float32 samples in [0, 1], each different."""
    rng = np.random.default_rng(0)
    return rng.random((count, 28, width), dtype=np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8"])
def test_npy_mode_renders_float_and_uint8_arrays_as_stored(tmp_path: Path, dtype: str) -> None:
    images = generated()
    array = np.rint(images * 255).astype(np.uint8) if dtype == "uint8" else images.astype(dtype)
    np.save(tmp_path / "samples.npy", array)
    output = tmp_path / "samples.png"

    code = main(["gallery", str(tmp_path / "samples.npy"), "--output", str(output)])

    assert code == 0
    expected = np.rint(np.asarray(array, np.float64) * (1 if dtype == "uint8" else 255))
    with Image.open(output) as png:
        grid = np.asarray(png.convert("L"))
    cell_width = max(64 * SCALE, 0)
    # captions are just "#i: " here, narrower than a 128-pixel tile
    columns = (grid.shape[1] - PADDING) // (cell_width + PADDING)
    for index in range(len(array)):
        row, column = divmod(index, columns)
        left = PADDING + column * (cell_width + PADDING)
        top = PADDING + row * (CELL[1] + CAPTION_HEIGHT + PADDING)
        np.testing.assert_array_equal(
            grid[top : top + CELL[1] : SCALE, left : left + cell_width : SCALE], expected[index]
        )


def test_npy_mode_accepts_a_channel_axis_and_labels_of_both_kinds(tmp_path: Path) -> None:
    np.save(tmp_path / "samples.npy", generated(3)[:, None])
    padded = np.array([[0, 9, 6, 5], [3, 1, -1, -1], [7, -1, -1, -1]])
    np.save(tmp_path / "padded.npy", padded)
    np.save(tmp_path / "strings.npy", np.array(["0965", "31", "7"]))

    assert load_sample_array(tmp_path / "samples.npy").shape == (3, 28, 64)
    assert load_label_array(tmp_path / "padded.npy", 3) == ["0965", "31", "7"]
    assert load_label_array(tmp_path / "strings.npy", 3) == ["0965", "31", "7"]
    result = render_inspection(
        tmp_path / "samples.npy", tmp_path / "g.png", labels=tmp_path / "padded.npy"
    )
    assert result.shown == [0, 1, 2]


def test_npy_samples_can_be_compared_with_a_recogniser_s_predictions(tmp_path: Path) -> None:
    np.save(tmp_path / "samples.npy", generated(3))
    np.save(tmp_path / "labels.npy", np.array(["12", "34", "56"]))
    csv_path = write_csv(tmp_path / "preds.csv", ["12", "35", "56"])

    result = render_inspection(
        tmp_path / "samples.npy",
        tmp_path / "g.png",
        labels=tmp_path / "labels.npy",
        predictions=csv_path,
        errors_only=True,
    )

    assert (result.shown, result.mismatches) == ([1], 1)


NPY_ERRORS = [
    pytest.param(np.zeros((2, 28)), "array of shape (2, 28), expected (N, 28, W)", id="2d"),
    pytest.param(
        np.zeros((2, 27, 30)), "array of shape (2, 27, 30), expected (N, 28, W)", id="height"
    ),
    pytest.param(
        np.zeros((0, 28, 30)), "array of shape (0, 28, 30), expected (N, 28, W)", id="empty"
    ),
    pytest.param(
        np.zeros((2, 28, 30), np.int64),
        "dtype int64, expected uint8 or float values in [0, 1]",
        id="int64",
    ),
    pytest.param(
        np.full((2, 28, 30), -1.0),
        "values span [-1, -1], expected float values in [0, 1] (for a tanh output in [-1, 1], "
        "save (x + 1) / 2)",
        id="tanh-range",
    ),
    pytest.param(
        np.full((2, 28, 30), 255.0),
        "values span [255, 255], expected float values in [0, 1]",
        id="float-0-255",
    ),
    pytest.param(
        np.full((2, 28, 30), np.nan), "values span [nan, nan], expected float values", id="nan"
    ),
    pytest.param(
        np.array([None, 1], dtype=object), "not a numpy .npy array (", id="pickled-objects"
    ),
]


@pytest.mark.parametrize(("array", "match"), NPY_ERRORS)
def test_a_bad_sample_array_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray, match: str
) -> None:
    np.save(tmp_path / "samples.npy", array, allow_pickle=True)

    code = main(["gallery", str(tmp_path / "samples.npy"), "--output", str(tmp_path / "g.png")])

    assert code == 2
    err = one_error_line(capsys)
    assert f"samples.npy: {match}" in err
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        pytest.param(
            np.zeros((4, 2), np.int64),
            "labels of shape (4, 2), expected (3, L) padded digits or (3,) labels",
            id="length",
        ),
        pytest.param(np.array([[1, 12], [1, 2], [3, -1]]), "a digit is 12, expected 0..9", id="12"),
        pytest.param(np.zeros(3), "labels of dtype float64, expected integers", id="float"),
        pytest.param(np.array([1, -2, 3]), "a label is -2, expected labels >= 0", id="negative"),
    ],
)
def test_bad_labels_are_named(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(ValueError, match=re.escape(f"labels.npy: {match}")):
        load_label_array(tmp_path / "labels.npy", 3)


def test_npz_and_missing_files_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "samples.npz", a=generated())
    with pytest.raises(ValueError, match=r"samples\.npz: holds several arrays \(\.npz\)"):
        load_sample_array(tmp_path / "samples.npz")
    with pytest.raises(InputError, match=r"nothing\.npy: no such file$"):
        load_sample_array(tmp_path / "nothing.npy")


def test_npy_captions_show_the_sample_index_without_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "samples.npy", generated(2))
    result = render_inspection(tmp_path / "samples.npy", tmp_path / "g.png", indices=[1])
    grid = np.asarray(Image.open(result.path).convert("RGB"))
    strip = grid[PADDING + CELL[1] : PADDING + CELL[1] + CAPTION_HEIGHT, PADDING : PADDING + 128]
    assert result.shown == [1]
    assert (strip != CAPTION_COLOR).any(axis=-1).sum() > 10  # "#1:" is drawn
