"""The handwriting recipe and the held-out set, at a tiny size, run as a user runs them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqbuilder import SequenceDataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run an example script; fail with its stderr when it fails."""
    command = [sys.executable, str(EXAMPLES / script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if "No module named 'torch'" in result.stderr:
        pytest.fail("torch is not installed: pip install -e '.[examples]' (torch==2.13.0, CPU)")
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def heldout(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("heldout") / "heldout.h5"
    result = run("heldout_handwriting.py", str(path), "--count", "24", "--seed", "5")
    assert result.stdout.strip() == f"wrote 24 samples to {path}"
    return path


def test_the_heldout_set_is_a_readable_split_file_of_the_contract_layout(heldout: Path) -> None:
    ds = SequenceDataset(heldout)
    images, labels, lengths = ds.batch(list(range(len(ds))))

    assert len(ds) == 24
    assert images.shape == (24, 28, 200)
    assert labels.shape == (24, 6)
    assert images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert set(lengths.tolist()) <= set(range(1, 7))
    assert ((labels >= 0).sum(axis=1) == lengths).all()
    assert (labels[labels >= 0] <= 9).all()


def test_the_heldout_set_is_a_pure_function_of_its_seed(heldout: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.h5"
    run("heldout_handwriting.py", str(again), "--count", "24", "--seed", "5")

    first, second = SequenceDataset(heldout), SequenceDataset(again)
    np.testing.assert_array_equal(first.batch(range(24))[0], second.batch(range(24))[0])


def test_the_handwriting_recipe_trains_on_streams_and_predicts_any_file(
    heldout: Path, tiny_run_dir: Path, tmp_path: Path
) -> None:
    predictions = tmp_path / "predictions.csv"
    result = run(
        "train_recognizer.py",
        "--recipe", "handwriting",
        "--steps", "2",
        "--batch-size", "16",
        "--minutes", "2",
        "--threads", "1",
        "--eval", str(tiny_run_dir / "test.h5"),
        "--test", str(heldout),
        "--predictions", str(predictions),
    )  # fmt: skip

    with predictions.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["index", "prediction"]
    assert [int(index) for index, _ in rows[1:]] == list(range(24))
    assert all(prediction == "" or prediction.isdigit() for _, prediction in rows[1:])
    assert "model RobustRecognizer" in result.stdout
    assert "trained 2 steps" in result.stdout
    assert f"{heldout}: digit accuracy (1 - CER) " in result.stdout
    assert f"{tiny_run_dir / 'test.h5'}: digit accuracy" in result.stdout


def test_the_stream_option_trains_the_example_model_without_a_file(
    tiny_run_dir: Path, tmp_path: Path
) -> None:
    result = run(
        "train_recognizer.py",
        "--stream", "augment=light", "width=200",
        "--steps", "2",
        "--batch-size", "16",
        "--threads", "1",
        "--test", str(tiny_run_dir / "test.h5"),
        "--predictions", str(tmp_path / "predictions.csv"),
    )  # fmt: skip

    assert "model Recognizer" in result.stdout
    assert "trained 2 steps" in result.stdout


def test_training_needs_exactly_one_source_of_samples(tiny_run_dir: Path) -> None:
    command = [
        sys.executable, str(EXAMPLES / "train_recognizer.py"),
        "--train", str(tiny_run_dir / "train.h5"),
        "--recipe", "handwriting",
        "--test", str(tiny_run_dir / "test.h5"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 2
    assert "argument --recipe: not allowed with argument --train" in result.stderr
