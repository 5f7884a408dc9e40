"""The documentation site says what the code does: a stale page fails here.

The generated sections (every configuration key, every module) must match what
``docs/_tools/reference.py`` produces now; every ``seqbuilder build`` command the pages show
must compose; every error transcript must be the line the command prints today; every config
group option, file-format name, path and ``from seqbuilder... import`` must exist.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import itertools
import re
import shlex
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from omegaconf import OmegaConf

from seqbuilder.build.config import BuildConfig
from seqbuilder.build.plan import make_recipe
from seqbuilder.build.preflight import compose_config, expand_sweep
from seqbuilder.cli import main
from seqbuilder.store.schema import DATASETS, SCHEMA

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PAGES_AND_README = [*PAGES, ROOT / "README.md"]


def _load_reference_tool() -> ModuleType:
    """Import docs/_tools/reference.py by its path: it is a script, not a package."""
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "_tools/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


REFERENCE = _load_reference_tool()


def _page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def code_blocks(path: Path, languages: tuple[str, ...]) -> Iterator[str]:
    """The fenced code blocks of a Markdown file in one of ``languages``."""
    fence = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
    for match in fence.finditer(path.read_text(encoding="utf-8")):
        if match.group(1) in languages:
            yield match.group(2)


def shell_commands(block: str) -> Iterator[str]:
    """The commands of a shell block: continuations joined, comments and ``&&`` split off."""
    for line in block.replace("\\\n", " ").splitlines():
        code = line.split(" #", 1)[0].strip()
        if code and not code.startswith("#"):
            yield from (part.strip() for part in code.split("&&"))


def build_commands() -> Iterator[Any]:
    """Every ``seqbuilder build`` command in a bash block of the pages and the README."""
    for path in PAGES_AND_README:
        for block in code_blocks(path, ("bash",)):
            for command in shell_commands(block):
                words = shlex.split(command)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words.pop(0)  # SEQBUILDER_DATA=... before the command
                if words[:2] == ["seqbuilder", "build"]:
                    yield pytest.param(words[2:], id=f"{_page_id(path)}: {command[:60]}")


def transcripts(commands: tuple[str, ...]) -> Iterator[Any]:
    """``$ seqbuilder COMMAND ...`` lines of console blocks that the next line says fail."""
    for path in PAGES_AND_README:
        for block in code_blocks(path, ("console",)):
            lines = block.splitlines()
            for line, output in itertools.pairwise(lines):
                words = shlex.split(line.removeprefix("$ ")) if line.startswith("$ ") else []
                if words[1:2] and words[1] in commands and output.startswith("seqbuilder: error:"):
                    yield pytest.param(words[1:], output, id=f"{_page_id(path)}: {line[2:60]}")


# --- generated sections ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "name"),
    [pytest.param(page, name, id=name) for page, name in REFERENCE.SECTIONS],
)
def test_generated_sections_match_the_code(page: Path, name: str) -> None:
    generate: Callable[[], str] = REFERENCE.SECTIONS[(page, name)]
    assert REFERENCE.committed(page, name) == generate(), (
        f"{page.name}: the {name} section is stale; run: python docs/_tools/reference.py"
    )


def schema_keys(schema: type, prefix: str = "") -> Iterator[str]:
    """The dotted keys of a config dataclass, walked independently of the generator."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        hint, name = hints[field.name], f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hint):
            yield from schema_keys(typing.cast(type, hint), f"{name}.")
        elif typing.get_origin(hint) is dict:
            yield from schema_keys(typing.get_args(hint)[1], f"{name}.<name>.")
        else:
            yield name


def test_the_configuration_reference_documents_exactly_the_schema_keys_with_defaults() -> None:
    table = REFERENCE.committed(DOCS / "configuration.md", "config-keys")
    rows = re.findall(r"^\| `([\w.<>]+)` \| [^|]+ \| `([^`]*)` \|", table, re.M)
    assert [key for key, _ in rows] == list(schema_keys(BuildConfig))
    _, cfg = compose_config()
    for key, default in rows:
        if "<name>" not in key:
            assert default == REFERENCE.show(OmegaConf.select(cfg, key)), key


def test_every_module_has_a_row_in_the_package_map() -> None:
    page = (DOCS / "development.md").read_text(encoding="utf-8")
    for path in (ROOT / "seqbuilder").rglob("*.py"):
        assert f"| `{path.relative_to(ROOT).as_posix()}` |" in page, path


# --- the configuration groups ---------------------------------------------------------------


def _group_options() -> set[tuple[str, str]]:
    """``(group, option)`` for every YAML file of a config group under ``conf/``."""
    conf = ROOT / "conf"
    return {
        (path.parent.relative_to(conf).as_posix(), path.stem)
        for path in conf.glob("*/**/*.yaml")
        if path.parent.relative_to(conf).as_posix() != "hydra/help"  # the help text, not a choice
    }


def test_every_config_group_option_is_documented_and_every_documented_one_exists() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    table = page.split("## Config groups", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([\w/]+)` \| `(\w+)`", table, re.M))
    assert documented == _group_options(), (
        f"undocumented: {sorted(_group_options() - documented)}; "
        f"documented but missing from conf/: {sorted(documented - _group_options())}"
    )


# --- commands and transcripts ---------------------------------------------------------------


@pytest.mark.parametrize("argv", list(build_commands()))
def test_every_documented_build_command_composes_a_valid_configuration(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_numbers.txt").write_text("0965\n2024\n31415\n", encoding="utf-8")
    if any(word in ("--help", "--cfg") for word in argv):
        return  # printed by Hydra, not built
    multirun = "-m" in argv or "--multirun" in argv
    overrides = [word for word in argv if not word.startswith("-")]
    # hydra.* keys and hydra/launcher choose where and how jobs run, not the dataset
    overrides = [word for word in overrides if not word.lstrip("+~").startswith("hydra")]
    for job in expand_sweep(overrides) if multirun else [overrides]:
        config, _ = compose_config(job)
        make_recipe(config)  # the sequences resolve and the width fits


@pytest.mark.parametrize(("argv", "line"), list(transcripts(("build", "image"))))
def test_every_error_transcript_is_the_line_the_command_prints(
    argv: list[str],
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)

    def no_build() -> None:
        raise AssertionError(f"seqbuilder {shlex.join(argv)} passed its checks and would build")

    monkeypatch.setattr("seqbuilder.build.app.hydra_main", no_build)
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_the_pages_hold_transcripts_and_build_commands() -> None:
    # the collectors above would silently find nothing if the pages changed shape
    assert len(list(build_commands())) >= 10
    assert len(list(transcripts(("build", "image")))) >= 3


# --- names and paths ------------------------------------------------------------------------


def test_the_file_format_page_names_every_dataset_and_attribute() -> None:
    page = (DOCS / "file-format.md").read_text(encoding="utf-8")
    for name in (*DATASETS, *SCHEMA["attributes"]):
        assert f"`{name}`" in page, name


def _import_lines() -> Iterator[Any]:
    pattern = re.compile(r"^[ \t]*from (seqbuilder[\w.]*) import ([\w, ]+)$", re.M)
    sources = [*PAGES_AND_README, *sorted((ROOT / "seqbuilder").rglob("*.py"))]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":  # only what the docstrings show, not the code's own imports
            text = "\n".join(_docstrings(text))
        for match in pattern.finditer(text):
            names = [name.strip() for name in match.group(2).split(",")]
            yield pytest.param(match.group(1), names, id=f"{_page_id(path)}: {match.group(0)}")


def _docstrings(source: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node)
            if docstring:
                yield docstring


@pytest.mark.parametrize(("module", "names"), list(_import_lines()))
def test_every_documented_import_imports(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"from {module} import {name}: no such name"


def _mentioned_paths() -> Iterator[Any]:
    pattern = re.compile(r"[`\s]((?:seqbuilder|tests|benchmarks|examples|conf|docs)/[\w./-]*)")
    for page in PAGES_AND_README:
        for path in sorted(set(pattern.findall(page.read_text(encoding="utf-8")))):
            yield pytest.param(path, id=f"{_page_id(page)}: {path}")


@pytest.mark.parametrize("path", list(_mentioned_paths()))
def test_every_repository_path_the_pages_mention_exists(path: str) -> None:
    assert (ROOT / path).exists(), f"{path} does not exist"
