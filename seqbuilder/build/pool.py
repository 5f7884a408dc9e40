"""Make the blocks of a split in worker processes, in order, with bounded memory.

Workers compute (compose, and compress the chunks where the filter allows); the parent alone
writes. :class:`WorkerPool` owns its processes outright: it starts them, deals block ``k`` to
worker ``k % n`` over a pipe of that worker's own, keeps at most :data:`IN_FLIGHT_PER_WORKER`
blocks queued per worker (so memory does not grow with the split), and stops, kills and reaps
them itself. Waiting on a result also waits on the worker's process sentinel, so a worker that
dies is noticed at once and never leaves the parent waiting. Workers ignore SIGINT and SIGTERM
(the parent decides, and kills them) and end themselves when the parent dies, even by
``kill -9``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Generator, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import WorkerDiedError
from ..store.chunks import encode_chunks
from .plan import Block, Recipe, SplitPlan, make_block
from .stopping import check, interruptible

IN_FLIGHT_PER_WORKER = 2  # blocks queued per worker: enough to keep it busy, no more
STOP_SECONDS = 2.0  # how long a stopping worker may take before it is killed

Result = TypeVar("Result")


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


class StoredBlockMaker:
    """Make block ``block_id`` of a plan, encoded for storage: the task a worker runs."""

    def __init__(self, recipe: Recipe, plan: SplitPlan, encoding: Encoding | None) -> None:
        self.recipe, self.plan, self.encoding = recipe, plan, encoding

    def __call__(self, block_id: int) -> Block | EncodedBlock:
        block = make_block(self.recipe, self.plan, block_id)
        if self.encoding is None:
            return block
        chunks = encode_chunks(block.images, *self.encoding)
        return EncodedBlock(chunks, block.labels, block.lengths, block.boxes, block.source_index)


def iterate_blocks(
    recipe: Recipe,
    plan: SplitPlan,
    block_ids: Sequence[int],
    workers: int,
    encoding: Encoding | None,
) -> Generator[Block | EncodedBlock, None, None]:
    """Yield blocks ``block_ids`` of ``plan`` in order, computed by ``workers`` processes.

    Close the generator (``contextlib.closing``) to stop the workers early.

    Raises:
        WorkerDiedError: a worker process ended abruptly; the others are stopped.
    """
    maker = StoredBlockMaker(recipe, plan, encoding)
    if workers <= 1 or len(block_ids) <= 1:
        for block_id in block_ids:
            check()
            yield maker(block_id)
        return
    with WorkerPool(maker, min(workers, len(block_ids)), name=f"{plan.name}.h5") as pool:
        yield from pool.map_ordered(block_ids)


class WorkerPool(Generic[Result]):
    """``n`` worker processes that run ``task(item)``, handing results back in item order.

    Use it as a context manager: leaving the ``with`` block normally stops the workers and
    reaps them; leaving it by an exception (an error, Ctrl-C, a consumer that gives up)
    terminates them at once, kills any that linger, and reaps them.

    Args:
        task: a picklable callable (fork shares it for free).
        workers: the number of processes, >= 1.
        name: what the items make, for error messages (e.g. ``"train.h5"``).
    """

    def __init__(self, task: Callable[[int], Result], workers: int, *, name: str) -> None:
        # fork shares the parent's loaded MNIST with the workers for free; spawn reloads it.
        context = (
            multiprocessing.get_context("fork")
            if "fork" in multiprocessing.get_all_start_methods()
            else multiprocessing.get_context("spawn")
        )
        self._name = name
        self._children: list[BaseProcess] = []
        self._connections: list[Connection] = []
        try:
            for index in range(workers):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(
                    target=_serve, args=(theirs, task), name=f"seqbuilder-worker-{index}"
                )
                process.daemon = True
                process.start()
                theirs.close()
                self._children.append(process)
                self._connections.append(ours)
        except BaseException:
            self.terminate()
            raise

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers (for tests and diagnostics)."""
        return [process.pid for process in self._children if process.pid is not None]

    def __enter__(self) -> WorkerPool[Result]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback_: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.terminate()
            return
        try:
            self.stop()
        except BaseException:  # a stop signal while the workers finish: end them now
            self.terminate()
            raise

    def map_ordered(self, items: Sequence[int]) -> Iterator[Result]:
        """Yield ``task(item)`` for each of ``items``, in order.

        Raises:
            WorkerDiedError: a worker ended before returning its result.
            Exception: whatever ``task`` raised in a worker, with the worker's traceback as
                its cause.
        """
        count = len(self._children)
        sent = 0
        for position in range(len(items)):
            while sent < len(items) and sent < position + IN_FLIGHT_PER_WORKER * count:
                self._send(sent % count, items[sent])
                sent += 1
            yield self._receive(position % count, items[position])

    def stop(self) -> None:
        """Ask every worker to finish, then reap them; kill any that do not end in time."""
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.send(None)
        self._reap(STOP_SECONDS)

    def terminate(self) -> None:
        """End every worker now (SIGKILL: a worker writes nothing, so loses nothing), reap them."""
        for process in self._children:
            if process.is_alive():
                process.kill()
        self._reap(STOP_SECONDS)

    def _reap(self, seconds: float) -> None:
        for process in self._children:
            process.join(seconds)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self._connections:
            connection.close()
        self._children, self._connections = [], []

    def _send(self, worker: int, item: int) -> None:
        try:
            self._connections[worker].send(item)
        except OSError:  # the worker's end is closed: it died
            raise self._died(worker, item) from None

    def _receive(self, worker: int, item: int) -> Result:
        connection, process = self._connections[worker], self._children[worker]
        # Wait on the result and on the process together: a dead worker wakes us at once. A
        # stop signal raises inside the wait: nothing is half-done there.
        with interruptible():
            wait([connection, process.sentinel])
        try:
            ok, payload = connection.recv()
        except (EOFError, OSError):
            raise self._died(worker, item) from None
        if ok:
            result: Result = payload
            return result
        error, remote_traceback = payload
        raise error from _RemoteTraceback(remote_traceback)

    def _died(self, worker: int, item: int) -> WorkerDiedError:
        process = self._children[worker]
        process.join(0.1)
        how = _exit_description(process.exitcode)
        return WorkerDiedError(
            f"a worker process {how} while making block {item} of {self._name} "
            "(killed, or out of memory?)"
        )


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, shown as the cause of its re-raise."""

    def __str__(self) -> str:
        return f"\n\nin the worker process:\n{self.args[0]}"


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _serve(connection: Connection, task: Callable[[int], Any]) -> None:
    """A worker's life: take items until told to stop, send back results or errors."""
    # The parent decides what a stop signal means, also when it reaches the whole process group
    # (Ctrl-C, or SLURM's SIGTERM to every process of a job): it kills its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    while True:
        try:
            item = connection.recv()
        except (EOFError, OSError):  # the parent closed its end
            return
        if item is None:
            return
        try:
            reply: tuple[bool, Any] = (True, task(item))
        except Exception as error:
            reply = (False, (error, traceback.format_exc()))
        try:
            connection.send(reply)
        except (OSError, ValueError):  # the parent is gone
            return


def _die_with_parent() -> None:
    """End this worker as soon as its parent process ends, however the parent ends.

    A worker busy composing a block does not read its pipe, so a thread watches the parent's
    process sentinel and ends the worker at once; orphaned blocks are never finished.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="seqbuilder-parent-watch", daemon=True).start()
