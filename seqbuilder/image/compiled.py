"""Compiled (numba) per-digit transforms, byte for byte the same as numpy's.

The ``fast`` extra installs numba; :func:`~seqbuilder.image.augment.transform_glyphs` then
runs :func:`transform` instead of :func:`seqbuilder.image.filters.transform` (see
:mod:`~seqbuilder.image.kernels`). It takes the same arguments and gives the same bytes: for
each glyph in turn it does, pixel for pixel, the integer and float32 arithmetic of
:func:`~seqbuilder.image.filters.change_stroke_width`, then of
:func:`~seqbuilder.image.filters.warp_glyphs`, in the same order, then finds the ink box as
:func:`~seqbuilder.mnist.load.find_ink_boxes` does (``tests/image/test_compiled.py`` compares
the two on real MNIST). Only the cost differs: each glyph is one pass through the CPU's
cache, where numpy makes a few dozen passes over a chunk of glyphs.

Importing this module imports numba (about 0.3 s); the first call loads the machine code from
numba's cache (beside this file, or in the user's cache folder when that is read-only), or
compiles it the first time (a few seconds, then cached). With neither folder writable, every
process compiles it at its first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from . import filters
from .filters import FRACTION, GLYPH, FloatArray

ByteArray = npt.NDArray[np.uint8]
IndexArray = npt.NDArray[np.intp]
WeightArray = npt.NDArray[np.uint16]
FieldArray = npt.NDArray[np.int16]
BoxArray = npt.NDArray[np.int16]

_PIXELS = GLYPH * GLYPH
_STRIDE = 32  # row stride of a padded glyph: one zero row/column before, at least two after
# (2, 784): 0 where a pixel has no left (row 0) or right (row 1) neighbour in its glyph row
_EDGES = np.full((2, _PIXELS), 255, np.uint8)
_EDGES[0, ::GLYPH] = 0
_EDGES[1, GLYPH - 1 :: GLYPH] = 0
NO_FIELD = np.zeros((2, 1, 1), np.int16)  # read-only, as elastic_planes: one compiled version
NO_FIELD.flags.writeable = False


def _jit(function: Callable[..., Any]) -> Any:
    """Compile ``function`` lazily, cached on disk when numba finds a writable cache folder.

    Without one (a read-only install and home folder), numba refuses to cache; each process
    then compiles the loops at its first call (a few seconds) instead of failing.
    """
    try:
        return numba.njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError as error:
        if "no locator available" not in str(error):
            raise
        return numba.njit(nogil=True, boundscheck=False)(function)


def transform(
    source: ByteArray, slots: IndexArray, plan: filters.GlyphPlan
) -> tuple[ByteArray, BoxArray]:
    """:func:`seqbuilder.image.filters.transform`, compiled: the same arguments and bytes."""
    change, inverse, shift, field, offsets = plan
    n = len(slots)
    if change is None:
        flips, weights = np.zeros(n, np.uint8), np.zeros((n, 0), np.uint16)
    else:
        flips, weights = filters.stroke_steps(change)
    warping = inverse is not None
    maps = np.zeros((n, 2, 3), np.float32)
    if inverse is not None:
        maps = filters.affine_maps(inverse, shift)
    out = np.zeros(source.shape, np.uint8)
    boxes = np.zeros((len(source), 4), np.int16)
    _transform(
        np.ascontiguousarray(source), np.ascontiguousarray(slots, np.intp), flips, weights,
        maps, NO_FIELD if field is None else field, np.ascontiguousarray(offsets, np.intp),
        warping, warping and field is not None, out, boxes,
    )  # fmt: skip
    return out, boxes


# The loops. Each mirrors its numpy twin's arithmetic (types, rounding, order); loops run over
# flat, contiguous arrays wherever they can, which the compiler turns into vector code.


@_jit
def _transform(
    source: ByteArray,
    slots: IndexArray,
    flips: ByteArray,
    weights: WeightArray,
    maps: FloatArray,
    field: FieldArray,
    offsets: IndexArray,
    warping: bool,
    elastic: bool,
    out: ByteArray,
    boxes: BoxArray,
) -> None:
    """Each slot's glyph in turn: stroke width, warp, ink box; scratch arrays reused."""
    thick = np.empty((GLYPH, GLYPH), np.uint8)  # a glyph after its stroke-width change
    previous = np.zeros((GLYPH + 2) * GLYPH, np.uint8)  # a zero row above and below
    current = np.zeros((GLYPH + 2) * GLYPH, np.uint8)
    values = np.zeros(_PIXELS, np.uint16)
    padded = np.zeros(_STRIDE * _STRIDE, np.uint32)
    fixed = np.empty((2, _PIXELS), np.int32)
    words = np.empty(GLYPH // 4, np.uint32)
    ink = np.zeros(4, np.int16)
    for k in range(slots.shape[0]):
        g = slots[k]
        glyph = source[g]
        if _change_width(glyph, flips[k], weights[k], previous, current, values, thick):
            glyph = thick
        if warping:
            _ink_box(glyph, words, ink)
            _positions(maps[k], field, offsets[k, 0], offsets[k, 1], elastic, fixed)
            _sample(glyph, ink, fixed, padded, out[g])
        else:
            _copy(glyph, out[g])
        _ink_box(out[g], words, boxes[g])


@_jit
def _change_width(
    glyph: ByteArray,
    flip: np.uint8,
    weights: WeightArray,
    previous: ByteArray,
    current: ByteArray,
    values: WeightArray,
    out: ByteArray,
) -> bool:
    """filters.change_stroke_width of one glyph into ``out``; False (and nothing) if no change.

    Grey dilation by a 3x3 cross of the glyph (or of its inverse, ``flip`` 255), blended by
    each step's weight in 1/256; beyond the glyph's edge reads 0.
    """
    if weights.shape[0] == 0 or weights[0] == 0:  # weights only fall: every step adds 0
        return False
    source = glyph.reshape(_PIXELS)
    for i in range(_PIXELS):
        value = source[i] ^ flip
        previous[GLYPH + i] = value
        values[i] = value
    for step in range(weights.shape[0]):
        weight = np.uint16(weights[step])
        if weight == 0:
            break
        for i in range(_PIXELS):
            j = i + GLYPH
            sides = max(previous[j - 1] & _EDGES[0, i], previous[j + 1] & _EDGES[1, i])
            current[j] = max(previous[j], max(sides, max(previous[j - GLYPH], previous[j + GLYPH])))
        for i in range(_PIXELS):  # uint16, as numpy: at most 255 * 256 + 128
            moved = np.uint16(np.uint16(current[GLYPH + i] - previous[GLYPH + i]) * weight + 128)
            values[i] += np.uint16(moved >> np.uint16(8))
        previous, current = current, previous
    result = out.reshape(_PIXELS)
    for i in range(_PIXELS):
        result[i] = np.uint8(values[i]) ^ flip
    return True


@_jit
def _positions(
    m: FloatArray,
    field: FieldArray,
    row_offset: int,
    column_offset: int,
    elastic: bool,
    fixed: npt.NDArray[np.int32],
) -> None:
    """filters.warp_glyphs' source positions of one glyph's pixels, ``(2, 784)`` fixed point.

    ``(m1 * row + m2) + m0 * column`` (+ the field), float32, as filters._affine_coordinates,
    clipped to the padded glyph and truncated.
    """
    top, zero = np.float32((GLYPH + 1) * FRACTION), np.float32(0)
    xs, ys = fixed[0], fixed[1]
    across_x = np.empty(GLYPH, np.float32)
    across_y = np.empty(GLYPH, np.float32)
    for c in range(GLYPH):
        across_x[c] = m[0, 0] * np.float32(c)
        across_y[c] = m[1, 0] * np.float32(c)
    for r in range(GLYPH):
        x_row = m[0, 1] * np.float32(r) + m[0, 2]
        y_row = m[1, 1] * np.float32(r) + m[1, 2]
        start = r * GLYPH
        if elastic:  # two loops, so that each is a plain vector loop
            dx = field[0, row_offset + r, column_offset : column_offset + GLYPH]
            dy = field[1, row_offset + r, column_offset : column_offset + GLYPH]
            for c in range(GLYPH):
                x = (x_row + across_x[c]) + np.float32(dx[c])
                y = (y_row + across_y[c]) + np.float32(dy[c])
                xs[start + c] = np.int32(min(max(x, zero), top))
                ys[start + c] = np.int32(min(max(y, zero), top))
        else:
            for c in range(GLYPH):
                xs[start + c] = np.int32(min(max(x_row + across_x[c], zero), top))
                ys[start + c] = np.int32(min(max(y_row + across_y[c], zero), top))


@_jit
def _sample(
    glyph: ByteArray,
    ink: BoxArray,
    fixed: npt.NDArray[np.int32],
    padded: npt.NDArray[np.uint32],
    out: ByteArray,
) -> None:
    """filters.warp_glyphs' bilinear sampling of one glyph at its fixed-point positions.

    A position whose 2x2 neighbourhood lies outside the glyph's ink box reads 0 without the
    arithmetic (which would give 0 there too): about half of them.
    """
    result = out.reshape(_PIXELS)
    if ink[2] == 0:  # a blank glyph
        result[:] = 0
        return
    source = glyph.reshape(_PIXELS)
    for r in range(GLYPH):
        for c in range(GLYPH):
            padded[(r + 1) * _STRIDE + 1 + c] = source[r * GLYPH + c]
    # padded (column, row) (wx, wy) holds glyph pixels wx - 1, wx and wy - 1, wy: any ink when
    # x0 <= wx <= x1 and y0 <= wy <= y1 (box end exclusive); one unsigned compare each
    x0, y0 = np.uint32(ink[0]), np.uint32(ink[1])
    width, height = np.uint32(ink[2]) - x0, np.uint32(ink[3]) - y0
    bits, low, whole = np.uint32(8), np.uint32(FRACTION - 1), np.uint32(FRACTION)
    xs, ys = fixed[0], fixed[1]
    for p in range(_PIXELS):
        fx, fy = np.uint32(xs[p]), np.uint32(ys[p])  # >= 0
        wx, wy = fx >> bits, fy >> bits
        if np.uint32(wx - x0) > width or np.uint32(wy - y0) > height:
            result[p] = 0
            continue
        i = np.uintp(wy * np.uint32(_STRIDE) + wx)  # unsigned: no negative-index checks
        ax, ay = fx & low, fy & low
        upper = padded[i] * (whole - ax) + padded[i + np.uintp(1)] * ax
        lower = padded[i + np.uintp(_STRIDE)] * (whole - ax)
        lower += padded[i + np.uintp(_STRIDE + 1)] * ax
        value = upper * (whole - ay) + lower * ay + np.uint32(FRACTION * FRACTION // 2)
        result[p] = np.uint8(value >> np.uint32(16))


@_jit
def _ink_box(image: ByteArray, columns: npt.NDArray[np.uint32], box: BoxArray) -> None:
    """find_ink_boxes of one glyph into ``box``; ``columns`` is scratch, 7 uint32.

    Rows are read as 7 words of 4 bytes; the words of the inked rows are OR-ed together, and
    read back as bytes for the columns.
    """
    words = image.reshape(_PIXELS).view(np.uint32)
    columns[:] = 0
    y0, y1 = GLYPH, 0
    for r in range(GLYPH):
        row = np.uint32(0)
        for j in range(GLYPH // 4):
            row |= words[r * (GLYPH // 4) + j]
        if row:
            y0 = min(y0, r)
            y1 = r + 1
            for j in range(GLYPH // 4):
                columns[j] |= words[r * (GLYPH // 4) + j]
    if y1 == 0:
        box[0] = box[1] = box[2] = box[3] = 0
        return
    inked = columns.view(np.uint8)
    x0, x1 = GLYPH, 0
    for c in range(GLYPH):
        if inked[c]:
            x0 = min(x0, c)
            x1 = c + 1
    box[0], box[1], box[2], box[3] = x0, y0, x1, y1


@_jit
def _copy(glyph: ByteArray, out: ByteArray) -> None:
    """``out[...] = glyph``, as one flat loop."""
    source, target = glyph.reshape(_PIXELS), out.reshape(_PIXELS)
    for i in range(_PIXELS):
        target[i] = source[i]
