"""The examples, trained at a tiny size on the session's tiny build, as a user runs them.

The recogniser trains (one epoch, 200 samples) and saves its weights; the generator trains (one
epoch of the same samples' glyphs), saves, and draws test strings and strings given on the
command line; the saved recogniser reads the drawn samples; the gallery draws its readings.
Each script runs as a subprocess; the scripts are also imported as modules to test their parts.

torch comes from the ``examples`` extra, which CI installs; without it these tests fail (a skip
would prove nothing), saying how to install it.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import h5py
import numpy as np
import pytest

from seqbuilder.cli import main
from seqbuilder.store.reader import read_labels

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = EXAMPLES / "train_recognizer.py"
GENERATOR = EXAMPLES / "train_generator.py"
NO_TORCH = "torch is not installed: pip install -e '.[examples]' (torch==2.13.0, CPU)"


def _import_script(path: Path) -> ModuleType:
    if importlib.util.find_spec("torch") is None:
        pytest.fail(NO_TORCH)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recognizer() -> ModuleType:
    """The recogniser script imported as a module (it needs torch)."""
    return _import_script(SCRIPT)


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """The generator script imported as a module (it needs torch)."""
    return _import_script(GENERATOR)


def run_script(*command: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``python COMMAND...`` and check its exit status."""
    result = subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=300, check=False
    )
    if "No module named 'torch'" in result.stderr:
        pytest.fail(NO_TORCH)
    assert result.returncode == status, result.stderr
    return result


def train(run_dir: Path, predictions: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the recogniser on the tiny build: 200 train samples, one epoch, one worker process."""
    return run_script(
        str(SCRIPT),
        "--train", str(run_dir / "train.h5"),
        "--test", str(run_dir / "test.h5"),
        "--epochs", "1",
        "--batch-size", "32",
        "--workers", "1",
        "--threads", "1",
        "--predictions", str(predictions),
        *options,
    )  # fmt: skip


class Run(NamedTuple):
    """A finished run of the recogniser: its output, predictions CSV and saved weights."""

    result: subprocess.CompletedProcess[str]
    predictions: Path
    weights: Path


@pytest.fixture(scope="module")
def first_run(
    recognizer: ModuleType, tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    folder = tmp_path_factory.mktemp("recognizer")
    predictions, weights = folder / "predictions.csv", folder / "recognizer.pt"
    result = train(tiny_run_dir, predictions, "--seed", "3", "--save", str(weights))
    return Run(result, predictions, weights)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as file:
        return list(csv.reader(file))


def test_training_writes_a_prediction_row_per_test_sample(
    first_run: Run, tiny_run_dir: Path
) -> None:
    result, predictions, _ = first_run
    rows = read_csv(predictions)

    assert rows[0] == ["index", "prediction"]
    test_count = len(read_labels(tiny_run_dir / "test.h5"))
    assert [int(index) for index, _ in rows[1:]] == list(range(test_count))
    assert all(prediction == "" or prediction.isdigit() for _, prediction in rows[1:])
    assert "train: 200 samples" in result.stdout
    assert "test digit accuracy (1 - CER): " in result.stdout
    assert "test sequence accuracy: " in result.stdout
    assert f"({test_count} samples)" in result.stdout


def test_training_is_deterministic_for_a_seed(
    first_run: Run, tiny_run_dir: Path, tmp_path: Path
) -> None:
    result, predictions, _ = first_run
    again = train(tiny_run_dir, tmp_path / "again.csv", "--seed", "3")

    def figures(stdout: str) -> list[str]:
        return [line for line in stdout.splitlines() if "loss" in line or "accuracy" in line]

    assert [line.split(" (")[0] for line in figures(again.stdout)] == [
        line.split(" (")[0] for line in figures(result.stdout)
    ]
    assert (tmp_path / "again.csv").read_text() == predictions.read_text()


def test_max_train_limits_the_training_samples(tiny_run_dir: Path, tmp_path: Path) -> None:
    result = train(tiny_run_dir, tmp_path / "p.csv", "--max-train", "64", "--workers", "0")
    assert "train: 64 samples" in result.stdout


def test_the_gallery_draws_the_script_s_predictions(
    first_run: Run, tiny_run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = first_run.predictions
    output = tmp_path / "errors.png"

    code = main(
        [
            "gallery",
            str(tiny_run_dir / "test.h5"),
            "--predictions",
            str(predictions),
            "--indices",
            "0-3",
            "--output",
            str(output),
        ]
    )

    assert code == 0
    assert capsys.readouterr().out.endswith(f"{output}\n")
    assert output.is_file()


@pytest.mark.parametrize(
    ("truths", "predictions", "digit_accuracy", "sequence_accuracy"),
    [
        pytest.param(["12", "345"], ["12", "345"], 1.0, 1.0, id="all-right"),
        pytest.param(["12", "345"], ["13", "345"], 0.8, 0.5, id="one-substitution"),
        pytest.param(["1234"], ["234"], 0.75, 0.0, id="a-dropped-digit-costs-one"),
        pytest.param(["12"], [""], 0.0, 0.0, id="nothing-read"),
    ],
)
def test_score_is_one_minus_the_character_error_rate(
    recognizer: ModuleType,
    truths: list[str],
    predictions: list[str],
    digit_accuracy: float,
    sequence_accuracy: float,
) -> None:
    assert recognizer.score(truths, predictions) == pytest.approx(
        (digit_accuracy, sequence_accuracy)
    )


@pytest.mark.parametrize(
    ("truth", "prediction", "right"),
    [
        pytest.param("1234", "1234", [True] * 4, id="all-right"),
        pytest.param("1234", "134", [True, False, True, True], id="a-dropped-digit"),
        pytest.param("12", "192", [True, True], id="an-extra-digit"),
        pytest.param("123", "183", [True, False, True], id="a-substitution"),
        pytest.param("55", "", [False, False], id="nothing-read"),
    ],
)
def test_read_right_says_which_digits_a_minimal_alignment_reads(
    recognizer: ModuleType, truth: str, prediction: str, right: list[bool]
) -> None:
    assert recognizer.read_right(truth, prediction) == right


def test_greedy_decoding_merges_repeats_and_drops_blanks(recognizer: ModuleType) -> None:
    import torch

    blank = recognizer.BLANK
    path = [blank, 1, 1, blank, 1, 7, 7, blank, blank, 0]  # "1", "1" (after a blank), "7", "0"
    log_probs = torch.nn.functional.one_hot(torch.tensor(path), recognizer.CLASSES).float()

    assert recognizer.greedy_decode(log_probs.unsqueeze(1)) == ["1170"]


def test_the_core_package_never_imports_torch() -> None:
    code = (
        "import sys, seqbuilder, seqbuilder.cli, seqbuilder.view.gallery, "
        "seqbuilder.view.inspection, seqbuilder.store.reader, seqbuilder.build.app; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the generator, and the recogniser reading what it drew ---------------------------------


class Drawn(NamedTuple):
    """A finished run of the generator: its output, the arrays it wrote and its weights."""

    result: subprocess.CompletedProcess[str]
    samples: Path
    labels: Path
    weights: Path


def generate(folder: Path, *options: str) -> Drawn:
    """Run the generator with ``options``, writing into ``folder``."""
    samples, labels, weights = folder / "samples.npy", folder / "labels.npy", folder / "gen.pt"
    result = run_script(
        str(GENERATOR), "--samples", str(samples), "--labels", str(labels), "--threads", "1",
        *options,
    )  # fmt: skip
    return Drawn(result, samples, labels, weights)


@pytest.fixture(scope="module")
def drawn(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Drawn:
    """The generator trained for one short epoch on the tiny build, drawing 8 test strings."""
    folder = tmp_path_factory.mktemp("generator")
    return generate(
        folder,
        "--train", str(tiny_run_dir / "train.h5"),
        "--epochs", "1",
        "--batch-size", "64",
        "--save", str(folder / "gen.pt"),
        "--strings-from", str(tiny_run_dir / "test.h5"),
        "--count", "8",
    )  # fmt: skip


def test_the_generator_draws_test_strings_as_documented_arrays(
    drawn: Drawn, tiny_run_dir: Path
) -> None:
    samples, labels = np.load(drawn.samples), np.load(drawn.labels)
    with h5py.File(tiny_run_dir / "test.h5", "r") as file:
        test_labels = file["labels"][:8]

    assert samples.dtype == np.float32 and samples.shape == (8, 28, 200)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    assert labels.dtype == np.int8
    np.testing.assert_array_equal(labels, test_labels)
    assert "train: " in drawn.result.stdout and "glyphs of" in drawn.result.stdout
    assert "epoch 1/1: loss " in drawn.result.stdout
    assert drawn.weights.is_file()


def test_a_saved_generator_draws_strings_given_on_the_command_line(
    drawn: Drawn, tmp_path: Path
) -> None:
    again = generate(tmp_path, "--load", str(drawn.weights), "--strings", "0965", "31", "7")

    samples, labels = np.load(again.samples), np.load(again.labels)
    assert samples.dtype == np.float32 and samples.shape == (3, 28, 200)
    assert labels.tolist() == [[0, 9, 6, 5], [3, 1, -1, -1], [7, -1, -1, -1]]
    assert "epoch" not in again.result.stdout  # loaded, not trained


def test_the_generator_refuses_strings_wider_than_the_build(drawn: Drawn, tmp_path: Path) -> None:
    result = run_script(
        str(GENERATOR), "--load", str(drawn.weights), "--strings", "12345678",
        "--samples", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "l.npy"), status=2,
    )  # fmt: skip

    assert result.stderr.splitlines() == [
        "train_generator.py: error: 8 digits with gaps up to 6 need 266 columns, more than the "
        "build's width 200: draw shorter strings"
    ]
    assert not (tmp_path / "s.npy").exists()


def test_the_recogniser_reads_drawn_samples_and_the_gallery_shows_its_mistakes(
    first_run: Run, drawn: Drawn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions, output = tmp_path / "readings.csv", tmp_path / "readings.png"
    result = run_script(
        str(SCRIPT), "--load", str(first_run.weights), "--read", str(drawn.samples),
        "--labels", str(drawn.labels), "--predictions", str(predictions), "--threads", "1",
    )  # fmt: skip

    rows = read_csv(predictions)
    assert rows[0] == ["index", "prediction"]
    assert [int(index) for index, _ in rows[1:]] == list(range(8))
    assert all(prediction == "" or prediction.isdigit() for _, prediction in rows[1:])
    assert "read 8 samples of " in result.stdout
    assert " of 8 (sequence accuracy " in result.stdout
    assert "sequence accuracy by length: " in result.stdout
    assert "digits read right, by digit: " in result.stdout
    assert "epoch" not in result.stdout

    gallery = ["gallery", str(drawn.samples), "--labels", str(drawn.labels)]
    code = main([*gallery, "--predictions", str(predictions), "--output", str(output)])
    assert code == 0
    assert capsys.readouterr().out.endswith(f"{output}\n")
    assert output.is_file()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        pytest.param(
            np.zeros((4, 27, 200), np.float32),
            "array of shape (4, 27, 200), expected (N, 28, W) with N >= 1",
            id="wrong-height",
        ),
        pytest.param(None, "no such file", id="missing"),
    ],
)
def test_the_recogniser_refuses_an_array_it_cannot_read_in_one_line(
    recognizer: ModuleType,
    first_run: Run,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    array: np.ndarray | None,
    message: str,
) -> None:
    samples = tmp_path / "samples.npy"
    if array is not None:
        np.save(samples, array)
    argv = ["--load", str(first_run.weights), "--read", str(samples), "--threads", "1"]

    assert recognizer.main([*argv, "--predictions", str(tmp_path / "p.csv")]) == 2
    error = capsys.readouterr().err.splitlines()
    assert error == [f"train_recognizer.py: error: {samples}: {message}"]
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--test", "t.h5"], "one of the arguments --train --load", id="no-model"),
        pytest.param(["--train", "a.h5"], "one of the arguments --test --read", id="no-target"),
        pytest.param(
            ["--train", "a.h5", "--load", "w.pt", "--test", "t.h5"],
            "argument --load: not allowed with argument --train",
            id="train-and-load",
        ),
        pytest.param(
            ["--train", "a.h5", "--test", "t.h5", "--labels", "l.npy"],
            "--labels goes with --read",
            id="labels-without-read",
        ),
        pytest.param(
            ["--load", "w.pt", "--read", "s.npy", "--save", "x.pt"],
            "--save goes with --train",
            id="save-without-training",
        ),
    ],
)
def test_the_recogniser_names_a_bad_combination_of_options(
    recognizer: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        recognizer.parse_args(argv)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_composing_cropped_glyphs_on_their_boxes_gives_the_image_back(
    generator: ModuleType,
) -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((1, 28, 80), np.float32)
    image[0, 5:23, 10:24] = rng.random((18, 14), np.float32)  # a digit's ink, 14 x 18
    image[0, 3:25, 30:58] = rng.random((22, 28), np.float32)  # a wide one, touching its box
    image[0, 0:28, 60:66] = rng.random((28, 6), np.float32)  # a tall one
    boxes = np.array([[[10, 5, 24, 23], [30, 3, 58, 25], [60, 0, 66, 28]]], np.int16)
    labels = np.array([[4, 0, 1]])

    glyphs, digits, sizes = generator.crop_glyphs(2 * image - 1, labels, boxes)

    assert glyphs.shape == (3, 28, 28)
    assert digits.tolist() == [4, 0, 1] and sizes.tolist() == [[14, 18], [28, 22], [6, 28]]
    ink = ((glyphs + 1) / 2).reshape(1, 3, 28, 28)
    composed = generator.compose(ink, boxes.astype(np.int64), 80)
    np.testing.assert_allclose(composed, image, atol=1e-6)


def test_a_drawn_layout_keeps_the_build_s_gaps_and_width(generator: ModuleType) -> None:
    layout = generator.Layout(width=200, spacing=(0, 6))
    sizes = np.full((50, 6, 2), 20, np.int64)
    lengths = np.arange(50) % 6 + 1

    boxes = generator.draw_layout(sizes, lengths, layout, np.random.default_rng(1))

    valid = boxes[..., 0] >= 0
    assert valid.sum(1).tolist() == lengths.tolist()
    assert boxes[valid][:, 0].min() >= 0 and boxes[valid][:, 2].max() <= 200
    step = np.diff(boxes[..., 0], axis=1)[valid[:, 1:]]  # 28-column digit box plus the gap
    assert step.min() >= 28 and step.max() <= 28 + 6
