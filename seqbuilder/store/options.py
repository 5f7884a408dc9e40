"""How a reader presents stored samples: label format, pad value and value range.

One place turns stored images into values and stored labels into int64 labels, so a sample read
alone (``ds[i]``) and the same sample read in a batch (``ds.batch``) are equal bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from ..errors import InvalidTypeError, InvalidValueError
from .schema import PAD

LabelFormat = Literal["digits", "padded"]
LABEL_FORMATS: tuple[str, ...] = get_args(LabelFormat)

_BYTE_MAX = np.float32(255)


@dataclass(frozen=True)
class ReadOptions:
    """How :class:`~seqbuilder.store.reader.SequenceDataset` presents a sample; picklable."""

    label_format: str = "digits"
    pad_value: int = PAD
    value_range: tuple[float, float] = (0.0, 1.0)

    def values(
        self, raw: npt.NDArray[Any], out: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        """Turn stored images (any leading shape, uint8 or float32) into float32 values.

        uint8 gives ``raw / 255``; then ``value_range`` maps [0, 1] linearly onto
        ``(low, high)``, in float32 arithmetic. ``out``, if given, receives the values (the
        same bits) and is returned.
        """
        if out is None:
            image = raw if raw.dtype == np.float32 else np.divide(raw, _BYTE_MAX, dtype=np.float32)
        elif raw.dtype == np.float32:
            image = out
            np.copyto(image, raw)
        else:
            image = np.divide(raw, _BYTE_MAX, out=out, dtype=np.float32)
        if self.value_range != (0.0, 1.0):
            low, high = self.value_range
            scaled = np.multiply(image, np.float32(high - low), out=out)
            image = np.add(scaled, np.float32(low), out=out)
        return image

    def padded_labels(
        self,
        labels: npt.NDArray[np.integer[Any]],
        lengths: npt.NDArray[np.integer[Any]] | np.integer[Any],
    ) -> npt.NDArray[np.int64]:
        """Return ``(..., L)`` int64 labels, ``pad_value`` past each length.

        Args:
            labels: ``(..., L)`` stored digits, padded with -1.
            lengths: ``(...)`` digits in each label.
        """
        padded = labels.astype(np.int64)
        if self.pad_value != PAD:
            valid = np.arange(labels.shape[-1]) < np.asarray(lengths)[..., None]
            padded[~valid] = self.pad_value
        return padded


def check_options(
    label_format: str, pad_value: int, value_range: tuple[float, float]
) -> ReadOptions:
    """Validate the reader's presentation options.

    Raises:
        ValueError: ``label_format`` is not one of ``"digits"``, ``"padded"``; ``pad_value`` is
            a digit 0..9; ``value_range`` is not two finite numbers with ``low < high``.
        TypeError: ``pad_value`` is not an integer.
    """
    if label_format not in LABEL_FORMATS:
        raise InvalidValueError(
            f"label_format={label_format!r}, expected one of {', '.join(map(repr, LABEL_FORMATS))}"
        )
    if isinstance(pad_value, bool) or not isinstance(pad_value, (int, np.integer)):
        raise InvalidTypeError(f"pad_value={pad_value!r}, expected an integer")
    if 0 <= pad_value <= 9:
        raise InvalidValueError(
            f"pad_value={pad_value!r} is a digit, expected a value outside 0..9"
        )
    try:
        low, high = (float(value) for value in value_range)
    except (TypeError, ValueError):
        raise InvalidValueError(
            f"value_range={value_range!r}, expected (low, high), e.g. (-1, 1)"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InvalidValueError(
            f"value_range={value_range!r}, expected finite (low, high) with low < high"
        )
    return ReadOptions(label_format, int(pad_value), (low, high))


def check_cache_bytes(cache_bytes: int) -> int:
    """Validate a cache size in bytes.

    Raises:
        TypeError: ``cache_bytes`` is not an integer.
        ValueError: ``cache_bytes`` is negative.
    """
    if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)):
        raise InvalidTypeError(f"cache_bytes={cache_bytes!r}, expected an integer")
    if cache_bytes < 0:
        raise InvalidValueError(f"cache_bytes={cache_bytes!r}, expected >= 0")
    return int(cache_bytes)
