"""The package layout: every subpackage ships, and the architecture is what the docs say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_for_setuptools() -> None:
    # tomllib is Python 3.11+; the list is simple enough to read with a pattern on 3.10 too
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    assert block is not None
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    for folder, name in (("seqbuilder", "seqbuilder"), ("conf", "seqbuilder.conf")):
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((name, *parts)) in listed, init


def test_importing_seqbuilder_loads_no_private_api_of_hydra_or_concurrent_futures() -> None:
    code = (
        "import sys, seqbuilder, seqbuilder.cli, seqbuilder.build.app, seqbuilder.build.pool\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('hydra._internal', "
        "'concurrent.futures')))\n"
        "print(' '.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    # hydra.main itself imports hydra._internal.utils; seqbuilder's own modules never do
    own = subprocess.run(
        ["grep", "-rn", "_internal\\|_processes\\|ctypes", str(ROOT / "seqbuilder")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert own.stdout == "", own.stdout
    assert "concurrent.futures" not in result.stdout
