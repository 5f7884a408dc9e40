"""Write a file so that it only ever appears under its final name once it is complete.

Every writer of seqbuilder goes through here: the PNGs, the dataset card, the merged files, the
MNIST downloads and, through :func:`temporary_name` and :func:`publish`, the split files. The
data goes to a temporary name in the same folder, then :func:`os.replace` moves it into place,
which is atomic on POSIX file systems; a failure removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

TEMPORARY_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """Return ``<path>.tmp``: where ``path`` is written until it is complete."""
    return path.with_name(path.name + TEMPORARY_SUFFIX)


def publish(temporary: Path, path: Path, *, durable: bool = False) -> None:
    """Move the finished ``temporary`` to ``path``; with ``durable``, fsync it first.

    ``durable`` makes sure the rename never exposes pages a crash could still lose.
    """
    if durable:
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; move it to ``path`` when the block ends cleanly.

    Args:
        path: the final file name.
        unique: use a fresh temporary name (for writers that may race, such as downloads by
            two processes); otherwise ``<path>.tmp``.

    Raises:
        OutputError: the folder is missing or the file cannot be written; the message names
            the file. The temporary file is removed.
    """
    final = Path(path)
    temporary = temporary_name(final)
    try:
        if unique:
            descriptor, name = tempfile.mkstemp(
                prefix=f".{final.name}.", suffix=".part", dir=final.parent
            )
            os.close(descriptor)
            temporary = Path(name)
        yield temporary
        publish(temporary, final)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OutputError):
            raise
        raise OutputError(f"cannot write {final}: {error.strerror or error}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically, as UTF-8.

    Raises:
        OutputError: the file cannot be written.
    """
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)
