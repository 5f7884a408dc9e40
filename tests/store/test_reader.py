"""SequenceDataset's options for generative-model training: padded labels and a value range."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from seqbuilder import SequenceDataset
from seqbuilder.store.reader import read_labels


@pytest.fixture
def train_h5(tiny_run_dir: Path) -> Path:
    return tiny_run_dir / "train.h5"


def test_defaults_are_the_contract_samples(train_h5: Path) -> None:
    dataset = SequenceDataset(train_h5)
    with h5py.File(train_h5) as file:
        stored, labels, lengths = file["images"][3], file["labels"][3], file["lengths"][3]

    image, label = dataset[3]

    assert (image.dtype, image.shape) == (np.float32, (28, 200))
    np.testing.assert_array_equal(image, stored / np.float32(255))
    assert (label.dtype, label.shape) == (np.int64, (lengths,))
    np.testing.assert_array_equal(label, labels[:lengths])


def test_padded_labels_have_max_length_and_minus_one_after_the_digits(train_h5: Path) -> None:
    plain = SequenceDataset(train_h5)
    padded = SequenceDataset(train_h5, label_format="padded")
    assert padded.max_length == 6

    for index in range(len(plain)):
        digits = plain[index][1]
        label = padded[index][1]
        assert (label.dtype, label.shape) == (np.int64, (6,))
        np.testing.assert_array_equal(label[: len(digits)], digits)
        assert (label[len(digits) :] == -1).all()


def test_pad_value_fills_after_the_digits(train_h5: Path) -> None:
    dataset = SequenceDataset(train_h5, label_format="padded", pad_value=10)
    lengths = [len(label) for label in read_labels(train_h5)]
    short = lengths.index(min(lengths))

    label = dataset[short][1]

    assert (label[lengths[short] :] == 10).all() and (label[: lengths[short]] < 10).all()


def test_value_range_minus_one_to_one_maps_the_stored_range_linearly(train_h5: Path) -> None:
    stored = SequenceDataset(train_h5)
    scaled = SequenceDataset(train_h5, value_range=(-1, 1))

    image = scaled[0][0]

    assert image.dtype == np.float32
    assert (image.min(), image.max()) == (-1.0, 1.0)  # background and full ink hit the ends
    np.testing.assert_allclose(image, 2 * stored[0][0] - 1, atol=1e-6)


def test_options_survive_pickling(train_h5: Path) -> None:
    dataset = SequenceDataset(train_h5, label_format="padded", pad_value=-7, value_range=(-1, 1))
    dataset[0]  # open a handle first: pickling must not carry it

    copy = pickle.loads(pickle.dumps(dataset))

    np.testing.assert_array_equal(copy[5][0], dataset[5][0])
    np.testing.assert_array_equal(copy[5][1], dataset[5][1])
    assert copy[5][1].shape == (6,) and copy[5][0].min() == -1.0


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param(
            {"label_format": "ragged"},
            ValueError,
            "label_format='ragged', expected one of 'digits', 'padded'",
            id="label-format",
        ),
        pytest.param(
            {"pad_value": 3},
            ValueError,
            "pad_value=3 is a digit, expected a value outside 0..9",
            id="pad-is-a-digit",
        ),
        pytest.param(
            {"pad_value": 1.5}, TypeError, "pad_value=1.5, expected an integer", id="pad-float"
        ),
        pytest.param(
            {"value_range": (1, -1)},
            ValueError,
            "value_range=(1, -1), expected finite (low, high) with low < high",
            id="range-backwards",
        ),
        pytest.param(
            {"value_range": (0, float("inf"))},
            ValueError,
            "value_range=(0, inf), expected finite (low, high) with low < high",
            id="range-infinite",
        ),
        pytest.param(
            {"value_range": (-1,)},
            ValueError,
            "value_range=(-1,), expected (low, high), e.g. (-1, 1)",
            id="range-one-number",
        ),
    ],
)
def test_bad_options_are_rejected_naming_the_value(
    train_h5: Path, options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        SequenceDataset(train_h5, **options)  # type: ignore[arg-type]
