"""``python -m seqbuilder``: the same as the ``seqbuilder`` command."""

from .cli import main, prepare_exit

status = main()
prepare_exit()
raise SystemExit(status)
