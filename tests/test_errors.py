"""The error boundary: user errors are one line and exit 2; a bug keeps its traceback."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import seqbuilder.errors
import seqbuilder.view.info
from seqbuilder.cli import main
from seqbuilder.errors import BuildInterrupted, JobError, SeqbuilderError


def test_every_exception_seqbuilder_raises_on_purpose_is_a_seqbuilder_error() -> None:
    classes = [
        value
        for value in vars(seqbuilder.errors).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert len(classes) >= 10
    for cls in classes:
        # an interrupt is neither a bug nor a user error: it has its own exit status; a
        # JobError only carries a SeqbuilderError through Hydra's job runner
        assert issubclass(cls, SeqbuilderError) or cls in (BuildInterrupted, JobError), cls


@pytest.mark.parametrize(
    "bug",
    [
        pytest.param(ValueError("a bug, not a user error"), id="value-error"),
        pytest.param(TypeError("a bug, not a user error"), id="type-error"),
        pytest.param(OSError("a bug, not a user error"), id="os-error"),
    ],
)
def test_a_bug_inside_a_command_propagates_instead_of_becoming_a_user_error(
    bug: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object) -> str:
        raise bug

    monkeypatch.setattr(seqbuilder.view.info, "describe", broken)
    with pytest.raises(type(bug), match="a bug, not a user error"):
        main(["info", str(tmp_path / "any.h5")])


def test_the_console_command_shows_a_bugs_traceback_and_exits_1(tmp_path: Path) -> None:
    code = (
        "import sys, seqbuilder.view.info as info\n"
        "def broken(path): raise ValueError('a bug, not a user error')\n"
        "info.describe = broken\n"
        "from seqbuilder.cli import main\n"
        "sys.exit(main(['info', 'any.h5']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.rstrip().endswith("ValueError: a bug, not a user error")


def test_a_user_error_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("seqbuilder: error: ") and "missing.h5: no such file" in err
