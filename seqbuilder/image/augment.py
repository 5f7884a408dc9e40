"""Augmentation: handwriting-like variation of the digits, drawn from the block's generator.

>>> from seqbuilder import generate_numbers_sequence
>>> image = generate_numbers_sequence("0965", (-2, 4), 160, seed=7, augment="heavy")

:class:`Augment` holds the keys of the contract's "Augmentation" section; :data:`PRESETS` holds
``none``, ``light`` and ``heavy`` (``conf/augment/*.yaml`` hold the same values, which a test
checks). Work happens in two places of :func:`~seqbuilder.image.engine.generate_batch`:

- **Per digit, before composition** (:func:`transform_glyphs`): stroke width, then one affine
  map per digit (the sample's slant, the digit's rotation, scale and baseline shift, about the
  glyph centre) and its elastic field, folded into a single bilinear resampling of every glyph
  of the block. So ``digit_crop="ink"`` measures gaps between the transformed strokes, and
  negative gaps make transformed strokes touch.
- **Per sample, after composition** (:func:`finish_images`): Gaussian blur, then additive
  Gaussian noise, then clipping to ``[0, 1]``.

Canvas: each digit stays in its 28 x 28 glyph; ink a transform carries past the glyph's edge is
cut off (the presets keep that rare and slight). Boxes: each digit's box is recomputed from its
transformed ink and placed where the digit lands, so it is exact for the image before blur and
noise; those two change pixel values only (a blurred stroke's soft edge may reach a pixel or
two past its box, and noise lies everywhere).

Draw order, after the engine's draws of MNIST samples and gaps (so ``labels``, ``lengths`` and
``source_index`` never change with augmentation): ``(B, 2)`` uniforms per sample (slant,
thickness) and ``(B, L, 5)`` per digit slot (rotation, scale, baseline, elastic window row and
column), drawn whenever a per-digit key is on; then composition's draws; then ``(B, 2)``
uniforms (blur, noise level) and the noise, whenever blur or noise is on. With every key off
nothing is drawn, so ``augment="none"`` gives exactly the unaugmented bytes. Each key reads
its own uniforms, so changing one key's range leaves every other key's effect as it was.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidTypeError, InvalidValueError
from ..mnist.load import find_ink_boxes
from . import filters
from .compose import ImageArray, encode_values

Range = tuple[float, float]

CHUNK_GLYPHS = 256  # glyphs transformed at once: the temporaries of a chunk stay in cache
CHUNK_SAMPLES = 32  # samples blurred and noised at once, for the same reason

# The largest value each key accepts: beyond these a digit leaves its glyph or turns to mush.
LIMITS = {
    "slant": 45.0,
    "rotation": 180.0,
    "scale": 3.0,
    "baseline": 14,
    "thickness": 4.0,
    "elastic.alpha": 200.0,
    "elastic.sigma": 16.0,
    "blur": 4.0,
    "noise": 1.0,
}


@dataclass(frozen=True)
class Elastic:
    """Per-digit elastic distortion (Simard et al., 2003); ``alpha=0`` is off."""

    alpha: float = 0.0  # displacement scale, pixels per unit of smoothed noise
    sigma: float = 0.0  # Gaussian smoothing of the random field, in pixels


@dataclass(frozen=True)
class Augment:
    """The augmentation keys; each at its default (0, or ``(1, 1)`` for a factor) is off.

    Construct one directly, by :func:`parse_augment` from a preset name or a mapping, or take
    one of :data:`PRESETS`. Invalid values raise :class:`~seqbuilder.errors.InvalidValueError`
    naming the key (``augment.elastic.sigma (-1) must be >= 0``).
    """

    slant: float = 0.0  # degrees: one shear angle per sample, uniform in [-slant, slant]
    rotation: float = 0.0  # degrees: one angle per digit, uniform in [-rotation, rotation]
    scale: Range = (1.0, 1.0)  # one size factor per digit, uniform in [min, max]
    baseline: int = 0  # pixels: one vertical shift per digit, an integer in [-b, b]
    thickness: Range = (0.0, 0.0)  # pixels: one stroke-width change per sample
    elastic: Elastic = field(default_factory=Elastic)
    blur: Range = (0.0, 0.0)  # pixels: one Gaussian blur sigma per sample
    noise: float = 0.0  # value units: one noise standard deviation per sample in [0, noise]

    def __post_init__(self) -> None:
        _check_angle("slant", self.slant)
        _check_angle("rotation", self.rotation)
        _check_range("scale", self.scale, 0.0, LIMITS["scale"], low_open=True)
        if not (isinstance(self.baseline, int) and 0 <= self.baseline <= LIMITS["baseline"]):
            raise InvalidValueError(
                f"augment.baseline ({self.baseline!r}) must be an integer in "
                f"0..{LIMITS['baseline']}"
            )
        limit = LIMITS["thickness"]
        _check_range("thickness", self.thickness, -limit, limit)
        _check_value("elastic.alpha", self.elastic.alpha, 0.0, LIMITS["elastic.alpha"])
        _check_value("elastic.sigma", self.elastic.sigma, 0.0, LIMITS["elastic.sigma"])
        if self.elastic.alpha > 0 and self.elastic.sigma == 0:
            raise InvalidValueError(
                "augment.elastic.sigma (0) must be > 0 when augment.elastic.alpha is above 0"
            )
        _check_range("blur", self.blur, 0.0, LIMITS["blur"])
        _check_value("noise", self.noise, 0.0, LIMITS["noise"])

    @property
    def warps(self) -> bool:
        """Whether any key moves ink: slant, rotation, scale, baseline or elastic."""
        geometric = (self.slant, self.rotation, self.baseline, self.elastic.alpha)
        return any(geometric) or self.scale != (1.0, 1.0)

    @property
    def per_digit(self) -> bool:
        """Whether glyphs change before composition (a warp or a stroke-width change)."""
        return self.warps or self.thickness != (0.0, 0.0)

    @property
    def per_sample(self) -> bool:
        """Whether finished images change after composition (blur or noise)."""
        return self.blur != (0.0, 0.0) or self.noise > 0

    @property
    def is_identity(self) -> bool:
        """Whether every key is off: the engine then draws and changes nothing."""
        return not (self.per_digit or self.per_sample)


def _check_value(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidValueError(f"augment.{key} ({value!r}) must be in [{low:g}, {high:g}]")


def _check_angle(key: str, value: float) -> None:
    if value < 0:
        raise InvalidValueError(f"augment.{key} ({value!r}) must be >= 0 (degrees)")
    _check_value(key, value, 0.0, float(LIMITS[key]))


def _check_range(key: str, pair: Range, low: float, high: float, *, low_open: bool = False) -> None:
    first, last = pair
    if first > last:
        raise InvalidValueError(f"augment.{key} ({list(pair)!r}) must have min <= max")
    if (first <= low if low_open else first < low) or last > high:
        bracket = "(" if low_open else "["
        raise InvalidValueError(
            f"augment.{key} ({list(pair)!r}) must lie in {bracket}{low:g}, {high:g}]"
        )


# The presets, defined once: conf/augment/<name>.yaml must equal these (a test checks).
PRESETS: dict[str, Augment] = {
    "none": Augment(),
    # a tidy writer: a little slant, size, baseline and pen wobble; looks clean
    "light": Augment(
        slant=6.0,
        rotation=3.0,
        scale=(0.9, 1.0),
        baseline=1,
        thickness=(-0.4, 0.4),
        blur=(0.0, 0.4),
    ),
    # the widest variation a person still reads at a glance; no noise (see docs/augmentation.md)
    "heavy": Augment(
        slant=15.0,
        rotation=8.0,
        scale=(0.8, 1.0),
        baseline=2,
        thickness=(-0.8, 1.2),
        elastic=Elastic(alpha=30.0, sigma=4.0),
        blur=(0.0, 0.8),
    ),
}

_KEYS = tuple(f.name for f in fields(Augment))
_ELASTIC_KEYS = tuple(f.name for f in fields(Elastic))
_RANGES = ("scale", "thickness", "blur")


def parse_augment(value: object) -> Augment:
    """Return the :class:`Augment` for a preset name, a mapping of keys, or None.

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


def transform_glyphs(
    glyphs: npt.NDArray[np.uint8],
    valid: npt.NDArray[np.bool_] | None,
    params: Augment,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Apply the per-digit keys to every glyph of a block, and find their new ink boxes.

    Draws ``(B, 2)`` then ``(B, L, 5)`` uniforms (see the module docstring), whatever the
    number of valid digits, so a block's draws depend only on its shape.

    Args:
        glyphs: ``(B, L, 28, 28) uint8`` the MNIST glyph of each digit slot.
        valid: ``(B, L)`` which slots hold a digit, or None when all do; others are skipped.
        params: the keys; at least one per-digit key is on.
        rng: the generator.

    Returns:
        ``(glyphs, ink_boxes)``: new ``(B, L, 28, 28) uint8`` glyphs and ``(B, L, 4) int16``
        ``x0, y0, x1, y1`` of each one's ink (``0, 0, 0, 0`` where none is left).
    """
    n_samples, n_slots = glyphs.shape[:2]
    per_sample = rng.random((n_samples, 2))
    per_digit = rng.random((n_samples, n_slots, 5))
    mask = np.ones((n_samples, n_slots), bool) if valid is None else valid
    sample_of = np.broadcast_to(np.arange(n_samples)[:, None], mask.shape)[mask]  # (N,)
    digit = per_digit[mask]  # (N, 5)
    chosen = glyphs[mask]  # (N, 28, 28)

    change = None
    if params.thickness != (0.0, 0.0):
        change = _spread(per_sample[:, 1], params.thickness)[sample_of].astype(np.float32)
    slant = np.tan(np.radians(_spread(per_sample[:, 0], (-params.slant, params.slant))))
    inverse = _inverse_maps(
        slant[sample_of],
        np.radians(_spread(digit[:, 0], (-params.rotation, params.rotation))),
        _spread(digit[:, 1], params.scale),
    )
    shift = np.zeros((len(chosen), 2), np.float32)
    shift[:, 1] = np.floor(digit[:, 2] * (2 * params.baseline + 1)) - params.baseline
    offsets = (digit[:, 3:5] * filters.PLANE).astype(np.intp)
    elastic = params.elastic
    planes = None
    if elastic.alpha > 0:
        planes = filters.elastic_planes(elastic.sigma, elastic.alpha)
    # A few hundred glyphs at a time keep every temporary in the CPU cache (about 3x faster
    # than whole-block arrays); each step is still vectorised over the glyphs of a chunk.
    for start in range(0, len(chosen), CHUNK_GLYPHS):
        part = slice(start, start + CHUNK_GLYPHS)
        if change is not None:
            chosen[part] = filters.change_stroke_width(chosen[part], change[part])
        if params.warps:
            chosen[part] = filters.warp_glyphs(
                chosen[part], inverse[part], shift[part], planes, offsets[part]
            )

    out = glyphs.copy()
    out[mask] = chosen
    boxes = np.zeros((n_samples, n_slots, 4), np.int16)
    boxes[mask] = find_ink_boxes(chosen)
    return out, boxes


def _spread(uniform: npt.NDArray[np.float64], bounds: Range) -> npt.NDArray[np.float64]:
    """Map uniforms on [0, 1) onto ``[low, high]``."""
    low, high = bounds
    return low + uniform * (high - low)


def _inverse_maps(
    shear: npt.NDArray[np.float64],
    angle: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """``(N, 2, 2)`` inverses of ``shear @ rotate @ scale`` on ``(x, y)``, y pointing down.

    The forward map scales by ``scale``, turns by ``angle`` (positive: counterclockwise as
    seen) and shears rows above the centre right by ``shear`` pixels per row (a forward slant).
    """
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    inverse = np.empty((len(angle), 2, 2), np.float32)
    inverse[:, 0, 0] = cos
    inverse[:, 0, 1] = cos * shear - sin
    inverse[:, 1, 0] = sin
    inverse[:, 1, 1] = sin * shear + cos
    return inverse


def finish_images(
    raw: npt.NDArray[np.uint8],
    params: Augment,
    rng: np.random.Generator,
    *,
    background: str,
    dtype: type[np.uint8] | type[np.float32],
) -> ImageArray:
    """Blur and add noise to composed images, each sample with its own draws, then encode.

    Args:
        raw: ``(B, 28, W) uint8`` composed images, white ink on black (value = raw / 255).
        params: the keys; blur or noise is on.
        rng: the generator: ``(B, 2)`` uniforms (blur sigma, noise level), then the noise,
            :data:`CHUNK_SAMPLES` samples at a time.
        background: ``"black"`` or ``"white"``, applied after clipping to [0, 1].
        dtype: ``np.uint8`` (``round(value * 255)``) or ``np.float32``.

    Returns:
        ``(B, 28, W)`` of ``dtype``.
    """
    draws = rng.random((len(raw), 2))
    sigma = _spread(draws[:, 0], params.blur).astype(np.float32)
    level = (draws[:, 1] * params.noise).astype(np.float32)
    out = np.empty(raw.shape, dtype)
    for start in range(0, len(raw), CHUNK_SAMPLES):
        part = slice(start, start + CHUNK_SAMPLES)
        if params.blur != (0.0, 0.0):
            values = filters.blur_samples(raw[part], sigma[part], gain=1 / 255)
        else:
            values = np.divide(raw[part], np.float32(255), dtype=np.float32)
        if params.noise > 0:
            values += filters.normal_noise(rng, values.shape, level[part])
            np.clip(values, 0, 1, out=values)
        else:  # a blur's weights are >= 0 and sum to 1: only rounding can pass 1
            np.minimum(values, 1, out=values)
        out[part] = encode_values(values, background, dtype)
    return out
