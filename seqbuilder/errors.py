"""Every exception seqbuilder raises on purpose, in one place.

A failure the user can cause or fix (a bad argument, a bad config value, a missing or corrupt
file, a full disk) is a :class:`SeqbuilderError`; the command line turns exactly these, and
Hydra's config errors, into one ``seqbuilder: error: ...`` line and exit status 2. Anything else
is a bug and keeps its traceback. The mixins keep the built-in types the API contract promises:
a bad argument is still a ``ValueError`` or ``TypeError``, a missing MNIST a
``FileNotFoundError``.
"""

from __future__ import annotations


class SeqbuilderError(Exception):
    """Base class of every user-facing seqbuilder failure."""


class InvalidValueError(SeqbuilderError, ValueError):
    """An argument has the right type but a value outside what is allowed."""


class InvalidTypeError(SeqbuilderError, TypeError):
    """An argument has the wrong type."""


class UsageError(SeqbuilderError):
    """A command-line usage mistake: an unknown flag, a missing argument."""


class ConfigError(SeqbuilderError, ValueError):
    """A build configuration value is invalid; the message names the key."""


class IdxFormatError(SeqbuilderError, ValueError):
    """An IDX file is truncated, foreign or malformed."""


class MnistNotFoundError(SeqbuilderError, FileNotFoundError):
    """No MNIST copy was found and none could be downloaded."""


class DatasetFormatError(SeqbuilderError, ValueError):
    """A built HDF5 file is missing, foreign, truncated or of a newer format."""


class OutputError(SeqbuilderError, OSError):
    """An output file or folder cannot be written (missing folder, no permission, full disk)."""


class InputError(SeqbuilderError, OSError):
    """An input file other than a dataset cannot be read (a predictions CSV, a labels file)."""


class RunDirectoryBusyError(SeqbuilderError):
    """Another live build holds the run directory."""


class BuildWriteError(SeqbuilderError):
    """The disk refused a write, or a worker died; the message says what was kept and how to
    resume."""


class WorkerDiedError(SeqbuilderError):
    """A worker process ended abruptly (killed, out of memory) while making a block."""


class JobError(BaseException):
    """Carries a user error out of Hydra's job runner to the command line, unchanged.

    Hydra's runner reports an ``Exception`` from a job with a line of its own before
    re-raising it; a ``BaseException`` passes through untouched, so the user sees only
    seqbuilder's one line. ``error`` is the original exception.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class BuildInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the build; the message says what was kept and how to resume.

    Not a :class:`SeqbuilderError`: an interrupt is neither a bug nor a user error, and the
    command line exits with ``128 + signal`` for it.
    """

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
