"""ChunkShuffle: a permutation per epoch, reproducible from its seed, shuffled chunk-aware."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from seqbuilder import ChunkShuffle


@dataclass
class Layout:
    """A stand-in for a dataset: all ChunkShuffle reads is len() and chunk_samples."""

    count: int
    chunk_samples: int

    def __len__(self) -> int:
        return self.count


SHAPES = [
    pytest.param(Layout(1000, 8), 32, 4, id="whole-chunks"),
    pytest.param(Layout(1003, 8), 50, 3, id="short-last-chunk-and-batch"),
    pytest.param(Layout(5, 8), 2, 64, id="fewer-samples-than-a-chunk"),
    pytest.param(Layout(777, 1), 100, 10, id="one-sample-chunks"),
    pytest.param(Layout(0, 8), 4, 64, id="empty"),
]


@pytest.mark.parametrize(("layout", "batch_size", "buffer_chunks"), SHAPES)
def test_the_batches_visit_every_index_exactly_once(
    layout: Layout, batch_size: int, buffer_chunks: int
) -> None:
    shuffle = ChunkShuffle(layout, batch_size=batch_size, buffer_chunks=buffer_chunks, seed=3)

    batches = list(shuffle)

    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(layout.count))
    assert flat == shuffle.order().tolist()
    assert len(batches) == len(shuffle) == -(-layout.count // batch_size)
    assert all(len(batch) == batch_size for batch in batches[:-1])
    assert all(type(index) is int for index in flat)


@pytest.mark.parametrize(("layout", "batch_size", "buffer_chunks"), SHAPES[:4])
def test_each_buffer_holds_whole_chunks_and_at_most_buffer_chunks_of_them(
    layout: Layout, batch_size: int, buffer_chunks: int
) -> None:
    order = ChunkShuffle(layout, batch_size=batch_size, buffer_chunks=buffer_chunks).order()
    size = layout.chunk_samples

    def chunk_rows(chunk: int) -> set[int]:
        return set(range(chunk * size, min((chunk + 1) * size, layout.count)))

    held: set[int] = set()  # chunks of the current buffer
    taken: set[int] = set()  # its samples so far
    for index in order.tolist():
        held.add(index // size)
        taken.add(index)
        assert len(held) <= buffer_chunks
        if len(held) == buffer_chunks and taken == set().union(*map(chunk_rows, held)):
            held, taken = set(), set()  # a full buffer of whole chunks ends here
    assert taken == set().union(*map(chunk_rows, held))  # the last buffer is whole chunks too


def test_the_order_is_reproducible_from_seed_and_epoch() -> None:
    layout = Layout(4000, 8)

    def order(**keys: int) -> list[int]:
        return ChunkShuffle(layout, batch_size=64, **keys).order().tolist()

    assert order(seed=1, epoch=2) == order(seed=1, epoch=2)
    assert order(seed=1, epoch=2) != order(seed=1, epoch=3)
    assert order(seed=1, epoch=2) != order(seed=2, epoch=2)
    assert order(seed=0, epoch=0) != list(range(4000))


def test_set_epoch_gives_that_epoch_s_order_and_pickling_keeps_it() -> None:
    layout = Layout(640, 8)
    shuffle = ChunkShuffle(layout, batch_size=64, seed=5)

    shuffle.set_epoch(4)

    expected = list(ChunkShuffle(layout, batch_size=64, seed=5, epoch=4))
    assert list(shuffle) == expected
    assert list(pickle.loads(pickle.dumps(shuffle))) == expected


def test_buffer_of_one_chunk_keeps_each_chunk_together_and_a_huge_buffer_spreads_it() -> None:
    layout = Layout(8000, 8)
    narrow = ChunkShuffle(layout, batch_size=8, buffer_chunks=1).order()
    wide = ChunkShuffle(layout, batch_size=8, buffer_chunks=1000).order()

    def same_chunk_neighbours(order: np.ndarray) -> float:
        return float(np.mean(order[1:] // 8 == order[:-1] // 8))

    assert same_chunk_neighbours(narrow) == pytest.approx(7 / 8, abs=1e-3)
    assert same_chunk_neighbours(wide) < 0.01


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_equal_numbers_of_batches(world_size: int) -> None:
    layout = Layout(1003, 8)
    ranks = [
        list(ChunkShuffle(layout, batch_size=50, seed=9, rank=rank, world_size=world_size))
        for rank in range(world_size)
    ]

    seen = [index for batches in ranks for batch in batches for index in batch]
    assert len(seen) == len(set(seen))
    assert {len(batches) for batches in ranks} == {21 // world_size}
    order = ChunkShuffle(layout, batch_size=50, seed=9).order().tolist()
    batches = [order[start : start + 50] for start in range(0, 1003, 50)]
    assert ranks[1] == batches[1::world_size][: 21 // world_size]


@pytest.mark.parametrize("workers", [2, 3, 5])
@pytest.mark.parametrize("count", [1003, 1000, 40, 0])
def test_each_dataloader_worker_gets_a_contiguous_run_of_the_same_batches(
    workers: int, count: int
) -> None:
    layout = Layout(count, 8)
    plain = list(ChunkShuffle(layout, batch_size=50, seed=4))
    dealt = list(ChunkShuffle(layout, batch_size=50, seed=4, num_workers=workers))

    assert sorted(dealt) == sorted(plain) and len(dealt) == len(plain)
    # the DataLoader hands batch i to worker i % workers: each worker's batches, in its order,
    # are one run of consecutive batches of the plain order, the runs in worker order
    runs = [dealt[worker::workers] for worker in range(workers)]
    assert [batch for run in runs for batch in run] == plain
    assert max(map(len, runs)) - min(map(len, runs)) <= 1


def test_ranks_deal_their_own_batches_to_their_workers() -> None:
    layout = Layout(2000, 8)
    for rank in range(2):
        keys: dict[str, int] = {"batch_size": 40, "seed": 6, "rank": rank, "world_size": 2}
        plain = list(ChunkShuffle(layout, **keys))
        dealt = list(ChunkShuffle(layout, **keys, num_workers=2))
        assert dealt[0::2] + dealt[1::2] == plain


@pytest.mark.parametrize(
    ("keys", "error", "match"),
    [
        pytest.param({"batch_size": 0}, ValueError, "batch_size=0, expected an integer >= 1"),
        pytest.param({"batch_size": 2.0}, TypeError, "batch_size=2.0, expected an integer"),
        pytest.param(
            {"batch_size": 4, "buffer_chunks": 0},
            ValueError,
            "buffer_chunks=0, expected an integer >= 1",
        ),
        pytest.param(
            {"batch_size": 4, "seed": -1}, ValueError, "seed=-1, expected an integer >= 0"
        ),
        pytest.param(
            {"batch_size": 4, "epoch": True}, TypeError, "epoch=True, expected an integer"
        ),
        pytest.param(
            {"batch_size": 4, "rank": 2, "world_size": 2}, ValueError, "rank=2, expected 0..1"
        ),
        pytest.param(
            {"batch_size": 4, "num_workers": 0},
            ValueError,
            "num_workers=0, expected an integer >= 1",
        ),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(
    keys: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(match)}$"):
        ChunkShuffle(Layout(100, 8), **keys)
