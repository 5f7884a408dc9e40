"""Find, download, verify and load MNIST, once per process.

Usage::

    from seqbuilder.mnist import load_mnist

    split = load_mnist("train")         # or "test"; load_mnist("train", data_dir="~/data")
    split.images                        # (60000, 28, 28) uint8, read-only
    split.labels                        # (60000,) uint8, 0..9
    idx = split.label_order[split.label_starts[7] : split.label_starts[8]]  # every 7

Where the data comes from, first location holding the split wins:

1. the ``data_dir`` argument;
2. the ``SEQBUILDER_DATA`` environment variable;
3. the cache, ``$XDG_CACHE_HOME/seqbuilder/mnist`` (default ``~/.cache/seqbuilder/mnist``).

Each location may hold the four standard files (``train-images-idx3-ubyte[.gz]``, ...), a
torchvision-style ``MNIST/raw/`` folder of them, or a Keras ``mnist.npz``. If none does, the
four files are downloaded into the cache from the mirrors in ``MIRRORS`` (override with
``SEQBUILDER_MNIST_MIRRORS``, space separated; empty means none), each verified against
``SHA256`` and moved into place atomically. Set ``SEQBUILDER_DOWNLOAD_TIMEOUT`` (seconds) to
change the per-request timeout.

A split is loaded once per process: a repeated call with the same arguments and environment
is a dictionary lookup that never touches the disk.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import struct
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from seqbuilder.errors import IdxFormatError, MnistNotFoundError
from seqbuilder.idx import DTYPES, read_idx

logger = logging.getLogger(__name__)

SOURCES = ("train", "test")

#: Source -> kind -> file name (without ``.gz``).
FILES: dict[str, dict[str, str]] = {
    "train": {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"},
    "test": {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"},
}

# Checksums of the *decompressed* payloads: every mirror re-gzips with its own header, so the
# .gz bytes differ between mirrors while the IDX bytes inside are the same everywhere.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Base URLs, tried in order for each file.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Seconds a download may wait for the server; env ``SEQBUILDER_DOWNLOAD_TIMEOUT`` overrides.
DOWNLOAD_TIMEOUT = 30.0

_NPZ_NAME = "mnist.npz"
_NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
# Genuine MNIST files are at most 47 MB (decompressed); anything far bigger is hostile.
_MAX_FILE_BYTES = 1 << 27
_CHUNK = 1 << 16

_CACHE: dict[tuple[str, str | None, str | None, str | None], MnistSplit] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare by identity
class MnistSplit:
    """One MNIST split, with per-label indexes precomputed for fast sampling.

    Attributes:
        images: ``(N, 28, 28)`` uint8, read-only.
        labels: ``(N,)`` uint8, values 0..9, read-only.
        sha256: Hex sha256 of the decompressed IDX images file (header and pixels).
        label_order: ``(N,)`` int32, sample indices grouped by label (stable argsort).
        label_starts: ``(11,)`` int64; samples with label ``d`` are
            ``label_order[label_starts[d] : label_starts[d + 1]]``.
        ink_boxes: ``(N, 4)`` int16, ``x0, y0, x1, y1`` (end exclusive) of each image's nonzero
            pixels; ``(0, 0, 0, 0)`` for a blank image.
        location: Where it was loaded from, for messages.
        source: ``"train"`` or ``"test"``.
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint8]
    sha256: str
    label_order: npt.NDArray[np.int32]
    label_starts: npt.NDArray[np.int64]
    ink_boxes: npt.NDArray[np.int16]
    location: str
    source: str


def cache_dir() -> Path:
    """Return the download cache, ``$XDG_CACHE_HOME/seqbuilder/mnist``.

    Returns:
        The directory (not created); ``~/.cache/seqbuilder/mnist`` when ``XDG_CACHE_HOME`` is
        unset or empty.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqbuilder" / "mnist"


def mirrors() -> tuple[str, ...]:
    """Return the mirror base URLs to download from.

    Returns:
        ``$SEQBUILDER_MNIST_MIRRORS`` split on whitespace when the variable is set (so an empty
        value means no mirrors), else :data:`MIRRORS`.
    """
    value = os.environ.get("SEQBUILDER_MNIST_MIRRORS")
    return MIRRORS if value is None else tuple(value.split())


def load_mnist(source: str = "train", data_dir: str | os.PathLike[str] | None = None) -> MnistSplit:
    """Return an MNIST split, finding or downloading it on the first call only.

    Args:
        source: ``"train"`` (60000 samples) or ``"test"`` (10000).
        data_dir: A folder to look in before ``$SEQBUILDER_DATA`` and the cache.

    Returns:
        The split; the same object for every call with the same arguments and environment.

    Raises:
        ValueError: ``source`` is not ``"train"`` or ``"test"``.
        IdxFormatError: A file that was found is malformed or is not MNIST-shaped.
        MnistNotFoundError: No location holds the split and the download failed.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not an MNIST split, expected one of {SOURCES}")
    key = (
        source,
        None if data_dir is None else os.fspath(data_dir),
        os.environ.get("SEQBUILDER_DATA"),
        os.environ.get("XDG_CACHE_HOME"),
    )
    split = _CACHE.get(key)
    if split is None:
        with _LOCK:
            split = _CACHE.get(key)
            if split is None:
                split = _CACHE[key] = _find_or_download(source, data_dir)
    return split


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
        ValueError: ``$SEQBUILDER_DOWNLOAD_TIMEOUT`` is not a positive number.
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


# --- locating and loading -------------------------------------------------------------------


def _find_or_download(source: str, data_dir: str | os.PathLike[str] | None) -> MnistSplit:
    env = os.environ.get("SEQBUILDER_DATA") or None
    locations = [
        ("data_dir", None if data_dir is None else Path(data_dir).expanduser()),
        ("$SEQBUILDER_DATA", None if env is None else Path(env).expanduser()),
        ("", cache_dir()),
    ]
    for _, root in locations:
        if root is not None and (split := _load_from(root, source)) is not None:
            return split
    try:
        download_mnist(cache_dir())
    except MnistNotFoundError as exc:
        reason = str(exc)
    else:
        if (split := _load_from(cache_dir(), source)) is not None:
            return split
        reason = "downloaded files vanished from the cache"  # pragma: no cover
    roots = [r for _, r in locations if r is not None]
    missing = [
        f"{name}[.gz]"
        for name in FILES[source].values()
        if not any(_idx_file(d, name) for r in roots for d in (r, r / "MNIST" / "raw"))
    ] or [f"{name}[.gz]" for name in FILES[source].values()]
    looked = ", ".join(
        f"{label} {root}".strip() if root is not None else f"{label} (unset)"
        for label, root in locations
    )
    raise MnistNotFoundError(
        f"MNIST files not found (missing: {', '.join(missing)}); looked in: {looked}; {reason}; "
        "set SEQBUILDER_DATA to a folder holding them"
    )


def _idx_file(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz`` (raw preferred: no decompression)."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _load_from(root: Path, source: str) -> MnistSplit | None:
    """Load ``source`` from the first layout ``root`` holds, or return None."""
    for folder in (root, root / "MNIST" / "raw"):
        paths = [_idx_file(folder, name) for name in FILES[source].values()]
        if paths[0] is not None and paths[1] is not None:
            images, labels = read_idx(paths[0]), read_idx(paths[1])
            _check_ndim(images, 3, "an image", paths[0].name)
            _check_ndim(labels, 1, "a label", paths[1].name)
            return _make_split(images, labels, source, str(folder), paths[0].name, paths[1].name)
    npz = root / _NPZ_NAME
    if npz.is_file():
        images, labels = _read_npz(npz, _NPZ_KEYS[source])
        x, y = (f"{npz}: {key}" for key in _NPZ_KEYS[source])
        return _make_split(images, labels, source, str(npz), x, y)
    return None


def _check_ndim(array: npt.NDArray[Any], ndim: int, kind: str, name: str) -> None:
    if array.ndim != ndim:
        code = next(c for c, t in DTYPES.items() if t.newbyteorder("=") == array.dtype)
        magic = code << 8 | array.ndim
        raise IdxFormatError(
            f"{name}: magic number 0x{magic:08X} means {array.ndim} dims, "
            f"expected {ndim} for {kind} file"
        )


def _read_npz(path: Path, keys: tuple[str, str]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Load two arrays from a Keras ``mnist.npz``, checking each member's header first."""
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                _check_npy_member(archive, key, path)
        with np.load(path, allow_pickle=False) as npz:
            return npz[keys[0]], npz[keys[1]]
    except IdxFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise IdxFormatError(f"{path}: not a valid .npz file: {exc}") from exc


def _check_npy_member(archive: zipfile.ZipFile, key: str, path: Path) -> None:
    """Reject a member whose declared shape and dtype do not match its real size."""
    try:
        info = archive.getinfo(key + ".npy")
    except KeyError:
        raise IdxFormatError(
            f"{path}: no array {key!r}, expected keys x_train, y_train, x_test, y_test"
        ) from None
    if info.file_size > _MAX_FILE_BYTES:
        raise IdxFormatError(f"{path}: {key} is {info.file_size} bytes, too big for MNIST")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(member)
        declared = member.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if dtype.hasobject or declared != info.file_size:
        raise IdxFormatError(
            f"{path}: {key} declares {dtype} {shape} ({declared} bytes with header), "
            f"its zip member holds {info.file_size}"
        )


def _make_split(
    images: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    source: str,
    location: str,
    images_name: str,
    labels_name: str,
) -> MnistSplit:
    """Validate MNIST semantics and precompute the per-label index and ink boxes."""
    for array, name in ((images, images_name), (labels, labels_name)):
        if array.dtype != np.uint8:
            raise IdxFormatError(f"{name}: element type {array.dtype}, expected uint8")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IdxFormatError(
            f"{images_name}: images have shape {images.shape}, expected (N, 28, 28)"
        )
    if labels.ndim != 1:
        raise IdxFormatError(f"{labels_name}: labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_name} holds {len(images)} images but {labels_name} holds {len(labels)} "
            "labels, expected the same count"
        )
    if len(labels) and labels.max() > 9:
        first = int(np.argmax(labels > 9))
        raise IdxFormatError(
            f"{labels_name}: label {int(labels[first])} at index {first}, expected 0..9"
        )
    images.flags.writeable = False
    labels.flags.writeable = False
    label_order = np.argsort(labels, kind="stable").astype(np.int32)
    label_starts = np.zeros(11, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=10), out=label_starts[1:])
    for array in (label_order, label_starts):
        array.flags.writeable = False
    split = MnistSplit(
        images=images,
        labels=labels,
        sha256=_idx_sha256(images),
        label_order=label_order,
        label_starts=label_starts,
        ink_boxes=_ink_boxes(images),
        location=location,
        source=source,
    )
    logger.info("loaded MNIST %s: %d images from %s", source, len(images), location)
    return split


def _idx_sha256(images: npt.NDArray[np.uint8]) -> str:
    # Hash the equivalent IDX file (magic, dims, pixels) rather than the bytes on disk, so a
    # gzip, raw or npz copy of the same data gives the published digest.
    digest = hashlib.sha256(struct.pack(">I", 0x0803) + struct.pack(">3I", *images.shape))
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def _ink_boxes(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Return ``(N, 4)`` int16 ``x0, y0, x1, y1`` of the nonzero pixels of each image."""
    rows: npt.NDArray[np.bool_] = np.asarray(images.any(axis=2))  # (N, 28): row has ink
    cols: npt.NDArray[np.bool_] = np.asarray(images.any(axis=1))  # (N, 28): column has ink
    height, width = images.shape[1:]
    boxes = np.stack(
        [
            cols.argmax(axis=1),
            rows.argmax(axis=1),
            width - cols[:, ::-1].argmax(axis=1),
            height - rows[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.int16)
    boxes[~np.asarray(rows.any(axis=1))] = 0
    boxes.flags.writeable = False
    return boxes


# --- downloading ----------------------------------------------------------------------------


def _download_timeout() -> float:
    value = os.environ.get("SEQBUILDER_DOWNLOAD_TIMEOUT")
    if value is None:
        return DOWNLOAD_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise ValueError(
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
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.gz.", suffix=".part", dir=dest)
        try:
            with os.fdopen(fd, "wb") as out:
                _download_to(url, out, timeout, name + ".gz")
            _check_payload(Path(tmp), name, gzip.GzipFile)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest / (name + ".gz"))
            logger.info("downloaded %s into %s", url, dest)
            return []
        except urllib.error.HTTPError as exc:
            exc.close()
            failures.append((base, _short(f"HTTP {exc.code} {exc.reason}")))
        except (OSError, http.client.HTTPException, ValueError, _BadDownloadError) as exc:
            reason = getattr(exc, "reason", None) or exc
            failures.append((base, _short(reason)))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        logger.info("download of %s failed: %s", url, failures[-1][1])
    return failures


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
                if written > _MAX_FILE_BYTES:
                    raise _BadDownloadError(f"more than {_MAX_FILE_BYTES} bytes, not MNIST")
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
            while read <= _MAX_FILE_BYTES and (chunk := stream.read(_CHUNK)):
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
