"""SequenceStream: the build's samples made in memory, epoch 0 byte for byte, other epochs fresh.

The oracle is the real ``seqbuilder build`` of the same overrides (tests/support/feed_builds.py),
read back with ``SequenceDataset``.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from seqbuilder import ConfigError, SequenceDataset, SequenceStream
from tests.support.feed_builds import FEED_CONFIGS, feed_params

SPLITS = {"blocks": ["train", "test"]}  # the tiny preset's splits otherwise


@pytest.fixture(autouse=True)
def _real_mnist(real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))


def file_batch(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dataset = SequenceDataset(path)
    return dataset.batch(range(len(dataset)))


def joined(batches: Iterable[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    parts = list(batches)
    return tuple(np.concatenate([part[field] for part in parts]) for field in range(3))


def assert_same(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    for name, a, b in zip(("images", "labels", "lengths"), got, expected, strict=True):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert a.tobytes() == b.tobytes(), f"{name} differ"


@pytest.mark.parametrize("name", feed_params())
def test_epoch_0_yields_the_built_file_sample_for_sample_byte_for_byte(
    feed_run: Callable[[str], Path], name: str
) -> None:
    run_dir = feed_run(name)
    for split in SPLITS.get(name, ["train", "test", "val"]):
        dataset = SequenceDataset(run_dir / f"{split}.h5")
        stream = SequenceStream(FEED_CONFIGS[name], split=split)

        samples = list(stream)

        assert len(stream) == len(samples) == len(dataset)
        for index, (image, label) in enumerate(samples):
            stored_image, stored_label = dataset[index]
            assert (image.dtype, image.shape) == (np.float32, stored_image.shape)
            assert image.tobytes() == stored_image.tobytes(), f"{split}[{index}]"
            assert (label.dtype, label.tolist()) == (np.int64, stored_label.tolist())


@pytest.mark.parametrize("size", [64, 100, 4096, 5000])
def test_batches_equal_the_file_across_the_block_boundary(
    feed_run: Callable[[str], Path], size: int
) -> None:
    stream = SequenceStream(FEED_CONFIGS["blocks"])
    batches = list(stream.batches(size))

    assert [len(batch[2]) for batch in batches[:-1]] == [size] * (len(batches) - 1)
    assert len(batches) == len(stream.batches(size)) == -(-4200 // size)
    assert_same(joined(batches), file_batch(feed_run("blocks") / "train.h5"))


def test_other_epochs_are_fresh_reproducible_and_drawn_the_same_way(
    feed_run: Callable[[str], Path],
) -> None:
    overrides = FEED_CONFIGS["blocks"]
    built = file_batch(feed_run("blocks") / "train.h5")
    one = joined(SequenceStream(overrides, epoch=1).batches(512))
    again = joined(SequenceStream(overrides, epoch=1).batches(300))
    two = joined(SequenceStream(overrides, epoch=2).batches(512))

    assert_same(one, again)
    for other in (built, two):
        assert not np.array_equal(one[0], other[0]) and not np.array_equal(one[1], other[1])
        assert [array.shape for array in one] == [array.shape for array in other]
    assert set(np.unique(one[2]).tolist()) == {1, 2}  # sequences.max_length=2
    assert one[0].min() == 0.0 and one[0].max() == 1.0


def test_set_epoch_switches_the_samples_of_the_next_iteration() -> None:
    overrides = FEED_CONFIGS["tiny"]
    stream = SequenceStream(overrides)

    stream.set_epoch(3)

    assert_same(joined(stream.batches(64)), joined(SequenceStream(overrides, epoch=3).batches(64)))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_stream_equal_disjoint_ranges_of_the_file(
    feed_run: Callable[[str], Path], world_size: int
) -> None:
    built = file_batch(feed_run("blocks") / "train.h5")
    share = 4200 // world_size

    for rank in range(world_size):
        stream = SequenceStream(FEED_CONFIGS["blocks"], rank=rank, world_size=world_size)
        assert len(stream) == share
        expected = tuple(array[rank * share : (rank + 1) * share] for array in built)
        assert_same(joined(stream.batches(1000)), expected)


def test_a_pickled_stream_streams_the_same_without_composing_again() -> None:
    stream = SequenceStream(FEED_CONFIGS["tiny"], split="val", epoch=2)

    copy = pickle.loads(pickle.dumps(stream))

    assert (len(copy), copy.split, copy.epoch, copy.width) == (50, "val", 2, 200)
    assert_same(joined(copy.batches(16)), joined(stream.batches(16)))
    assert_same(joined(pickle.loads(pickle.dumps(stream.batches(7)))), joined(stream.batches(7)))


@pytest.mark.parametrize(
    ("overrides", "keys", "error", "match"),
    [
        pytest.param(
            ["+preset=tiny"],
            {"split": "valid"},
            ValueError,
            "split='valid' is not a split of the config, expected one of 'train', 'test', 'val'",
            id="unknown-split",
        ),
        pytest.param(
            "width=60",
            {},
            TypeError,
            "overrides='width=60' is a string, expected a list of strings: ['width=60']",
            id="string-overrides",
        ),
        pytest.param(["width=0"], {}, ConfigError, "width (0) must be >= 1", id="bad-config"),
        pytest.param([], {"epoch": -1}, ValueError, "epoch=-1, expected an integer >= 0", id="ep"),
        pytest.param(
            [],
            {"rank": 1},
            ValueError,
            "rank=1 and world_size=None: give both (torch.distributed) or neither",
            id="rank-alone",
        ),
        pytest.param(
            [],
            {"rank": 2, "world_size": 2},
            ValueError,
            "rank=2, expected 0..1 for world_size=2",
            id="rank-too-big",
        ),
    ],
)
def test_bad_arguments_are_refused_as_the_build_refuses_them(
    overrides: list[str],
    keys: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        SequenceStream(overrides, **keys)  # type: ignore[arg-type]


def test_batches_refuse_a_size_below_one() -> None:
    with pytest.raises(ValueError, match=r"^size=0, expected an integer >= 1$"):
        SequenceStream(FEED_CONFIGS["tiny"]).batches(0)


def test_importing_seqbuilder_leaves_hydra_until_the_stream_is_asked_for() -> None:
    code = (
        "import sys, seqbuilder; "
        "assert 'hydra' not in sys.modules, 'hydra imported'; "
        "assert seqbuilder.SequenceStream.__name__ == 'SequenceStream'; "
        "assert 'hydra' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
