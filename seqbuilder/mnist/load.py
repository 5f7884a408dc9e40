"""Find and load MNIST, once per process, downloading it when no location holds it.

Usage::

    from seqbuilder import load_mnist

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
``SHA256`` and moved into place atomically by :mod:`seqbuilder.mnist.download` (set
``SEQBUILDER_DOWNLOAD_TIMEOUT``, in seconds, to change the per-request timeout).

A split is loaded once per process: a repeated call with the same arguments and environment
is a dictionary lookup that never touches the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import IdxFormatError, InvalidValueError, MnistNotFoundError
from .download import download_mnist
from .idx import DTYPES, read_idx
from .resources import FILES, MAX_FILE_BYTES, NPZ_KEYS, NPZ_NAME, SOURCES, cache_dir

logger = logging.getLogger(__name__)

# Splits found through data_dir or $SEQBUILDER_DATA, keyed by (source, data_dir, $SEQBUILDER_DATA),
# and splits found in (or downloaded to) the cache, keyed by those and $XDG_CACHE_HOME too: a
# repeated call reads one environment variable, not two.
_FOUND: dict[tuple[str, str | None, str | None], MnistSource] = {}
_CACHED: dict[tuple[str, str | None, str | None, str | None], MnistSource] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare by identity
class MnistSource:
    """One MNIST split, with per-label indexes precomputed for fast sampling.

    Attributes:
        images: ``(N, 28, 28)`` uint8, read-only.
        labels: ``(N,)`` uint8, values 0..9, read-only.
        sha256: Hex sha256 of the decompressed IDX images file (header and pixels).
        label_order: ``(N,)`` int32, sample indices grouped by label (stable argsort).
        label_starts: ``(11,)`` int64; samples with label ``d`` are
            ``label_order[label_starts[d] : label_starts[d + 1]]``.
        label_counts: ``(10,)`` int64, how many samples carry each label
            (``np.diff(label_starts)``), read-only.
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
    label_counts: npt.NDArray[np.int64]
    ink_boxes: npt.NDArray[np.int16]
    location: str
    source: str

    @cached_property
    def missing_labels(self) -> frozenset[int]:
        """Labels with no sample: empty for real MNIST, so a draw can skip checking counts."""
        return frozenset(int(label) for label in np.flatnonzero(self.label_counts == 0))

    @cached_property
    def label_lists(self) -> tuple[list[int], list[int], list[int]]:
        """``label_order``, ``label_starts`` and ``label_counts`` as Python int lists.

        Python ints index faster than numpy scalars: the single-image path draws with them.
        """
        return self.label_order.tolist(), self.label_starts.tolist(), self.label_counts.tolist()


def load_mnist(
    source: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> MnistSource:
    """Return an MNIST split, finding or downloading it on the first call only.

    Args:
        source: ``"train"`` (60000 samples) or ``"test"`` (10000).
        data_dir: A folder to look in before ``$SEQBUILDER_DATA`` and the cache.

    Returns:
        The split; the same object for every call with the same arguments and environment.

    Raises:
        InvalidValueError: ``source`` is not ``"train"`` or ``"test"``.
        IdxFormatError: A file that was found is malformed or is not MNIST-shaped.
        MnistNotFoundError: No location holds the split and the download failed.
    """
    if source not in SOURCES:
        raise InvalidValueError(
            f"source={source!r} is not an MNIST split, expected one of {SOURCES}"
        )
    folder = None if data_dir is None else os.fspath(data_dir)
    found = (source, folder, os.environ.get("SEQBUILDER_DATA"))
    split = _FOUND.get(found)
    if split is None:
        cached = (*found, os.environ.get("XDG_CACHE_HOME"))
        split = _CACHED.get(cached)
        if split is None:
            with _LOCK:
                split = _FOUND.get(found) or _CACHED.get(cached)
                if split is None:
                    split, in_cache = _find_or_download(source, data_dir)
                    if in_cache:
                        _CACHED[cached] = split
                    else:
                        _FOUND[found] = split
    return split


# --- locating and loading -------------------------------------------------------------------


def _find_or_download(
    source: str, data_dir: str | os.PathLike[str] | None
) -> tuple[MnistSource, bool]:
    """Return the split from the first location holding it, and whether that is the cache."""
    env = os.environ.get("SEQBUILDER_DATA") or None
    cache = cache_dir()
    locations = [
        ("data_dir", None if data_dir is None else Path(data_dir).expanduser()),
        ("$SEQBUILDER_DATA", None if env is None else Path(env).expanduser()),
        ("", cache),
    ]
    for _, root in locations:
        if root is not None and (split := _load_from(root, source)) is not None:
            return split, root == cache
    try:
        download_mnist(cache)
    except MnistNotFoundError as exc:
        reason = str(exc)
    else:
        if (split := _load_from(cache, source)) is not None:
            return split, True
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


def _load_from(root: Path, source: str) -> MnistSource | None:
    """Load ``source`` from the first layout ``root`` holds, or return None."""
    for folder in (root, root / "MNIST" / "raw"):
        paths = [_idx_file(folder, name) for name in FILES[source].values()]
        if paths[0] is not None and paths[1] is not None:
            images, labels = read_idx(paths[0]), read_idx(paths[1])
            _check_ndim(images, 3, "an image", paths[0].name)
            _check_ndim(labels, 1, "a label", paths[1].name)
            return _make_split(images, labels, source, str(folder), paths[0].name, paths[1].name)
    npz = root / NPZ_NAME
    if npz.is_file():
        images, labels = _read_npz(npz, NPZ_KEYS[source])
        x, y = (f"{npz}: {key}" for key in NPZ_KEYS[source])
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
    if info.file_size > MAX_FILE_BYTES:
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
) -> MnistSource:
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
    label_counts = np.diff(label_starts)
    for array in (label_order, label_starts, label_counts):
        array.flags.writeable = False
    split = MnistSource(
        images=images,
        labels=labels,
        sha256=_idx_sha256(images),
        label_order=label_order,
        label_starts=label_starts,
        label_counts=label_counts,
        ink_boxes=find_ink_boxes(images),
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


def find_ink_boxes(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Return ``(N, 4)`` int16 ``x0, y0, x1, y1`` (end exclusive) of each image's nonzero pixels.

    ``images`` is ``(N, H, W) uint8`` with ``W`` a multiple of 4 (MNIST's 28): rows are read as
    32-bit words. ``(0, 0, 0, 0)`` for a blank image. Read-only. Augmentation calls it on
    transformed glyphs.
    """
    n, height, width = images.shape
    # Rows read as words of 4 bytes (28 bytes: 7 words): fewer, wider elements to combine.
    words = np.ascontiguousarray(images).reshape(n, height, -1, 4).view(np.uint32)[..., 0]
    # A column has ink if any row does there: OR the rows together, halving them each step.
    folded = words.copy()
    rows_left = height
    while rows_left > 1:
        half = (rows_left + 1) // 2
        folded[:, : rows_left - half] |= folded[:, half:rows_left]
        rows_left = half
    cols = folded[:, 0].view(np.uint8) != 0  # (N, W)
    # A row has ink if any of its words does: OR the word columns, one strided pass each.
    row_words = words.reshape(n * height, -1)
    any_word = row_words[:, 0].copy()
    for column in range(1, row_words.shape[1]):
        any_word |= row_words[:, column]
    rows = (any_word != 0).reshape(n, height)
    boxes = np.empty((n, 4), np.int16)
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = width - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = height - rows[:, ::-1].argmax(axis=1)
    boxes[~rows.any(axis=1)] = 0
    boxes.flags.writeable = False
    return boxes
