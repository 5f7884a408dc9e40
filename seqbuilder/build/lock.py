"""One build per run directory: an advisory lock that dies with its process.

:func:`run_lock` takes an exclusive POSIX record lock (``lockf``) on
``<run_dir>/.seqbuilder.lock``. The kernel drops it when the holding process exits, however it
exits (``kill -9`` included), so a crashed build never blocks the next one while a live one
always does. A record lock, unlike ``flock``, is not inherited by forked worker processes, so
workers that outlive a killed build cannot hold it either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import RunDirectoryBusyError

LOCK_NAME = ".seqbuilder.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the duration of the ``with`` block.

    Raises:
        RunDirectoryBusyError: another process holds it; the message names its pid.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunDirectoryBusyError(
                f"{run_dir} is in use by another build (pid {holder}); wait for it to finish "
                "or choose another hydra.run.dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
