"""The exceptions seqbuilder raises for user-facing failures.

Every failure a user can cause or fix (a missing MNIST file, a corrupt download, a malformed
IDX header, a bad HDF5 file) is a :class:`SeqbuilderError`; the command line turns exactly these
into ``seqbuilder: error: ...`` and exit status 2. Bad arguments raise the built-in
``ValueError``/``TypeError`` as the contract requires.
"""

from __future__ import annotations


class SeqbuilderError(Exception):
    """Base class of every user-facing seqbuilder failure."""


class IdxFormatError(SeqbuilderError, ValueError):
    """An IDX file is truncated, foreign or malformed."""


class MnistNotFoundError(SeqbuilderError, FileNotFoundError):
    """No MNIST copy was found and none could be downloaded."""


class DatasetFormatError(SeqbuilderError, ValueError):
    """A built HDF5 file is missing, foreign, truncated or of a newer format."""
