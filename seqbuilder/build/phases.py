"""Named moments of a build, where a test can hold it still and send it a signal.

Each phase of a build calls :func:`reach` with its name. In normal runs this is one lookup of
an environment variable and nothing else. A test sets ``SEQBUILDER_TEST_PAUSE`` to a phase
name (or several, comma-separated) and ``SEQBUILDER_TEST_PAUSE_FILE`` to a path: on reaching
that phase the build writes the file and waits (at most :data:`PAUSE_SECONDS`) until a stop
signal arrives, so the test signals it at exactly that moment instead of guessing one.

Phases, in order: ``startup`` (the console script, before seqbuilder is imported),
``preflight`` (configs composed, before MNIST is loaded), ``run-dir`` (the run directory locked),
``block:<split>:<k>`` (block ``k`` of a split written), ``checkpoint:<split>`` (a checkpoint
just made durable), ``finish:<split>`` (the split complete,
before its file is renamed), ``gallery:<split>``, ``card``, ``done`` (after the last write) and
``stopping`` (a stop signal is being handled, workers not yet reaped).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .stopping import signals_seen

PAUSE_ENV = "SEQBUILDER_TEST_PAUSE"
PAUSE_FILE_ENV = "SEQBUILDER_TEST_PAUSE_FILE"
PAUSE_SECONDS = 60.0


def reach(phase: str) -> None:
    """Mark ``phase``; when a test asked to pause there, wait for the next stop signal."""
    if phase not in os.environ.get(PAUSE_ENV, "").split(","):
        return
    seen = signals_seen()
    Path(os.environ[PAUSE_FILE_ENV]).write_text(f"{phase} {os.getpid()}\n", encoding="utf-8")
    deadline = time.monotonic() + PAUSE_SECONDS
    while signals_seen() == seen and time.monotonic() < deadline:
        time.sleep(0.01)  # a stop signal raises here, or is noted and ends the wait
