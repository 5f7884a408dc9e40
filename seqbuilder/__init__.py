"""seqbuilder: synthetic digit-sequence images and datasets built from MNIST digits."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import DatasetFormatError, IdxFormatError, MnistNotFoundError, SeqbuilderError
from .mnist import load_mnist
from .reader import SequenceDataset
from .sequence import generate_numbers_sequence

try:
    __version__ = version("seqbuilder")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "DatasetFormatError",
    "IdxFormatError",
    "MnistNotFoundError",
    "SeqbuilderError",
    "SequenceDataset",
    "__version__",
    "generate_numbers_sequence",
    "load_mnist",
]
