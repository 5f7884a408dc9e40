"""Builds the tests read back: the real command in a subprocess, and named configs.

Each entry is the override list of one ``seqbuilder build``; ``SequenceStream`` takes the same
list, so a test streams a config and reads its built file side by side. ``blocks`` crosses the
4096-sample block boundary with an odd chunk size; ``augment-heavy`` exists once the augment
config group does (conf/augment/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
HAS_AUGMENT = (CONF_DIR / "augment").is_dir()

TINY = ("+preset=tiny", "gallery.count=0")
BLOCKS = (
    "splits.train.count=4200",
    "splits.test.count=10",
    "sequences.max_length=2",
    "spacing.max=2",
    "width=60",
    "storage.chunk_samples=7",
    "gallery.count=0",
)
FEED_CONFIGS: dict[str, tuple[str, ...]] = {
    "tiny": TINY,
    "list-phone-white": ("+preset=[tiny,phone]", *TINY[1:], "background=white"),
    "scale-ink-random": (*TINY, "fit=scale", "digit_crop=ink", "align=random", "width=100"),
    "float32-lzf-overlap": (
        *TINY,
        "storage.dtype=float32",
        "storage.compression=lzf",
        "spacing.min=-5",
    ),
    "blocks": BLOCKS,
    "augment-heavy": (*TINY, "augment=heavy"),
}
_NO_AUGMENT = pytest.mark.skipif(
    not HAS_AUGMENT, reason="no conf/augment/ yet: runs once augmentation is merged"
)


def feed_params(*names: str) -> list[object]:
    """``pytest.param`` rows for the named configs (all of them by default), id = name."""
    return [
        pytest.param(name, id=name, marks=[_NO_AUGMENT] if name.startswith("augment") else [])
        for name in names or FEED_CONFIGS
    ]


def build_named(name: str, root: Path, mnist_dir: Path) -> Path:
    """Build config ``name`` (one worker) into ``root/name``; return the run directory."""
    return build_in_subprocess([*FEED_CONFIGS[name], "workers=1"], root / name, mnist_dir)


def build_in_subprocess(overrides: Sequence[str], run_dir: Path, mnist_dir: Path) -> Path:
    """Run ``python -m seqbuilder build OVERRIDES`` into ``run_dir``, as a user runs it.

    The build gets its own empty cache beside ``run_dir`` and no mirrors; a failure fails the
    test with the command's stderr.
    """
    root = run_dir.parent
    env = {
        **os.environ,
        "SEQBUILDER_DATA": str(mnist_dir),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }
    command = [sys.executable, "-m", "seqbuilder", "build", *overrides]
    result = subprocess.run(
        [*command, f"hydra.run.dir={run_dir}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    return run_dir
