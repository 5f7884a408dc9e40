"""Make the blocks of a split in worker processes, in order, with bounded memory.

Workers compute (compose, and compress the chunks where the filter allows); the parent alone
writes. At most :data:`IN_FLIGHT_PER_WORKER` blocks per worker are queued or waiting, so memory
does not grow with the split. Workers ignore Ctrl-C: the parent decides, and stops them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .chunks import encode_chunks
from .errors import SeqbuilderError
from .plan import Block, Recipe, SplitPlan, make_block

IN_FLIGHT_PER_WORKER = 2  # blocks queued per worker: enough to keep it busy, no more


class Encoding(NamedTuple):
    """How workers turn a block's images into stored chunks."""

    chunk_samples: int
    compression: str
    level: int
    deflate: str = "zlib"


class EncodedBlock(NamedTuple):
    """A block whose images are already finished HDF5 chunks: ``(data, filter_mask)``."""

    chunks: list[tuple[bytes, int]]
    labels: npt.NDArray[np.int8]
    lengths: npt.NDArray[np.int16]
    boxes: npt.NDArray[np.int16]
    source_index: npt.NDArray[np.int32]


def make_stored_block(
    recipe: Recipe, plan: SplitPlan, block_id: int, encoding: Encoding | None
) -> Block | EncodedBlock:
    """Make block ``block_id``; with an ``encoding``, turn its images into stored chunks."""
    block = make_block(recipe, plan, block_id)
    if encoding is None:
        return block
    chunks = encode_chunks(block.images, *encoding)
    return EncodedBlock(chunks, block.labels, block.lengths, block.boxes, block.source_index)


def iterate_blocks(
    recipe: Recipe,
    plan: SplitPlan,
    block_ids: Sequence[int],
    workers: int,
    encoding: Encoding | None,
) -> Iterator[Block | EncodedBlock]:
    """Yield blocks ``block_ids`` of ``plan`` in order, computed by ``workers`` processes."""
    if workers <= 1 or len(block_ids) <= 1:
        for block_id in block_ids:
            yield make_stored_block(recipe, plan, block_id, encoding)
        return
    # fork shares the parent's loaded MNIST with the workers for free; spawn reloads it.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    count = min(workers, len(block_ids))
    # A ProcessPoolExecutor, not a Pool: if a worker dies (out of memory, killed), its pending
    # blocks fail with BrokenProcessPool instead of waiting forever.
    executor = ProcessPoolExecutor(count, mp_context=context, initializer=_worker_signals)
    try:
        pending: deque[tuple[int, Future[Block | EncodedBlock]]] = deque()
        for block_id in block_ids:
            task = executor.submit(make_stored_block, recipe, plan, block_id, encoding)
            pending.append((block_id, task))
            if len(pending) >= IN_FLIGHT_PER_WORKER * count:
                yield _result(plan, *pending.popleft())
        while pending:
            yield _result(plan, *pending.popleft())
    except BaseException:  # an error, Ctrl-C, or the consumer giving up: stop the workers now
        # The executor has no public way to stop running tasks; its worker table does.
        processes = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


class WorkerDiedError(SeqbuilderError):
    """A worker process ended abruptly (killed, out of memory) while making a block."""


def _result(
    plan: SplitPlan, block_id: int, task: Future[Block | EncodedBlock]
) -> Block | EncodedBlock:
    """The block ``task`` made, or a clear error if its worker died."""
    try:
        return task.result()
    except BrokenProcessPool:
        raise WorkerDiedError(
            f"a worker process died while making block {block_id} of {plan.name}.h5 "
            "(killed, or out of memory?)"
        ) from None


def _worker_signals() -> None:
    """Let the parent handle Ctrl-C; let terminate() end a worker at once; on Linux, end it
    when the parent dies (even by ``kill -9``) rather than finishing orphaned blocks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
