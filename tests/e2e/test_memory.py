"""Memory stays flat: a build four times larger peaks no higher, bar a small margin.

The builder streams blocks from the workers to the writer with a bounded number in flight, so
its peak resident memory must not grow with the sample count. Each build runs in a fresh
interpreter that reports, after ``seqbuilder.cli.main``, its own peak (``RUSAGE_SELF``) and the
largest peak of its finished worker processes (``RUSAGE_CHILDREN``), both from ``resource``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = 8192  # two 4096-sample blocks
LARGE = 4 * SMALL
WIDTH = 200
# float32 at width 200 is 22 KiB per sample: the extra 3 * SMALL samples are ~550 MB raw, so a
# build that held its output would exceed the margin more than tenfold.
MARGIN_KIB = 40 * 1024
SAMPLE_BYTES = 28 * WIDTH * 4

MEASURE = """
import json, resource, sys
from seqbuilder.cli import main
code = main(sys.argv[1:])
peak = {
    "code": code,
    "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}
print("PEAK", json.dumps(peak))
"""


def peak_kib(count: int, real_mnist_dir: Path, tmp_path: Path) -> dict[str, int]:
    """Build ``count`` float32 train samples in a subprocess; return its peaks in KiB (Linux)."""
    run_dir = tmp_path / f"run{count}"
    overrides = [
        "~splits.test",
        f"splits.train.count={count}",
        f"width={WIDTH}",
        "workers=2",
        "storage.dtype=float32",
        "storage.compression=gzip",
        "storage.compression_level=1",
        "gallery.count=0",
        f"hydra.run.dir={run_dir}",
    ]
    env = {
        **os.environ,
        "SEQBUILDER_DATA": str(real_mnist_dir),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "SEQBUILDER_MNIST_MIRRORS": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, "build", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PEAK ")]
    assert result.returncode == 0 and lines, result.stderr
    peak = json.loads(lines[-1].removeprefix("PEAK "))
    assert peak.pop("code") == 0, result.stderr
    # the build really happened: the stored file holds every sample
    assert (run_dir / "train.h5").stat().st_size > 0
    return {key: int(value) for key, value in peak.items()}


@pytest.mark.slow
def test_a_build_four_times_larger_does_not_raise_the_peak_memory(
    real_mnist_dir: Path, tmp_path: Path
) -> None:
    small = peak_kib(SMALL, real_mnist_dir, tmp_path)
    large = peak_kib(LARGE, real_mnist_dir, tmp_path)

    extra_data_kib = (LARGE - SMALL) * SAMPLE_BYTES // 1024
    assert extra_data_kib > 10 * MARGIN_KIB
    assert small["children"] > 0, "the workers ran in child processes"
    for key in ("self", "children"):
        assert large[key] < small[key] + MARGIN_KIB, (
            f"peak {key} RSS grew from {small[key] // 1024} MiB for {SMALL} samples to "
            f"{large[key] // 1024} MiB for {LARGE}"
        )
