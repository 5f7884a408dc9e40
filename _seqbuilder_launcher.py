"""The ``seqbuilder`` console script: take charge of stop signals before anything else.

Importing seqbuilder, numpy, h5py and Hydra takes a moment; a Ctrl-C or SIGTERM in that moment
would otherwise end the process with a traceback or without a word. This module, which imports
only the standard library, installs a handler first: until the command takes over the signals
itself, a stop signal ends the process at once with one line and status ``128 + signal``.
Nothing has been written at that point, so there is nothing to clean up.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from types import FrameType

_PAUSE_SECONDS = 60.0


def main() -> int:
    """Guard the start-up against stop signals, then run the command line."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_while_starting)
    _pause_for_tests()
    from seqbuilder.cli import main as cli_main
    from seqbuilder.cli import prepare_exit

    status = cli_main()
    prepare_exit()  # stop signals held and live objects left to the OS until the exit
    return status


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    cli = sys.modules.get("seqbuilder.cli")
    ended = getattr(cli, "exit_status", None)
    if ended is not None:  # the command is over: nothing is left to stop
        os._exit(ended)
    command = shlex.join(["seqbuilder", *sys.argv[1:]])
    line = (
        f"seqbuilder: stopped by {signal.Signals(signum).name} while starting; nothing was "
        f"written; run it again: {command}\n"
    )
    os.write(2, line.encode("utf-8", "replace"))
    os._exit(128 + signum)


def _pause_for_tests() -> None:
    # The "startup" phase of seqbuilder.build.phases, which this module cannot import.
    if os.environ.get("SEQBUILDER_TEST_PAUSE") != "startup":
        return
    with open(os.environ["SEQBUILDER_TEST_PAUSE_FILE"], "w", encoding="utf-8") as marker:
        marker.write(f"startup {os.getpid()}\n")
    time.sleep(_PAUSE_SECONDS)  # the signal handler ends the process


if __name__ == "__main__":
    raise SystemExit(main())
