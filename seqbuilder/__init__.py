"""seqbuilder: synthetic digit-sequence images and datasets built from MNIST digits.

The public API, re-exported from the layers that hold it; see the documentation site for the
guide. ``mnist`` (layer 1) finds MNIST; ``image`` and ``store`` (layer 2) compose images and
read and write the HDF5 files; ``build`` and ``view`` (layer 3) make datasets and look at them;
``cli`` sits on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .build.loader import share_batch
from .build.shuffle import ChunkShuffle
from .errors import (
    ConfigError,
    DatasetFormatError,
    IdxFormatError,
    MnistNotFoundError,
    SeqbuilderError,
)
from .image.sequence import generate_numbers_sequence
from .mnist.load import load_mnist
from .store.reader import SequenceDataset

if TYPE_CHECKING:
    from .build.stream import SequenceStream

__all__ = [
    "ChunkShuffle",
    "ConfigError",
    "DatasetFormatError",
    "IdxFormatError",
    "MnistNotFoundError",
    "SeqbuilderError",
    "SequenceDataset",
    "SequenceStream",
    "__version__",
    "generate_numbers_sequence",
    "load_mnist",
    "share_batch",
]


def __getattr__(name: str) -> object:
    # SequenceStream composes configs with Hydra: import it, and Hydra, on first use only, so
    # `import seqbuilder` and every command but `build` stay quick (PEP 562).
    if name == "SequenceStream":
        from .build.stream import SequenceStream

        return SequenceStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
