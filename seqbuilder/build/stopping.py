"""Stop a build cleanly on SIGINT or SIGTERM, at a point where nothing is cut in half.

While :func:`stop_signals` is active, a SIGINT or SIGTERM is noted, and the build stops at its
next safe point: :func:`check` raises :class:`StopRequested` (a ``KeyboardInterrupt``) there, so
every ``with`` block on the way out runs its cleanup: workers are stopped and reaped, the split
file keeps its last checkpoint, the lock is released. Safe points come often (after every block,
between files, every tenth of a second while waiting for a worker), so a build stops within a
fraction of a second. The signal is never raised in the middle of a library call (an HDF5
write, a config composition), whose half-done state could turn a clean stop into a strange
error. Inside :func:`interruptible` (blocking waits, and short commands that only write through
atomic renames) the signal raises at once. Later signals are counted and otherwise ignored, so a
second Ctrl-C never interrupts the cleanup of the first. After the build's last write,
:func:`finished` makes signals harmless and the process exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class _State:
    received: int | None = None  # the first stop signal, once one arrived
    count: int = 0  # stop signals seen so far
    raised: bool = False  # whether StopRequested was raised for it
    interruptible: int = 0  # nesting depth of interruptible() blocks
    finished: bool = False  # after the last write: nothing left to stop
    active: bool = False  # whether stop_signals() is in force


_state = _State()


def received() -> int | None:
    """Return the first stop signal that arrived, or None."""
    return _state.received


def signals_seen() -> int:
    """Return how many stop signals arrived so far."""
    return _state.count


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Note SIGINT and SIGTERM inside the block, for :func:`check` to act on (main thread).

    Nested inside an active block, or in another thread (Python delivers signals to the main
    thread only), this does nothing.
    """
    global _state
    if _state.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    saved, _state = _state, _State(active=True)
    previous = {signum: signal.signal(signum, _handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state = saved


def check() -> None:
    """A safe point: raise :class:`StopRequested` if a stop signal arrived and was not raised.

    Raises:
        StopRequested: once per build, for the first stop signal.
    """
    if _state.received is not None and not (_state.raised or _state.finished):
        _state.raised = True
        raise StopRequested(_state.received)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Let a stop signal raise at once inside the block (a blocking wait, a short command)."""
    check()
    _state.interruptible += 1
    try:
        yield
    finally:
        _state.interruptible -= 1


def finished() -> None:
    """Mark the build's last write done: a stop signal from now on changes nothing."""
    _state.finished = True


def _handle(signum: int, frame: FrameType | None) -> None:
    _state.count += 1
    if _state.received is None:
        _state.received = signum
    if _state.interruptible:
        check()
