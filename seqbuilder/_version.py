"""The installed package's version, for file attributes and the dataset card."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqbuilder")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
