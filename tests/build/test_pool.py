"""The worker pool's hand-off: results in item order, encoded bytes through shared memory."""

from __future__ import annotations

import multiprocessing

import pytest

from seqbuilder.build.pool import IN_FLIGHT_PER_WORKER, WorkerPool
from seqbuilder.store.chunks import EncodedBlock

SLOT_BYTES = 4096

needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="slots need fork"
)


class MakeBytes:
    """A task whose block ``k`` holds ``k`` repeated; every seventh is too big for a slot."""

    def __call__(self, item: int) -> EncodedBlock:
        size = 2 * SLOT_BYTES if item % 7 == 3 else 100 + item
        data = bytes([item % 256]) * size
        return EncodedBlock(item, data, {"images": [0, size]}, {"images": [0]})


def collect(workers: int, slot_bytes: int, items: range) -> list[tuple[int, bytes, str]]:
    """``(rows, bytes, type of data)`` of every block, copied before the next one is asked."""
    seen = []
    with WorkerPool(MakeBytes(), workers, name="test.h5", slot_bytes=slot_bytes) as pool:
        for block in pool.map_ordered(items):
            assert isinstance(block, EncodedBlock)
            seen.append((block.rows, bytes(block.data), type(block.data).__name__))
    return seen


@needs_fork
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_blocks_come_back_in_order_through_their_slots_or_the_pipe_when_too_big(
    workers: int,
) -> None:
    items = range(4 * IN_FLIGHT_PER_WORKER * workers + 5)  # every slot is reused several times

    seen = collect(workers, SLOT_BYTES, items)

    assert [rows for rows, _, _ in seen] == list(items)
    for item, (_, data, kind) in zip(items, seen, strict=True):
        too_big = item % 7 == 3
        assert data == bytes([item % 256]) * (2 * SLOT_BYTES if too_big else 100 + item)
        assert kind == ("bytes" if too_big else "memoryview"), item


def test_without_slots_every_block_comes_through_the_pipe() -> None:
    seen = collect(2, 0, range(6))

    assert [(rows, kind) for rows, _, kind in seen] == [(item, "bytes") for item in range(6)]
