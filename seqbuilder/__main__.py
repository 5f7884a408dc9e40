"""``python -m seqbuilder``: the same as the ``seqbuilder`` command."""

import gc
import signal

from .cli import main

status = main()
# The command is over: hold stop signals while Python shuts down (see _seqbuilder_launcher).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
gc.freeze()  # and leave what is still alive to the OS, as the launcher does
raise SystemExit(status)
