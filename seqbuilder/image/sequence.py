"""The core: ``generate_numbers_sequence`` and the batch draw the builder shares with it.

>>> from seqbuilder import generate_numbers_sequence
>>> image = generate_numbers_sequence("0965", (0, 10), 160, seed=7)
>>> image.shape, image.dtype
((28, 160), dtype('float32'))

Every random choice (which MNIST sample shows each digit, each gap, a random offset) comes
from one ``numpy.random.Generator``, drawn in a fixed order by :func:`generate_batch`, so a
seed fixes the result. Without augmentation one image takes the single-image path of
:mod:`seqbuilder.image.single`, which makes the same draws and gives the same pixels, faster.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidTypeError, InvalidValueError
from ..mnist.load import load_mnist
from .compose import DIGIT_SIZE, MAX_OVERLAP, check_fits, widest_width
from .engine import generate_batch
from .options import PRESETS, Augment, ComposeOptions, Elastic, Range
from .single import compose_one, seeded_generator

Seed = int | np.integer[Any] | np.random.Generator | None


def generate_numbers_sequence(
    digits: Sequence[int] | npt.NDArray[np.integer[Any]] | str,
    spacing_range: tuple[int, int] | Sequence[int],
    image_width: int,
    *,
    seed: Seed = None,
    source: str = "train",
    fit: str = "pad",
    align: str = "center",
    digit_crop: str = "box",
    background: str = "black",
    data_dir: str | os.PathLike[str] | None = None,
    augment: str | Mapping[str, Any] | Augment | None = None,
) -> npt.NDArray[np.float32]:
    """Return an image of ``digits`` written with random MNIST samples side by side.

    Args:
        digits: the digits to show, 0..9: a list, tuple, 1-D integer array, or a string of
            decimal characters such as ``"0965"``.
        spacing_range: ``(min, max)`` gap in pixels between neighbouring digits; each gap is
            drawn uniformly from the closed range. Negative gaps overlap digits (ink combines
            by pixel-wise maximum), down to -27.
        image_width: width of the result in pixels.
        seed: ``None`` for fresh entropy, an int for a repeatable result, or a Generator.
        source: ``"train"`` or ``"test"``: the MNIST split the digit images come from.
        fit: ``"pad"`` places the sequence on a canvas (it must fit at the widest gaps),
            ``"scale"`` resizes it to ``image_width``, ``"auto"`` pads when it fits.
        align: ``"center"``, ``"left"`` or ``"random"`` placement of a padded sequence.
        digit_crop: ``"box"`` keeps each digit's 28-column box; ``"ink"`` crops it to its
            inked columns, so gaps are measured between strokes.
        background: ``"black"`` (value = raw / 255) or ``"white"`` (value = 1 - raw / 255).
        data_dir: a folder holding MNIST, tried before ``$SEQBUILDER_DATA`` and the cache.
        augment: handwriting-like variation: None or ``"none"`` (off), ``"light"``,
            ``"heavy"``, or a mapping of the keys of :class:`~seqbuilder.image.options.Augment`
            (``{"rotation": 8, "elastic": {"alpha": 30, "sigma": 4}}``; keys left out are off).

    Returns:
        ``(28, image_width) float32`` array with values in ``[0, 1]``.

    Raises:
        TypeError: an argument has the wrong type (a float digit, a string width, ...).
        ValueError: a digit outside 0..9, an empty sequence, ``min > max``, ``min < -27``, a
            width below 1, an unknown option, or, with ``fit="pad"``, an ``image_width`` too
            small for the widest possible composition (the message gives the minimum), an
            unknown augment preset or key, or an augment value out of its range.
        MnistNotFoundError: no MNIST copy was found or downloaded.
    """
    if type(digits) is list and digits and all(type(d) is int and 0 <= d <= 9 for d in digits):
        digit_list: list[int] = digits  # the common case, spared the array round trip
    else:
        digit_list = validate_digits(digits).tolist()
    spacing = validate_spacing(spacing_range)
    width = validate_width(image_width)
    options = ComposeOptions.of(fit, align, digit_crop, background)
    if options.fit == "pad" and widest_width(len(digit_list), spacing[1]) > width:
        check_fits(len(digit_list), spacing[1], width, "pad", subject=f"image_width={width}")
    params = None if augment is None else parse_augment(augment)
    rng = make_rng(seed)
    split = load_mnist(source, data_dir)
    if params is None or params.is_identity:  # one image needs none of the batch machinery
        return compose_one(split, digit_list, spacing, width, options, rng)
    batch = generate_batch(
        split,
        np.array([digit_list], np.int64),
        np.array([len(digit_list)]),
        spacing,
        width,
        options,
        rng,
        augment=params,
    )
    image: npt.NDArray[np.float32] = batch.images[0]
    return image


def validate_digits(digits: object) -> npt.NDArray[np.int64]:
    """Return ``digits`` as a non-empty 1-D int64 array of values 0..9.

    Raises:
        TypeError: ``digits`` is not a string or a sequence of integers.
        ValueError: empty, a non-decimal character, or a value outside 0..9.
    """
    if type(digits) is list and all(type(d) is int and 0 <= d <= 9 for d in digits) and digits:
        return np.array(digits, np.int64)  # the common case, spared the general checks
    if isinstance(digits, str):
        if not digits:
            raise InvalidValueError("digits='' is empty, expected at least one digit")
        bad = next((i for i, ch in enumerate(digits) if ch not in "0123456789"), None)
        if bad is not None:
            raise InvalidValueError(
                f"digits[{bad}] is {digits[bad]!r}, expected a decimal character"
            )
        return np.frombuffer(digits.encode("ascii"), np.uint8).astype(np.int64) - 48
    if digits is None or isinstance(digits, (bytes, dict, set, numbers.Number)):
        raise InvalidTypeError(
            f"digits={digits!r} is not a sequence, expected e.g. [0, 9, 6, 5] or '0965'"
        )
    array = np.asarray(digits)
    if array.ndim != 1:
        raise InvalidValueError(f"digits has shape {array.shape}, expected a flat sequence")
    if array.size == 0:
        raise InvalidValueError(f"digits={digits!r} is empty, expected at least one digit")
    if array.dtype.kind not in "iu":
        index, value = _first_non_integer(digits)
        raise InvalidTypeError(f"digits[{index}] is {value!r}, expected an integer in 0..9")
    if array.min() < 0 or array.max() > 9:
        index = int(np.flatnonzero((array < 0) | (array > 9))[0])
        raise InvalidValueError(
            f"digits[{index}] is {int(array[index])!r}, expected an integer in 0..9"
        )
    return array.astype(np.int64)


def _first_non_integer(digits: Any) -> tuple[int, object]:
    """Find the first element of ``digits`` that is not an integer, for the error message."""
    for index, value in enumerate(digits):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            return index, value
    return 0, digits


def validate_spacing(spacing_range: object) -> tuple[int, int]:
    """Return ``spacing_range`` as ``(min, max)`` ints with ``-27 <= min <= max``.

    Raises:
        TypeError: not a pair of integers.
        ValueError: ``min > max`` or ``min < -27``.
    """
    if type(spacing_range) is tuple and len(spacing_range) == 2:
        low, high = spacing_range
        if type(low) is int and type(high) is int and -MAX_OVERLAP <= low <= high:
            return low, high  # the common case, spared the general checks
    try:
        low, high = spacing_range  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InvalidTypeError(
            f"spacing_range={spacing_range!r} is not a pair, expected (min, max) integers"
        ) from None
    for name, value in (("min", low), ("max", high)):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            raise InvalidTypeError(f"spacing_range {name} is {value!r}, expected an integer")
    low, high = int(low), int(high)
    if low > high:
        raise InvalidValueError(f"spacing_range=({low}, {high}): min must be <= max")
    if low < -MAX_OVERLAP:
        raise InvalidValueError(
            f"spacing_range min is {low}, expected >= -{MAX_OVERLAP} "
            f"(digits are {DIGIT_SIZE} columns wide)"
        )
    return low, high


def validate_width(image_width: object) -> int:
    """Return ``image_width`` as an int >= 1.

    Raises:
        TypeError: not an integer.
        ValueError: below 1.
    """
    if type(image_width) is int and image_width >= 1:
        return image_width
    if isinstance(image_width, bool | np.bool_) or not isinstance(image_width, numbers.Integral):
        raise InvalidTypeError(f"image_width={image_width!r} is not an integer")
    if image_width < 1:
        raise InvalidValueError(f"image_width={image_width!r} is too small, expected at least 1")
    return int(image_width)


def make_rng(seed: object) -> np.random.Generator:
    """Return the generator for ``seed``: ``None``, a non-negative int, or a Generator.

    An int gives the stream of ``np.random.default_rng(seed)`` from a generator this thread
    reuses (see :func:`~seqbuilder.image.single.seeded_generator`): draw from it before the
    next call.

    Raises:
        TypeError: any other type.
        ValueError: a negative int.
    """
    if type(seed) is int and seed >= 0:  # the common case, spared the slower ABC checks
        return seeded_generator(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (
        isinstance(seed, bool | np.bool_) or not isinstance(seed, numbers.Integral)
    ):
        raise InvalidTypeError(f"seed={seed!r} is not None, an int or a numpy.random.Generator")
    if seed is None:
        return np.random.default_rng()
    if int(seed) < 0:
        raise InvalidValueError(f"seed={seed!r} is negative, expected an int >= 0")
    return seeded_generator(int(seed))


_KEYS = tuple(f.name for f in fields(Augment))
_ELASTIC_KEYS = tuple(f.name for f in fields(Elastic))
_RANGES = ("scale", "thickness", "blur")


def parse_augment(value: object) -> Augment:
    """Return the :class:`~seqbuilder.image.options.Augment` for a preset, a mapping or None.

    Args:
        value: None or ``"none"`` (off), ``"light"``, ``"heavy"``, an :class:`Augment`, or a
            mapping of keys (``{"rotation": 8, "elastic": {"alpha": 30, "sigma": 4}}``);
            keys a mapping leaves out are off.

    Raises:
        InvalidValueError: an unknown preset or key (the message lists the valid ones), or a
            value out of its range.
        InvalidTypeError: not one of the above, or a key of the wrong type.
    """
    if value is None:
        return PRESETS["none"]
    if isinstance(value, Augment):
        return value
    if isinstance(value, str):
        if value not in PRESETS:
            raise InvalidValueError(
                f"augment={value!r} is not a preset, expected one of "
                f"{', '.join(map(repr, PRESETS))} or a mapping of keys"
            )
        return PRESETS[value]
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            f"augment={value!r} is not None, a preset name or a mapping of augmentation keys"
        )
    _check_keys(value, _KEYS, "augment")
    arguments: dict[str, Any] = {}
    for key, item in value.items():
        if key in _RANGES:
            arguments[key] = _pair(item, f"augment.{key}")
        elif key == "elastic":
            if not isinstance(item, Mapping):
                raise InvalidTypeError(
                    f"augment.elastic is {item!r}, expected a mapping of alpha and sigma"
                )
            _check_keys(item, _ELASTIC_KEYS, "augment.elastic")
            arguments[key] = Elastic(
                **{k: _number(v, f"augment.elastic.{k}") for k, v in item.items()}
            )
        elif key == "baseline":
            arguments[key] = _integer(item, "augment.baseline")
        else:
            arguments[key] = _number(item, f"augment.{key}")
    return Augment(**arguments)


def _check_keys(mapping: Mapping[Any, Any], known: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in known:
            raise InvalidValueError(
                f"{where} has no key {key!r}, expected some of {', '.join(known)}"
            )


def _number(value: object, key: str) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{key} is {value!r}, expected a number")
    if not math.isfinite(float(value)):
        raise InvalidValueError(f"{key} is {value!r}, expected a finite number")
    return float(value)


def _integer(value: object, key: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{key} is {value!r}, expected an integer")
    return int(value)


def _pair(value: object, key: str) -> Range:
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
        raise InvalidTypeError(f"{key} is {value!r}, expected [min, max]")
    low, high = value  # type: ignore[misc]
    return _number(low, key), _number(high, key)  # type: ignore[has-type]
