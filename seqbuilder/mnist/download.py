"""Fetch the MNIST files from mirrors: verified, atomic, resumable across mirrors.

:func:`download_mnist` fills a folder with the four ``.gz`` files listed in
:data:`~seqbuilder.mnist.resources.FILES`. Each file is tried on every mirror of
:func:`~seqbuilder.mnist.resources.mirrors` in turn (``$SEQBUILDER_MNIST_MIRRORS`` overrides
the list), is streamed to a unique temporary name beside its target, checked against
:data:`~seqbuilder.mnist.resources.SHA256` and only then renamed into place, so the folder
never holds a partial or corrupt file. A file already present and genuine is not fetched again.
``$SEQBUILDER_DOWNLOAD_TIMEOUT`` (seconds) overrides :data:`DOWNLOAD_TIMEOUT`.

Usage::

    from seqbuilder.mnist.download import download_mnist

    download_mnist(Path("~/data/mnist").expanduser())  # normally load_mnist() calls it for you
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from .._atomic import atomic_path
from ..errors import InvalidValueError, MnistNotFoundError
from .resources import FILES, MAX_FILE_BYTES, SHA256, mirrors

logger = logging.getLogger(__name__)

#: Seconds a download may wait for the server; env ``SEQBUILDER_DOWNLOAD_TIMEOUT`` overrides.
DOWNLOAD_TIMEOUT = 30.0

_CHUNK = 1 << 16


def download_mnist(
    dest: Path, mirror_urls: Sequence[str] | None = None, timeout: float | None = None
) -> None:
    """Download the four MNIST files into ``dest``, skipping those already there and valid.

    Each file is tried on every mirror in order; any failure (network, HTTP status, truncated
    body, corrupt gzip, sha256 mismatch) moves on to the next. A file is written to a unique
    temporary name in ``dest``, verified, then renamed, so ``dest`` never holds a partial or
    corrupt file, even with several processes downloading at once.

    Args:
        dest: The target folder, created if needed.
        mirror_urls: Base URLs; default :func:`mirrors`.
        timeout: Seconds per network operation; default ``$SEQBUILDER_DOWNLOAD_TIMEOUT`` or
            :data:`DOWNLOAD_TIMEOUT`.

    Raises:
        MnistNotFoundError: A file could not be fetched from any mirror (the message gives each
            mirror's reason), or there are no mirrors.
        InvalidValueError: ``$SEQBUILDER_DOWNLOAD_TIMEOUT`` is not a positive number.
    """
    urls = mirrors() if mirror_urls is None else tuple(mirror_urls)
    timeout = _download_timeout() if timeout is None else timeout
    if not urls:
        raise MnistNotFoundError(
            "no download mirrors configured ($SEQBUILDER_MNIST_MIRRORS is empty)"
        )
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistNotFoundError(f"cannot create {dest}: {exc.strerror}") from exc
    for names in FILES.values():
        for name in names.values():
            if any(_is_genuine(dest / f, name) for f in (name + ".gz", name)):
                continue
            failures = [f"{url}: {reason}" for url, reason in _fetch(dest, name, urls, timeout)]
            if failures:
                tried = "mirror" if len(urls) == 1 else f"{len(urls)} mirrors"
                raise MnistNotFoundError(f"download failed from {tried} ({'; '.join(failures)})")


def _download_timeout() -> float:
    value = os.environ.get("SEQBUILDER_DOWNLOAD_TIMEOUT")
    if value is None:
        return DOWNLOAD_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise InvalidValueError(
            f"SEQBUILDER_DOWNLOAD_TIMEOUT={value!r} is not a number of seconds > 0 (unset it to "
            f"use the default {DOWNLOAD_TIMEOUT})"
        )
    return timeout


def _fetch(dest: Path, name: str, urls: Sequence[str], timeout: float) -> list[tuple[str, str]]:
    """Download ``name.gz`` from the first mirror that serves it intact.

    Returns:
        ``(url, reason)`` for every mirror that failed; empty when the file is in place.
    """
    failures: list[tuple[str, str]] = []
    for base in urls:
        url = base.rstrip("/") + "/" + name + ".gz"
        try:
            with atomic_path(dest / (name + ".gz"), unique=True) as temporary:
                _fetch_one(url, temporary, name, timeout)
            logger.info("downloaded %s into %s", url, dest)
            return []
        except _BadDownloadError as exc:
            failures.append((base, str(exc)))
        logger.info("download of %s failed: %s", url, failures[-1][1])
    return failures


def _fetch_one(url: str, temporary: Path, name: str, timeout: float) -> None:
    """Download ``url`` to ``temporary`` and verify it; any failure is a ``_BadDownloadError``."""
    try:
        with open(temporary, "wb") as out:
            _download_to(url, out, timeout, name + ".gz")
        _check_payload(temporary, name, gzip.GzipFile)
        os.chmod(temporary, 0o644)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _BadDownloadError(_short(f"HTTP {exc.code} {exc.reason}")) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _BadDownloadError(_short(getattr(exc, "reason", None) or exc)) from None


class _BadDownloadError(Exception):
    """A mirror answered, but not with the genuine file."""


def _download_to(url: str, out: IO[bytes], timeout: float, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "seqbuilder"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total and total.isdigit() else None,
            unit="B",
            unit_scale=True,
            desc=label,
            leave=False,
        ) as bar:
            written = 0
            while chunk := response.read(_CHUNK):
                written += len(chunk)
                if written > MAX_FILE_BYTES:
                    raise _BadDownloadError(f"more than {MAX_FILE_BYTES} bytes, not MNIST")
                out.write(chunk)
                bar.update(len(chunk))
    if total and total.isdigit() and written != int(total):
        raise _BadDownloadError(f"truncated body: got {written} of {total} bytes")


def _check_payload(path: Path, name: str, opener: Any) -> None:
    """Raise ``_BadDownloadError`` unless ``path`` decompresses to the genuine ``name``."""
    digest = hashlib.sha256()
    try:
        with opener(path, "rb") as stream:
            read = 0
            while read <= MAX_FILE_BYTES and (chunk := stream.read(_CHUNK)):
                digest.update(chunk)
                read += len(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _BadDownloadError(f"corrupt gzip: {_short(exc)}") from exc
    if digest.hexdigest() != SHA256[name]:
        raise _BadDownloadError("sha256 of the decompressed payload does not match")


def _is_genuine(path: Path, name: str) -> bool:
    """Tell whether ``path`` (gzip by suffix, else raw) holds the genuine ``name``."""
    try:
        _check_payload(path, name, gzip.GzipFile if path.suffix == ".gz" else open)
    except (OSError, _BadDownloadError):
        return False
    return True


def _short(reason: object) -> str:
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return text if len(text) <= 120 else text[:117] + "..."
