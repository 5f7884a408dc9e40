"""A griffe extension for the API reference: Sphinx roles in docstrings become links.

seqbuilder's docstrings are Google style, but name other objects with Sphinx roles
(:func:`parse_idx`, :mod:`seqbuilder.store.schema`), which mkdocstrings would print verbatim.
This extension rewrites each role before rendering, so the sources stay as they are:

- a name that resolves inside seqbuilder becomes an optional cross-reference: a link when the
  object is rendered on the site, plain code otherwise;
- a ``seqbuilder.`` path, or a bare name, that resolves to nothing is stale: it becomes a
  required cross-reference, which fails ``mkdocs build --strict`` and names the target;
- a name outside seqbuilder (``os.replace``, ``~pathlib.Path``) becomes plain code.

A leading ``~`` shows only the last component, as in Sphinx.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

from griffe import Alias, Extension, Module, NameResolutionError, Object

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|attr|meth|exc|obj|const):`(~?)([^`]+)`")
PACKAGE = "seqbuilder"


class SphinxRoles(Extension):
    """Rewrite the Sphinx roles of every docstring in the package once it is loaded."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(
                    lambda match, obj=obj: _rewrite(obj, match[2], short=bool(match[1])),
                    obj.docstring.value,
                )


def _walk(obj: Object) -> Iterator[Object]:
    yield obj
    for member in obj.members.values():
        if not isinstance(member, Alias):
            yield from _walk(member)


def _rewrite(scope: Object, target: str, *, short: bool) -> str:
    shown = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(scope, target)
    if path is None and (target.startswith(f"{PACKAGE}.") or "." not in target):
        return f"[`{shown}`][{target}]"  # stale: autorefs fails the strict build on it
    if path is None or any(part.startswith("_") for part in path.split(".")):
        return f"`{shown}`"
    return f'<autoref identifier="{html.escape(path)}" optional><code>{shown}</code></autoref>'


def _resolve(scope: Object, target: str) -> str | None:
    """Return the full path ``target`` names from ``scope``, or None outside seqbuilder."""
    try:
        path = scope.resolve(target) if "." not in target else target
    except NameResolutionError:
        return None
    if path.split(".", 1)[0] != PACKAGE:
        return None
    try:
        scope.package[path.removeprefix(PACKAGE).lstrip(".")] if path != PACKAGE else None
    except KeyError:
        return None
    return path
