"""Tiny MNIST files in the real IDX format, written by tests (never mocked).

Each tiny image identifies itself: it is filled with a value derived from its index, and its
label is ``index % 10``, so a test can tell which source image landed where.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

# numpy dtype -> IDX type code; the inverse of seqbuilder.mnist.idx.DTYPES, kept independent of
# it so the fixtures check the parser rather than mirror it.
_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}

TINY_COUNTS = {"train": 30, "test": 10}
# Every tiny image has ink exactly in rows 3..24 and columns 4..23 (end exclusive: 25, 24).
TINY_BOX = (4, 3, 24, 25)


def idx_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """Return ``array`` as the bytes of an IDX file (magic number, big-endian dims, payload)."""
    code = _IDX_CODES[array.dtype.str[1:]]
    header = struct.pack(">I", code << 8 | array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: npt.NDArray[np.generic]) -> Path:
    """Write ``array`` as an IDX file at ``path``, gzip-compressed when it ends in ``.gz``."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def tiny_split(source: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Return the tiny ``(images, labels)``: image i is filled with i+1 (train) or i+101 (test)."""
    count = TINY_COUNTS[source]
    first = 1 if source == "train" else 101
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    x0, y0, x1, y1 = TINY_BOX
    images[:, y0:y1, x0:x1] = (first + np.arange(count, dtype=np.uint8))[:, None, None]
    labels = (np.arange(count) % 10).astype(np.uint8)
    return images, labels
