"""Shared fixtures: an isolated cache per test, real MNIST, and tiny MNIST written as real IDX."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seqbuilder.mnist.resources import FILES
from tests.support.feed_builds import build_in_subprocess, build_named
from tests.support.idx_files import tiny_split, write_idx

# The README's test command gives SEQBUILDER_DATA relative to the repository root; tests change
# directory and start builds in other folders, so pin it to an absolute path once, here.
if os.environ.get("SEQBUILDER_DATA"):
    os.environ["SEQBUILDER_DATA"] = str(Path(os.environ["SEQBUILDER_DATA"]).resolve())


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test gets its own empty cache and no mirrors, so nothing reaches the internet.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("SEQBUILDER_MNIST_MIRRORS", "")


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST folder from ``$SEQBUILDER_DATA``; fails (never skips) when absent."""
    value = os.environ.get("SEQBUILDER_DATA")
    if not value:
        pytest.fail(
            "SEQBUILDER_DATA is not set: point it at a folder holding MNIST (../shared/mnist)"
        )
    folder = Path(value)
    names = [name for files in FILES.values() for name in files.values()]
    missing = [
        n for n in names if not (folder / n).is_file() and not (folder / f"{n}.gz").is_file()
    ]
    if missing:
        pytest.fail(f"SEQBUILDER_DATA={value!r} lacks {', '.join(missing)}[.gz]")
    return folder


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real IDX files: 30 train images (gzip), 10 test images (raw)."""
    folder = tmp_path_factory.mktemp("tiny-mnist")
    for source, suffix in (("train", ".gz"), ("test", "")):
        images, labels = tiny_split(source)
        write_idx(folder / (FILES[source]["images"] + suffix), images)
        write_idx(folder / (FILES[source]["labels"] + suffix), labels)
    return folder


@pytest.fixture(scope="session")
def tiny_run_dir(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of ``seqbuilder build +preset=tiny``, built once by the real command.

    Built in a subprocess (``python -m seqbuilder``), with its own empty cache and no mirrors,
    so it exercises the console entry point exactly as a user runs it. Treat it as read-only.
    """
    root = tmp_path_factory.mktemp("tiny-build")
    return build_in_subprocess(["+preset=tiny"], root / "run", real_mnist_dir)


@pytest.fixture(scope="session")
def feed_run(
    real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """``feed_run(name)``: the run directory of a config of tests/support/feed_builds.py.

    Each config is built once per session, on first use, by the real command. Read-only.
    """
    root = tmp_path_factory.mktemp("feed-builds")
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            runs[name] = build_named(name, root, real_mnist_dir)
        return runs[name]

    return get


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """Remove the root handlers an in-process Hydra run installs, and close its build.log.

    Hydra points a console handler at the ``sys.stdout`` of the moment (in a test, capsys's
    stream, closed after the test), so a later log record would print "--- Logging error ---"
    into another test's stderr. pytest's own capture handlers are left to pytest.
    """
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def run_build(
    real_mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated_logging: None,
) -> Callable[..., Path]:
    """Run ``seqbuilder build OVERRIDES...`` in-process on real MNIST; return its run directory.

    Every call builds into a fresh ``tmp_path/build<n>`` and must succeed. Hydra's flags
    (``-m``) must come first among the overrides, as on the command line.
    """
    from seqbuilder.cli import main

    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the CLI sets it; keep it out of other tests
    runs = iter(range(1_000))

    def run(*overrides: str) -> Path:
        run_dir = tmp_path / f"build{next(runs)}"
        code = main(["build", *overrides, f"hydra.run.dir={run_dir}"])
        assert code == 0, capsys.readouterr().err
        return run_dir

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e/ ``e2e``: whole builds in subprocesses."""
    for item in items:
        if "e2e" in item.path.parent.parts:
            item.add_marker(pytest.mark.e2e)
