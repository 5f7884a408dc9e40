"""The README is the front door: its two commands are what CI runs, and its links lead somewhere.

``.ci/run`` greps README.md for its ``TEST_COMMAND`` line; these tests keep the other side of
that agreement: the first code block is exactly the two fresh-machine commands, the test
command is CI's, the extras the install command names exist, and every relative link resolves.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

INSTALL_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test,examples]' && "
    "SEQBUILDER_DATA=../shared/mnist seqbuilder build"
)
TEST_COMMAND = "SEQBUILDER_DATA=../shared/mnist python -m pytest -q"


def readme() -> str:
    return README.read_text(encoding="utf-8")


def first_code_block() -> list[str]:
    match = re.search(r"^```\w*\n(.*?)^```", readme(), re.M | re.S)
    assert match is not None, "README.md has no code block"
    return match.group(1).splitlines()


def test_the_first_code_block_is_the_two_fresh_machine_commands() -> None:
    assert first_code_block() == [
        "# 1. install, then build the default dataset (into outputs/<date>/<time>/)",
        INSTALL_COMMAND,
        "# 2. run the tests",
        TEST_COMMAND,
    ]


def test_the_test_command_is_the_one_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^TEST_COMMAND='(.*)'$", ci, re.M)
    assert match is not None, ".ci/run no longer defines TEST_COMMAND"
    assert match.group(1) == TEST_COMMAND
    assert f"\n{TEST_COMMAND}\n" in ci, ".ci/run does not run its TEST_COMMAND"


def test_the_extras_the_install_command_names_exist() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    extras = re.search(r"\[project\.optional-dependencies\](.*?)^\[", pyproject, re.M | re.S)
    assert extras is not None
    declared = set(re.findall(r"^(\w+) = \[", extras.group(1), re.M))
    named = re.search(r"pip install -e '\.\[([\w,]+)\]'", INSTALL_COMMAND)
    assert named is not None
    assert set(named.group(1).split(",")) <= declared


def test_every_relative_link_points_to_an_existing_file() -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", readme())
    relative = [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert relative, "README.md links to nothing"
    missing = [t for t in relative if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_readme_stays_a_front_door() -> None:
    lines = readme().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail to docs/"
    assert "mkdocs serve" in readme()
