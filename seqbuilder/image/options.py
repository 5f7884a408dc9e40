"""The options shared by the core function, the CLI and the builder config.

Composition: the YAML, the CLI and the Python API spell the values the same way: the API takes
the plain strings (``fit="pad"``), the config holds these Enums, whose member names equal their
values because OmegaConf matches YAML values against member *names* (so ``Align.center`` cannot
be a ``str`` Enum: it would shadow ``str.center``).

Augmentation: :class:`Augment` holds the keys, validated on construction with messages that
name the key; :data:`PRESETS` are ``none``, ``light`` and ``heavy`` (``conf/augment/*.yaml``
hold the same values, which a test checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..errors import InvalidValueError


class Fit(Enum):
    """How the composed sequence meets ``image_width``."""

    pad = "pad"
    scale = "scale"
    auto = "auto"


class Align(Enum):
    """Where a padded sequence sits on its canvas."""

    center = "center"
    left = "left"
    random = "random"


class DigitCrop(Enum):
    """Which columns of each MNIST digit take part in the spacing."""

    box = "box"
    ink = "ink"


class Background(Enum):
    """The pixel convention: white ink on black, or dark ink on white."""

    black = "black"
    white = "white"


def parse_option(kind: type[Enum], value: object, name: str) -> str:
    """Return ``value`` as the plain string of one member of ``kind``.

    Raises:
        InvalidValueError: ``value`` is not one of the members; the message lists them.
    """
    for member in kind:
        if value == member.value or value is member:
            return str(member.value)
    valid = ", ".join(repr(m.value) for m in kind)
    raise InvalidValueError(f"{name}={value!r} is not a valid option, expected one of {valid}")


@dataclass(frozen=True)
class ComposeOptions:
    """The four layout choices of one composition, as plain validated strings."""

    fit: str = Fit.pad.value
    align: str = Align.center.value
    digit_crop: str = DigitCrop.box.value
    background: str = Background.black.value

    @classmethod
    def of(
        cls, fit: object, align: object, digit_crop: object, background: object
    ) -> ComposeOptions:
        """Validate the four options and return them together.

        Raises:
            ValueError: an option is not one of its valid values.
        """
        key = (fit, align, digit_crop, background)
        try:  # the single-image API validates the same four strings on every call
            return _VALIDATED[key]
        except (KeyError, TypeError):  # TypeError: an unhashable value, reported below
            pass
        options = cls(
            parse_option(Fit, fit, "fit"),
            parse_option(Align, align, "align"),
            parse_option(DigitCrop, digit_crop, "digit_crop"),
            parse_option(Background, background, "background"),
        )
        _VALIDATED[key] = options  # only valid keys get here: at most a few dozen
        return options


_VALIDATED: dict[tuple[object, ...], ComposeOptions] = {}


Range = tuple[float, float]

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

    Construct one directly, by :func:`~seqbuilder.image.sequence.parse_augment` from a preset
    name or a mapping, or take one of :data:`PRESETS`. Invalid values raise
    :class:`~seqbuilder.errors.InvalidValueError` naming the key
    (``augment.elastic.sigma (-1.0) must be in [0, 16]``).
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
        for key in ("scale", "thickness", "blur"):  # a list from YAML or a caller: a pair
            low, high = getattr(self, key)
            object.__setattr__(self, key, (float(low), float(high)))
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
