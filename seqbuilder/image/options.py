"""The composition options shared by the core function, the CLI and the builder config.

The YAML, the CLI and the Python API spell the values the same way: the API takes the plain
strings (``fit="pad"``), the config holds these Enums, whose member names equal their values
because OmegaConf matches YAML values against member *names* (so ``Align.center`` cannot be a
``str`` Enum: it would shadow ``str.center``).
"""

from __future__ import annotations

from dataclasses import dataclass
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
