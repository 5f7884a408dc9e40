"""Which per-digit transform augmentation runs: compiled (numba) when installed, else numpy.

Both give the same bytes (see :mod:`seqbuilder.image.compiled`), so the choice changes speed
only. ``$SEQBUILDER_KERNELS`` picks: ``auto`` (the default: numba when the ``fast`` extra
installed it), ``numba`` (an error without it) or ``numpy``.

Loading the compiled code costs about half a second per process, paid at the first call that
uses it. Under ``auto``, a call with fewer than :data:`WORTH_LOADING` glyphs (a single image, a
small batch) keeps to numpy until something else has loaded it: ``seqbuilder image`` and
one-off calls stay quick, while builds and streams, which transform thousands of glyphs per
block, load it at once (a build does so before it starts its workers, which inherit it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from importlib.util import find_spec
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import InvalidValueError
from . import filters

VARIABLE = "SEQBUILDER_KERNELS"
CHOICES = ("auto", "numba", "numpy")
WORTH_LOADING = 256  # glyphs: under auto, fewer keep to numpy until the compiled code is loaded
Transform = Callable[
    [npt.NDArray[np.uint8], npt.NDArray[np.intp], filters.GlyphPlan],
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]],
]


class Kernels(NamedTuple):
    """A per-digit transform, with the signature of :func:`seqbuilder.image.filters.transform`."""

    name: str  # "numba" or "numpy"
    transform: Transform


NUMPY = Kernels("numpy", filters.transform)


def kernels(glyphs: int | None = None) -> Kernels:
    """Return the kernels ``$SEQBUILDER_KERNELS`` asks for (read at each call: it is cheap).

    Args:
        glyphs: how many glyphs the caller is about to transform, or None for "many".

    Raises:
        InvalidValueError: the variable is not one of :data:`CHOICES`, or asks for numba when
            it is not installed.
    """
    choice = os.environ.get(VARIABLE) or "auto"
    if choice == "numpy":
        return NUMPY
    if choice not in CHOICES:
        raise InvalidValueError(f"${VARIABLE} must be one of {', '.join(CHOICES)}, got {choice!r}")
    if not _numba_installed():
        if choice == "numba":
            raise InvalidValueError(
                f"${VARIABLE}=numba, but numba is not installed: pip install 'seqbuilder[fast]'"
            )
        return NUMPY
    few = glyphs is not None and glyphs < WORTH_LOADING
    if choice == "auto" and few and _compiled.cache_info().currsize == 0:
        return NUMPY  # not loaded yet, and not worth loading for so few
    return _compiled()


@cache
def _numba_installed() -> bool:
    return find_spec("numba") is not None


@cache
def _compiled() -> Kernels:
    """Import the compiled transform and run it once, so its code is loaded (or compiled) now.

    A build calls :func:`kernels` before it starts its workers, which inherit the loaded code.
    """
    from . import compiled

    glyphs, slots = np.zeros((1, filters.GLYPH, filters.GLYPH), np.uint8), np.zeros(1, np.intp)
    inverse, shift = np.eye(2, dtype=np.float32)[None], np.zeros((1, 2), np.float32)
    for field in (None, compiled.NO_FIELD):
        plan = filters.GlyphPlan(
            np.ones(1, np.float32), inverse, shift, field, np.zeros((1, 2), np.intp)
        )
        compiled.transform(glyphs, slots, plan)
    return Kernels("numba", compiled.transform)
