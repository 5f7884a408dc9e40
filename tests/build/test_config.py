"""The real ``conf/`` composed the way Hydra composes it, and every way a config can be wrong.

"Loading" a configuration is what ``seqbuilder build`` does before any work: compose ``conf/``
with the overrides (types, enums and unknown keys are checked against the schema here),
``OmegaConf.to_object`` (the schema's ``__post_init__`` cross-field checks), then
``plan.make_recipe`` (reads a ``kind=file`` sequences file and checks the width fits).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqbuilder.build.config import BuildConfig, SequenceKind, read_sequence_file, register_configs
from seqbuilder.build.plan import make_recipe
from seqbuilder.image.options import PRESETS as AUGMENT_PRESETS
from seqbuilder.image.options import Align, Background, DigitCrop, Fit
from seqbuilder.mnist.resources import Source
from seqbuilder.store.schema import Compression, StorageDtype
from tests.support.bad_configs import BAD_CONFIGS, write_bad_sequence_file

CONF = Path(str(files("seqbuilder.conf")))
SEQUENCE_OPTIONS = sorted(path.stem for path in (CONF / "sequences").glob("*.yaml"))
PRESETS = sorted(path.stem for path in (CONF / "preset").glob("*.yaml"))
AUGMENT_OPTIONS = sorted(path.stem for path in (CONF / "augment").glob("*.yaml"))
EXAMPLE_FILES = sorted((CONF / "sequences").glob("*.txt"))

# Everything a bad configuration may raise while it is loaded; the CLI reports each as one line.
LOAD_ERRORS = (ValueError, HydraException, OmegaConfBaseException)


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose the packaged ``conf/`` with ``overrides``, as ``seqbuilder build`` does."""
    register_configs()
    with initialize_config_module(config_module="seqbuilder.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def load_config(overrides: Sequence[str]) -> BuildConfig:
    """Compose, convert to the schema and plan: every check that runs before any work."""
    config = OmegaConf.to_object(compose_config(overrides))
    assert isinstance(config, BuildConfig)
    make_recipe(config)
    return config


def error_text(error: BaseException) -> str:
    """The messages of ``error`` and its causes, one line: what the user is shown."""
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(" ".join(str(current).split()))
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


@pytest.fixture(scope="module")
def cfg() -> DictConfig:
    """The real configuration with ``+preset=tiny``, composed once for the module."""
    return compose_config(["+preset=tiny"])


def test_the_tiny_preset_shrinks_every_split_and_keeps_one_worker(cfg: DictConfig) -> None:
    config = OmegaConf.to_object(cfg)

    assert isinstance(config, BuildConfig)
    assert {name: split.count for name, split in config.splits.items()} == {
        "train": 200,
        "test": 50,
        "val": 50,
    }
    assert config.splits["val"].source is Source.train
    assert config.gallery.count == 8
    assert config.workers == 1


def test_the_composed_config_converts_to_the_schema_types(cfg: DictConfig) -> None:
    config = OmegaConf.to_object(cfg)

    assert isinstance(config, BuildConfig)
    assert config.sequences.kind is SequenceKind.random
    assert config.fit is Fit.pad
    assert config.align is Align.center
    assert config.digit_crop is DigitCrop.box
    assert config.background is Background.black
    assert config.storage.dtype is StorageDtype.uint8
    assert config.storage.compression is Compression.gzip


def test_a_shrunk_copy_of_the_composed_config_is_still_checked(cfg: DictConfig) -> None:
    shrunk = cfg.copy()
    shrunk.spacing.min = 9
    shrunk.spacing.max = 4

    with pytest.raises(ValueError, match=r"spacing\.min \(9\) must be <= spacing\.max \(4\)"):
        OmegaConf.to_object(shrunk)
    assert cfg.spacing.min == 0, "the module's composed config must stay untouched"


def test_the_default_config_follows_the_contract_defaults() -> None:
    config = load_config([])

    assert config.splits["train"].source is Source.train
    assert config.splits["test"].source is Source.test
    assert config.storage.dtype is StorageDtype.uint8
    assert config.storage.compression is Compression.gzip
    assert config.data.dir is None
    assert config.seed == 0


@pytest.mark.parametrize("option", SEQUENCE_OPTIONS)
def test_every_sequences_option_loads_with_the_tiny_preset(option: str) -> None:
    config = load_config(["+preset=tiny", f"sequences={option}"])

    assert isinstance(config.sequences.kind, SequenceKind)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads(preset: str) -> None:
    config = load_config([f"+preset={preset}"])

    assert all(split.count >= 0 for split in config.splits.values())


def test_the_augment_group_holds_exactly_the_api_presets() -> None:
    assert sorted(AUGMENT_PRESETS) == AUGMENT_OPTIONS


@pytest.mark.parametrize("option", AUGMENT_OPTIONS)
def test_each_augment_option_equals_the_api_preset_of_its_name(option: str) -> None:
    config = load_config(["+preset=tiny", f"augment={option}"])

    assert config.augment.to_augment() == AUGMENT_PRESETS[option]
    assert make_recipe(config).augment == AUGMENT_PRESETS[option]


def test_augment_defaults_to_none_and_every_key_is_documented_in_its_yaml() -> None:
    config = load_config([])
    text = (CONF / "augment" / "none.yaml").read_text(encoding="utf-8").splitlines()
    keys = [line.split(":")[0].strip() for line in text if re.match(r"\s*\w+:", line)]

    assert config.augment.to_augment() == AUGMENT_PRESETS["none"]
    assert keys == [
        "slant", "rotation", "scale", "baseline", "thickness", "elastic", "alpha", "sigma",
        "blur", "noise",
    ]  # fmt: skip
    for index, line in enumerate(text):
        if re.match(r"\s*\w+: ", line):
            assert text[index - 1].lstrip().startswith("#"), f"no comment above {line!r}"


def test_one_augment_key_can_be_overridden_on_top_of_a_preset() -> None:
    config = load_config(["augment=heavy", "augment.slant=30", "augment.noise=0.05"])
    params = config.augment.to_augment()

    assert (params.slant, params.noise) == (30.0, 0.05)
    assert params.elastic == AUGMENT_PRESETS["heavy"].elastic


def test_the_sequence_and_preset_groups_are_not_empty() -> None:
    assert {"random", "list", "file"} <= set(SEQUENCE_OPTIONS)
    assert "tiny" in PRESETS


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(["fit=scale"], id="fit-scale"),
        pytest.param(["fit=auto"], id="fit-auto"),
        pytest.param(["align=left"], id="align-left"),
        pytest.param(["align=random"], id="align-random"),
        pytest.param(["digit_crop=ink"], id="digit-crop-ink"),
        pytest.param(["background=white"], id="background-white"),
        pytest.param(["storage.dtype=float32"], id="dtype-float32"),
        pytest.param(["storage.compression=lzf"], id="compression-lzf"),
        pytest.param(["storage.compression=none"], id="compression-none"),
        pytest.param(["storage.compression_level=0"], id="compression-level-0"),
        pytest.param(["spacing.min=-27", "spacing.max=-27"], id="spacing-most-overlap"),
        pytest.param(["splits.train.count=0"], id="empty-split"),
        pytest.param(["workers=0"], id="workers-every-core"),
        pytest.param(["width=10", "fit=scale"], id="narrow-width-scaled"),
        pytest.param(["~splits.val", "~splits.test"], id="train-split-only"),
    ],
)
def test_every_valid_choice_loads(overrides: list[str]) -> None:
    load_config(["+preset=tiny", *overrides])


@pytest.mark.parametrize(("overrides", "match"), BAD_CONFIGS)
def test_a_bad_configuration_is_rejected_at_load_naming_the_key(
    overrides: list[str], match: str, tmp_path: Path
) -> None:
    write_bad_sequence_file(tmp_path)
    overrides = [item.format(tmp=tmp_path) for item in overrides]

    with pytest.raises(LOAD_ERRORS) as caught:
        load_config(["+preset=tiny", *overrides])

    assert re.search(match, error_text(caught.value)), error_text(caught.value)


def test_a_width_that_fits_exactly_loads_under_fit_pad() -> None:
    load_config(["+preset=tiny", "width=198"])


def test_a_sequences_file_is_read_one_digit_string_per_non_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("0965\n\n  31415  \n8\n", encoding="utf-8")

    config = load_config(["+preset=tiny", "sequences=file", f"sequences.path={path}"])

    assert config.sequences.path is not None
    assert read_sequence_file(config.sequences.path) == ["0965", "31415", "8"]


def test_the_file_option_defaults_to_a_packaged_example_file() -> None:
    config = load_config(["sequences=file"])

    assert config.sequences.path is not None
    assert Path(config.sequences.path).is_file()
    assert Path(config.sequences.path).parent == CONF / "sequences"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[path.name for path in EXAMPLE_FILES])
def test_the_shipped_example_files_hold_only_digit_strings(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()

    assert lines, f"{path.name} is empty"
    bad = [line for line in lines if not re.fullmatch(r"[0-9]+", line)]
    assert not bad, f"{path.name} holds non-digit lines {bad[:5]}"


def test_the_shipped_list_option_holds_only_digit_strings() -> None:
    config = load_config(["sequences=list"])

    assert config.sequences.values
    assert all(re.fullmatch(r"[0-9]+", value) for value in config.sequences.values)
