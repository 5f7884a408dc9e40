"""What MNIST is made of, as data tables: its files, their checksums, where to fetch them.

Like torchvision's ``resources`` and TFDS's checksum files, these are constants at the top of a
module of their own, so the parser, the loader and the downloader share one copy. The two
functions read the environment that overrides the tables.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path


class Source(Enum):
    """The MNIST split digit images come from: its training or its test images."""

    train = "train"
    test = "test"


SOURCES = tuple(member.value for member in Source)

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

NPZ_NAME = "mnist.npz"
NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
# Genuine MNIST files are at most 47 MB (decompressed); anything far bigger is hostile.
MAX_FILE_BYTES = 1 << 27


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
