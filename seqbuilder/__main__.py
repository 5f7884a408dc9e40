"""``python -m seqbuilder``: the same as the ``seqbuilder`` command."""

from .cli import main

raise SystemExit(main())
