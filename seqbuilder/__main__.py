"""``python -m seqbuilder``: the same as the ``seqbuilder`` command."""

import signal

from .cli import main

status = main()
# The command is over: hold stop signals while Python shuts down (see _seqbuilder_launcher).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
raise SystemExit(status)
