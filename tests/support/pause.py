"""Hold a real build at a named phase (``seqbuilder.build.phases``) and wait until it is there."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

POLL_SECONDS = 0.01


def pause_env(marker: Path, *phases: str) -> dict[str, str]:
    """The environment that makes a build write ``marker`` and wait at each of ``phases``."""
    return {"SEQBUILDER_TEST_PAUSE": ",".join(phases), "SEQBUILDER_TEST_PAUSE_FILE": str(marker)}


def wait_for_phase(
    marker: Path,
    process: subprocess.Popen[bytes],
    phase: str,
    stderr: Callable[[], str],
    timeout: float = 120.0,
) -> None:
    """Wait until the build holds at ``phase``; fail with its stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().startswith(f"{phase} "):
            return
        if process.poll() is not None:
            pytest.fail(f"the build exited before {phase}: {stderr()}")
        time.sleep(POLL_SECONDS)
    pytest.fail(f"the build never reached {phase}")
