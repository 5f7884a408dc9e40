"""The recogniser example, trained at a tiny size on the session's tiny build, as a user runs it.

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

import pytest

from seqbuilder.cli import main
from seqbuilder.store.reader import read_labels

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_recognizer.py"


@pytest.fixture(scope="module")
def recognizer() -> ModuleType:
    """The example script imported as a module (it needs torch)."""
    if importlib.util.find_spec("torch") is None:
        pytest.fail("torch is not installed: pip install -e '.[examples]' (torch==2.13.0, CPU)")
    spec = importlib.util.spec_from_file_location("train_recognizer", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(run_dir: Path, predictions: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the script on the tiny build: 200 train samples, one epoch, one worker process."""
    command = [
        sys.executable,
        str(SCRIPT),
        "--train", str(run_dir / "train.h5"),
        "--test", str(run_dir / "test.h5"),
        "--epochs", "1",
        "--batch-size", "32",
        "--workers", "1",
        "--threads", "1",
        "--predictions", str(predictions),
        *options,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if "No module named 'torch'" in result.stderr:
        pytest.fail("torch is not installed: pip install -e '.[examples]' (torch==2.13.0, CPU)")
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def first_run(
    recognizer: ModuleType, tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    predictions = tmp_path_factory.mktemp("recognizer") / "predictions.csv"
    return train(tiny_run_dir, predictions, "--seed", "3"), predictions


def test_training_writes_a_prediction_row_per_test_sample(
    first_run: tuple[subprocess.CompletedProcess[str], Path], tiny_run_dir: Path
) -> None:
    result, predictions = first_run
    with predictions.open(newline="") as file:
        rows = list(csv.reader(file))

    assert rows[0] == ["index", "prediction"]
    test_count = len(read_labels(tiny_run_dir / "test.h5"))
    assert [int(index) for index, _ in rows[1:]] == list(range(test_count))
    assert all(prediction == "" or prediction.isdigit() for _, prediction in rows[1:])
    assert "train: 200 samples" in result.stdout
    assert "test digit accuracy (1 - CER): " in result.stdout
    assert "test sequence accuracy: " in result.stdout
    assert f"({test_count} samples)" in result.stdout


def test_training_is_deterministic_for_a_seed(
    first_run: tuple[subprocess.CompletedProcess[str], Path],
    tiny_run_dir: Path,
    tmp_path: Path,
) -> None:
    result, predictions = first_run
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
    first_run: tuple[subprocess.CompletedProcess[str], Path],
    tiny_run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, predictions = first_run
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
