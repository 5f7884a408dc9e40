"""Make the blocks of a split in worker processes, in order, with bounded memory.

Workers compute (compose, and encode every dataset's chunks where the filters allow); the
parent alone writes. :class:`WorkerPool` owns its processes outright: it starts them, deals
block ``k`` to worker ``k % n`` over a pipe of that worker's own, keeps at most
:data:`IN_FLIGHT_PER_WORKER` blocks queued per worker (so memory does not grow with the split),
and stops, kills and reaps them itself. An encoded block's bytes come back through a slot of
shared memory (one per block in flight) rather than the pipe, so the parent never copies or
unpickles them: it hands views of the slot straight to HDF5. Waiting on a result also waits
on the worker's process sentinel, so a worker that dies is noticed at once and never leaves the
parent waiting. Workers ignore SIGINT and SIGTERM (the parent decides, and kills them) and end
themselves when the parent dies, even by ``kill -9``.
"""

from __future__ import annotations

import contextlib
import mmap
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

from ..errors import WorkerDiedError
from ..store.chunks import BlockEncoding, EncodedBlock, encode_block
from ..store.schema import HEIGHT
from .plan import BLOCK_SAMPLES, Block, Recipe, SplitPlan, make_block
from .stopping import check, interruptible

IN_FLIGHT_PER_WORKER = 2  # blocks queued per worker: enough to keep it busy, no more
STOP_SECONDS = 2.0  # how long a stopping worker may take before it is killed

Result = TypeVar("Result")


class StoredBlockMaker:
    """Make block ``block_id`` of a plan, encoded for storage: the task a worker runs."""

    def __init__(self, recipe: Recipe, plan: SplitPlan, encoding: BlockEncoding | None) -> None:
        self.recipe, self.plan, self.encoding = recipe, plan, encoding

    def __call__(self, block_id: int) -> Block | EncodedBlock:
        block = make_block(self.recipe, self.plan, block_id)
        if self.encoding is None:
            return block
        return encode_block(self.encoding, *block)


def iterate_blocks(
    recipe: Recipe,
    plan: SplitPlan,
    block_ids: Sequence[int],
    workers: int,
    encoding: BlockEncoding | None,
    inherited: Sequence[int] = (),
) -> Generator[Block | EncodedBlock, None, None]:
    """Yield blocks ``block_ids`` of ``plan`` in order, computed by ``workers`` processes.

    Close the generator (``contextlib.closing``) to stop the workers early. An encoded block
    may live in shared memory that the next block reuses: store it before asking for the next.
    ``inherited`` are descriptors the workers close as they start (the open split file: a
    forked worker would otherwise hold it, and HDF5's lock on it, past its parent's death).

    Raises:
        WorkerDiedError: a worker process ended abruptly; the others are stopped.
    """
    maker = StoredBlockMaker(recipe, plan, encoding)
    if runs_in_process(workers, len(block_ids)):
        for block_id in block_ids:
            check()
            yield maker(block_id)
        return
    slot_bytes = 0 if encoding is None else _slot_bytes(encoding)
    with WorkerPool(
        maker,
        min(workers, len(block_ids)),
        name=f"{plan.name}.h5",
        slot_bytes=slot_bytes,
        inherited=inherited,
    ) as pool:
        yield from pool.map_ordered(block_ids)


def runs_in_process(workers: int, blocks: int) -> bool:
    """Whether :func:`iterate_blocks` makes ``blocks`` blocks in this process, without workers."""
    return workers <= 1 or blocks <= 1


def _slot_bytes(encoding: BlockEncoding) -> int:
    """Room for one encoded block of :data:`BLOCK_SAMPLES`: its raw size and the checksums.

    Every compressed block fits: even a chunk HDF5 cannot shrink is stored raw. A deflate
    stream of bytes that do not compress at all is a little larger than them; such a block
    comes back through the pipe instead.
    """
    sample = HEIGHT * encoding.width * np.dtype(encoding.dtype).itemsize
    sample += encoding.max_length * (1 + 2 * 4 + 4) + 2  # labels, boxes, source_index, lengths
    chunks = sum(-(-BLOCK_SAMPLES // chunk.rows) for chunk in encoding.formats.values())
    return BLOCK_SAMPLES * sample + 4 * chunks + mmap.PAGESIZE


class _InSlot(NamedTuple):
    """Stands, in a result sent through the pipe, for the bytes the worker left in its slot."""

    size: int


class WorkerPool(Generic[Result]):
    """``n`` worker processes that run ``task(item)``, handing results back in item order.

    Use it as a context manager: leaving the ``with`` block normally stops the workers and
    reaps them; leaving it by an exception (an error, Ctrl-C, a consumer that gives up)
    terminates them at once, kills any that linger, and reaps them.

    Args:
        task: a picklable callable (fork shares it for free).
        workers: the number of processes, >= 1.
        name: what the items make, for error messages (e.g. ``"train.h5"``).
        slot_bytes: the size of each shared-memory slot for the bytes of an
            :class:`~seqbuilder.store.chunks.EncodedBlock` result (0: none, everything goes
            through the pipes). A result yielded from a slot is valid until the next is asked.
        inherited: file descriptors of the parent that each worker closes as it starts.
    """

    def __init__(
        self,
        task: Callable[[int], Result],
        workers: int,
        *,
        name: str,
        slot_bytes: int = 0,
        inherited: Sequence[int] = (),
    ) -> None:
        # fork shares the parent's loaded MNIST with the workers for free; spawn reloads it.
        forking = "fork" in multiprocessing.get_all_start_methods()
        context = (
            multiprocessing.get_context("fork") if forking else multiprocessing.get_context("spawn")
        )
        self._name = name
        self._children: list[BaseProcess] = []
        self._connections: list[Connection] = []
        # Anonymous shared memory, inherited by the forked workers: IN_FLIGHT_PER_WORKER slots
        # per worker, one per block it may have in flight. Untouched pages cost nothing.
        self._slots = _Slots(workers, slot_bytes) if forking and slot_bytes > 0 else None
        try:
            for index in range(workers):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(
                    target=_serve,
                    args=(theirs, task, self._slots, tuple(inherited)),
                    name=f"seqbuilder-worker-{index}",
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
            # Item k goes to worker k % count and its slot (k // count) % IN_FLIGHT_PER_WORKER,
            # whose last user, item k - IN_FLIGHT_PER_WORKER * count, has been consumed by now.
            while sent < len(items) and sent < position + IN_FLIGHT_PER_WORKER * count:
                self._send(sent % count, items[sent], _slot_of(sent, count))
                sent += 1
            yield self._receive(position % count, items[position], _slot_of(position, count))

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
        # A yielded block may still view its slot; the memory goes once the last view does.
        self._slots = None

    def _send(self, worker: int, item: int, slot: int) -> None:
        try:
            self._connections[worker].send((item, slot))
        except OSError:  # the worker's end is closed: it died
            raise self._died(worker, item) from None

    def _receive(self, worker: int, item: int, slot: int) -> Result:
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
            if isinstance(payload, EncodedBlock) and isinstance(payload.data, _InSlot):
                assert self._slots is not None
                payload = payload._replace(data=self._slots.view(slot)[: payload.data.size])
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


class _Slots:
    """Shared memory for the bytes of encoded blocks: ``count`` slots of ``size`` bytes."""

    def __init__(self, workers: int, size: int) -> None:
        self.size = size
        self._memory = mmap.mmap(-1, workers * IN_FLIGHT_PER_WORKER * size)

    def view(self, slot: int) -> memoryview:
        """The bytes of slot ``slot``."""
        return memoryview(self._memory)[slot * self.size : (slot + 1) * self.size]

    def put(self, slot: int, block: EncodedBlock) -> EncodedBlock:
        """Copy ``block``'s bytes into slot ``slot``; return it with an :class:`_InSlot` instead.

        A block too large for the slot is returned as it is, to travel through the pipe.
        """
        size = len(block.data)
        if size > self.size:
            return block
        with self.view(slot) as view:
            view[:size] = block.data
        return block._replace(data=_InSlot(size))


def _slot_of(position: int, workers: int) -> int:
    """The slot of the ``position``-th item: its worker's slots are next to each other."""
    turn = (position // workers) % IN_FLIGHT_PER_WORKER
    return (position % workers) * IN_FLIGHT_PER_WORKER + turn


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _serve(
    connection: Connection,
    task: Callable[[int], Any],
    slots: _Slots | None,
    inherited: tuple[int, ...] = (),
) -> None:
    """A worker's life: take items until told to stop, send back results or errors."""
    for descriptor in inherited:  # the parent's, never used here (see iterate_blocks)
        with contextlib.suppress(OSError):
            os.close(descriptor)
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
        item, slot = item
        try:
            result = task(item)
            if slots is not None and isinstance(result, EncodedBlock):
                result = slots.put(slot, result)
            reply: tuple[bool, Any] = (True, result)
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
