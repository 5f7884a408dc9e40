"""The builder's configuration schema, registered with Hydra's ConfigStore.

The YAML under ``conf/`` holds values; this module holds their types and the checks between
fields. Hydra merges the YAML onto :class:`BuildConfig` (``base_config`` in the defaults list),
so a wrong type, an unknown key or an invalid enum value fails while the config is composed,
naming the key. ``OmegaConf.to_object`` then runs each ``__post_init__``, where the
cross-field checks live, so every error surfaces before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from importlib.resources import files
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from ..errors import ConfigError, InvalidValueError
from ..image.compose import MAX_OVERLAP, check_fits
from ..image.options import Align, Augment, Background, DigitCrop, Elastic, Fit
from ..mnist.resources import Source
from ..store.schema import (
    DEFAULT_CHUNK_SAMPLES,
    DEFAULT_COMPRESSION_LEVEL,
    Compression,
    DeflateEngine,
    StorageDtype,
)


class SequenceKind(Enum):
    """Where the digit strings of a build come from."""

    random = "random"
    list = "list"
    file = "file"


@dataclass
class DataConfig:
    # folder holding MNIST; null: $SEQBUILDER_DATA, then the user cache (downloading if needed)
    dir: str | None = None


@dataclass
class SequencesConfig:
    # random: uniform digits and lengths; list: draw from `values`; file: one string per line
    kind: SequenceKind = SequenceKind.random
    # shortest sequence (kind=random)
    min_length: int = 1
    # longest sequence (kind=random)
    max_length: int = 6
    # digit strings to draw from, uniformly (kind=list)
    values: list[str] = field(default_factory=list)
    # text file with one digit string per line, drawn uniformly (kind=file)
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind is SequenceKind.random:
            if self.min_length < 1:
                raise ConfigError(f"sequences.min_length ({self.min_length}) must be >= 1")
            if self.min_length > self.max_length:
                raise ConfigError(
                    f"sequences.min_length ({self.min_length}) must be <= "
                    f"sequences.max_length ({self.max_length})"
                )
        elif self.kind is SequenceKind.list:
            if not self.values:
                raise ConfigError("sequences.values is empty, expected digit strings (kind=list)")
            for index, value in enumerate(self.values):
                _check_digit_string(value, f"sequences.values[{index}]")
        elif self.path is None:
            raise ConfigError("sequences.path is null, expected a text file (kind=file)")


@dataclass
class SpacingConfig:
    # smallest gap between neighbouring digits in pixels; negative overlaps them (>= -27)
    min: int = 0
    # largest gap in pixels; each gap is uniform on [min, max]
    max: int = 6

    def __post_init__(self) -> None:
        if self.min > self.max:
            raise ConfigError(f"spacing.min ({self.min}) must be <= spacing.max ({self.max})")
        if self.min < -MAX_OVERLAP:
            raise ConfigError(f"spacing.min ({self.min}) must be >= -{MAX_OVERLAP}")


@dataclass
class SplitConfig:
    # number of samples in this split
    count: int = 1000
    # MNIST split the digit images come from: train or test
    source: Source = Source.train


def _default_splits() -> dict[str, SplitConfig]:
    return {
        "train": SplitConfig(count=60000, source=Source.train),
        "test": SplitConfig(count=10000, source=Source.test),
    }


@dataclass
class StorageConfig:
    # image dtype on disk: uint8 (round(value * 255)) or float32
    dtype: StorageDtype = StorageDtype.uint8
    # HDF5 filter of `images`: gzip, lzf, none, or zstd/blosc (these need seqbuilder[fast])
    compression: Compression = Compression.gzip
    # gzip level 0..9 (also the zstd and blosc level; ignored by lzf and none)
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    # samples per HDF5 chunk of `images`; small chunks make shuffled single-sample reads fast
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES
    # gzip encoder, all writing standard deflate any reader decodes: auto (levels 1..3: isal if
    # installed, else rle; other levels: zlib), zlib (chunks byte-identical to HDF5's own), rle
    # (zlib's run-length strategy: 2x level 4's speed, smaller on these images) or isal (Intel
    # ISA-L, 4x zlib's speed at levels 0..3; needs seqbuilder[fast])
    deflate: DeflateEngine = DeflateEngine.auto

    def __post_init__(self) -> None:
        if not 0 <= self.compression_level <= 9:
            raise ConfigError(
                f"storage.compression_level ({self.compression_level}) must be in 0..9"
            )
        if self.deflate is DeflateEngine.isal:
            if self.compression_level > 3:
                raise ConfigError(
                    f"storage.compression_level ({self.compression_level}) must be in 0..3 "
                    "with storage.deflate=isal"
                )
            try:
                import isal  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "storage.deflate=isal needs the isal package: pip install 'seqbuilder[fast]'"
                ) from None
        if self.chunk_samples < 1:
            raise ConfigError(f"storage.chunk_samples ({self.chunk_samples}) must be >= 1")


@dataclass
class GalleryConfig:
    # samples shown in each split's gallery PNG (0: no gallery)
    count: int = 32

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ConfigError(f"gallery.count ({self.count}) must be >= 0")


@dataclass
class ShardConfig:
    # which share of every split this run builds, 0 <= index < count
    index: int = 0
    # how many runs share the build (join their files with `seqbuilder merge`)
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"shard.count ({self.count}) must be >= 1")
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard.index ({self.index}) must be in 0..{self.count - 1}")


@dataclass
class ElasticConfig:
    # displacement scale, in pixels per unit of smoothed noise (Simard et al. use 34); 0: off
    alpha: float = 0.0
    # Gaussian smoothing of the random displacement field, in pixels (> 0 when alpha is)
    sigma: float = 0.0


@dataclass
class AugmentConfig:
    # degrees: one shear angle per sample, uniform in [-slant, slant] (a writer's slant)
    slant: float = 0.0
    # degrees: one angle per digit, uniform in [-rotation, rotation]
    rotation: float = 0.0
    # [min, max]: one size factor per digit, uniform
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    # pixels: one vertical shift per digit, an integer in [-baseline, baseline]
    baseline: int = 0
    # [min, max] pixels: one stroke-width change per sample (negative thins)
    thickness: list[float] = field(default_factory=lambda: [0.0, 0.0])
    # per-digit elastic distortion (Simard et al., 2003)
    elastic: ElasticConfig = field(default_factory=ElasticConfig)
    # [min, max] pixels: one Gaussian blur sigma per sample
    blur: list[float] = field(default_factory=lambda: [0.0, 0.0])
    # value units: one additive Gaussian noise level per sample, uniform in [0, noise]
    noise: float = 0.0

    def __post_init__(self) -> None:
        self.to_augment()  # every check, with messages naming the key

    def to_augment(self) -> Augment:
        """Return these keys as the image layer's validated :class:`Augment`.

        Raises:
            ConfigError: a value out of range or a pair that is not ``[min, max]``.
        """
        pairs = {"scale": self.scale, "thickness": self.thickness, "blur": self.blur}
        for key, pair in pairs.items():
            if len(pair) != 2:
                raise ConfigError(f"augment.{key} ({list(pair)!r}) must be [min, max]")
        try:
            return Augment(
                slant=self.slant,
                rotation=self.rotation,
                scale=(self.scale[0], self.scale[1]),
                baseline=self.baseline,
                thickness=(self.thickness[0], self.thickness[1]),
                elastic=Elastic(alpha=self.elastic.alpha, sigma=self.elastic.sigma),
                blur=(self.blur[0], self.blur[1]),
                noise=self.noise,
            )
        except InvalidValueError as error:
            raise ConfigError(str(error)) from None


@dataclass
class BuildConfig:
    # the whole build is a pure function of the configuration and this seed
    seed: int = 0
    # where MNIST comes from
    data: DataConfig = field(default_factory=DataConfig)
    # which digit strings to draw
    sequences: SequencesConfig = field(default_factory=SequencesConfig)
    # gap range between neighbouring digits
    spacing: SpacingConfig = field(default_factory=SpacingConfig)
    # output image width in pixels
    width: int = 200
    # pad, scale or auto: how a sequence meets `width`
    fit: Fit = Fit.pad
    # center, left or random placement of a padded sequence
    align: Align = Align.center
    # box (28-column digits) or ink (digits cropped to their strokes)
    digit_crop: DigitCrop = DigitCrop.box
    # black (white ink, value = raw / 255) or white (dark ink, value = 1 - raw / 255)
    background: Background = Background.black
    # the dataset splits to build, by name
    splits: dict[str, SplitConfig] = field(default_factory=_default_splits)
    # how images are written to HDF5
    storage: StorageConfig = field(default_factory=StorageConfig)
    # the PNG sample gallery
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    # worker processes; 0 uses every core; the output does not depend on it
    workers: int = 0
    # build only one share of every split, for many machines
    shard: ShardConfig = field(default_factory=ShardConfig)
    # continue an interrupted build in the same hydra.run.dir with the same configuration
    resume: bool = False
    # handwriting-like variation of the digits (the augment group: none, light, heavy)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed ({self.seed}) must be >= 0")
        if self.width < 1:
            raise ConfigError(f"width ({self.width}) must be >= 1")
        if self.workers < 0:
            raise ConfigError(f"workers ({self.workers}) must be >= 0 (0: every core)")
        if not self.splits:
            raise ConfigError("splits is empty, expected at least one split")
        for name, split in self.splits.items():
            if split.count < 0:
                raise ConfigError(f"splits.{name}.count ({split.count}) must be >= 0")

    def check_fits(self, max_length: int) -> None:
        """Reject, under ``fit=pad``, a width the widest possible sequence would overflow.

        Raises:
            ConfigError: names ``width`` and the minimum it needs.
        """
        try:
            check_fits(
                max_length,
                self.spacing.max,
                self.width,
                self.fit.value,
                subject=f"width ({self.width})",
            )
        except InvalidValueError as error:
            raise ConfigError(str(error)) from None


def _check_digit_string(value: object, key: str) -> None:
    if not isinstance(value, str) or not value or not value.isascii() or not value.isdigit():
        raise ConfigError(f"{key} is {value!r}, expected a non-empty string of digits 0-9")


def read_sequence_file(path: str) -> list[str]:
    """Return the digit strings of a ``kind=file`` sequences file, one per non-blank line.

    Raises:
        ConfigError: the file is missing, unreadable, empty, or a line is not digits.
    """
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"sequences.path {path!r} cannot be read: {error}") from None
    values = [line.strip() for line in lines if line.strip()]
    if not values:
        raise ConfigError(f"sequences.path {path!r} holds no digit strings")
    for number, line in enumerate(lines, start=1):
        if line.strip():
            _check_digit_string(line.strip(), f"sequences.path {path!r} line {number}")
    return values


def packaged_file(relative: str) -> str:
    """Return the path of a file shipped in ``seqbuilder.conf`` (the ``pkg_file`` resolver)."""
    return str(files("seqbuilder.conf").joinpath(relative))


def register_configs() -> None:
    """Register :class:`BuildConfig` as ``base_config`` and the ``pkg_file`` resolver."""
    ConfigStore.instance().store(name="base_config", node=BuildConfig)
    if not OmegaConf.has_resolver("pkg_file"):
        OmegaConf.register_new_resolver("pkg_file", packaged_file)
