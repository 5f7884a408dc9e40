"""Generate the parts of the documentation that the code already says, so they cannot drift.

Two sections are written between marker comments into pages that are otherwise hand-written:

- ``docs/configuration.md``, ``config-keys``: one row per key of the build configuration,
  walked from the schema (``seqbuilder/build/config.py``: the dataclasses, their types and the
  comment line above each field), with the default that ``seqbuilder build`` composes from
  ``conf/`` (so the YAML is checked too, not only the dataclass defaults);
- ``docs/development.md``, ``package-map``: one line per module of ``seqbuilder/``, the first
  line of its docstring.

Run it after changing the schema, a ``conf/`` default or a module (from the repository root)::

    python docs/_tools/reference.py

``tests/test_docs.py`` fails while a committed section differs from what this prints.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# a Sphinx role, :func:`name`: the map shows the name as code
ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "seqbuilder"
CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"
DEVELOPMENT_PAGE = ROOT / "docs" / "development.md"


@dataclasses.dataclass(frozen=True)
class Key:
    """One documented configuration key."""

    name: str  # dotted, e.g. "storage.chunk_samples"; "<name>" stands for a dict key
    kind: str  # the accepted values, in words
    default: str  # as composed from conf/ with no overrides
    meaning: str  # the comment line(s) above the field in the schema


# --- the configuration reference ------------------------------------------------------------


def config_keys() -> list[Key]:
    """Walk ``BuildConfig`` and return every leaf key with its type, default and comment."""
    from seqbuilder.build.config import BuildConfig
    from seqbuilder.build.preflight import compose_config

    _, cfg = compose_config()
    defaults = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    assert isinstance(defaults, dict)
    return list(_walk(BuildConfig, "", defaults))


def _walk(schema: type, prefix: str, defaults: Any) -> Iterator[Key]:
    comments = field_comments(schema)
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        name = f"{prefix}{field.name}"
        hint = hints[field.name]
        default = defaults.get(field.name) if isinstance(defaults, dict) else None
        if dataclasses.is_dataclass(hint):
            yield from _walk(typing.cast(type, hint), f"{name}.", default)
            continue
        if typing.get_origin(hint) is dict:
            value_type = typing.get_args(hint)[1]
            if dataclasses.is_dataclass(value_type):
                items = default if isinstance(default, dict) else {}
                for key in _walk(typing.cast(type, value_type), f"{name}.<name>.", {}):
                    leaf = key.name.rsplit(".", 1)[1]
                    per_item = "; ".join(
                        f"{item}: {show(values.get(leaf))}" for item, values in items.items()
                    )
                    yield dataclasses.replace(key, default=per_item or "none")
                continue
        if field.name not in comments:
            raise LookupError(f"{schema.__name__}.{field.name} has no comment line above it")
        yield Key(name, describe_type(hint), show(default), comments[field.name])


def field_comments(schema: type) -> dict[str, str]:
    """Return ``{field: comment}``: the ``#`` lines right above each field of a dataclass."""
    source = inspect.getsource(schema)
    lines = source.splitlines()
    comments: dict[str, str] = {}
    classdef = ast.parse(source).body[0]
    assert isinstance(classdef, ast.ClassDef)
    for node in classdef.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            row = node.lineno - 2  # 0-based index of the line above the field
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            if above:
                comments[node.target.id] = " ".join(above)
    return comments


def describe_type(hint: Any) -> str:
    """The accepted values of a field type, in words: ``int``, ``pad, scale or auto``."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        names = [f"`{member.value}`" for member in hint]
        return ", ".join(names[:-1]) + f" or {names[-1]}"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        words = " or ".join(describe_type(arg) for arg in rest)
        return f"{words} or null" if len(rest) < len(args) else words
    if origin is list:
        return f"list of {describe_type(args[0])}"
    names = {int: "int", float: "float", bool: "bool", str: "string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def show(value: Any) -> str:
    """A value as YAML would spell it."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(show(item) for item in value) + "]"
    return str(value)


def config_table() -> str:
    """The configuration reference: a Markdown table of every key."""
    rows = ["| key | values | default | meaning |", "|---|---|---|---|"]
    for key in config_keys():
        cells = (f"`{key.name}`", key.kind, f"`{key.default}`", key.meaning)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


# --- the package map ------------------------------------------------------------------------


def package_map() -> str:
    """One row per module of ``seqbuilder/``: its path and the summary of its docstring."""
    rows = ["| module | its one job |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py"), key=_module_order):
        relative = path.relative_to(ROOT).as_posix()
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not docstring:
            raise LookupError(f"{relative} has no module docstring")
        summary = " ".join(docstring.strip().split("\n\n")[0].split())
        summary = ROLE.sub(r"``\1``", summary).replace("|", "\\|")
        rows.append(f"| `{relative}` | {summary} |")
    return "\n".join(rows)


def _module_order(path: Path) -> tuple[int, str]:
    """Top-level modules first, then each package with its ``__init__`` leading."""
    parts = path.relative_to(PACKAGE).parts
    folder = "" if len(parts) == 1 else parts[0]
    name = "" if parts[-1] == "__init__.py" else parts[-1]
    layer = ["", "mnist", "image", "store", "build", "view"]
    rank = layer.index(folder) if folder in layer else len(layer)
    return rank, f"{folder}/{name}"


# --- the pages ------------------------------------------------------------------------------

SECTIONS = {
    (CONFIGURATION_PAGE, "config-keys"): config_table,
    (DEVELOPMENT_PAGE, "package-map"): package_map,
}


def markers(name: str) -> tuple[str, str]:
    """The comments that enclose generated section ``name`` in its page."""
    return (
        f"<!-- {name}: generated by docs/_tools/reference.py; edit the source, then rerun -->",
        f"<!-- end of {name} -->",
    )


def committed(page: Path, name: str) -> str:
    """The text of section ``name`` as committed in ``page``, without its markers."""
    begin, end = markers(name)
    pattern = re.escape(begin) + r"\n(.*?)" + re.escape(end)
    match = re.search(pattern, page.read_text("utf-8"), re.S)
    if match is None:
        raise LookupError(f"{page.name} lacks the markers of the {name} section")
    return match.group(1).removesuffix("\n")


def update(page: Path, name: str, text: str) -> bool:
    """Write ``text`` into section ``name`` of ``page``; return whether anything changed."""
    if committed(page, name) == text:
        return False
    begin, end = markers(name)
    pattern = re.escape(begin) + r"\n.*?" + re.escape(end)
    section = f"{begin}\n{text}\n{end}"
    content = re.sub(pattern, lambda _: section, page.read_text("utf-8"), flags=re.S)
    page.write_text(content, "utf-8")
    return True


def main() -> int:
    for (page, name), generate in SECTIONS.items():
        changed = update(page, name, generate())
        print(f"{page.relative_to(ROOT)}: {name} {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
