"""The compiled per-digit transform gives numpy's bytes, and the right one is chosen.

Both run on real MNIST glyphs over the whole range of every parameter (beyond the presets:
steep maps, several stroke-width steps each way, strong and weak elastic fields, blank glyphs
and empty slots), and through the engine with ``$SEQBUILDER_KERNELS`` set each way. Which
kernels run, and what a bad choice says, is checked in fresh interpreters, where numba is
really loaded or really absent (``sys.modules["numba"] = None`` makes it unimportable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from seqbuilder.image import filters
from seqbuilder.image.augment import _inverse_maps
from seqbuilder.image.engine import generate_batch
from seqbuilder.image.kernels import VARIABLE, kernels
from seqbuilder.image.options import PRESETS, ComposeOptions
from seqbuilder.mnist.load import MnistSource, load_mnist

compiled = pytest.importorskip("seqbuilder.image.compiled", reason="numba is not installed")


@pytest.fixture
def train(real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> MnistSource:
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    return load_mnist("train")


def random_case(split: MnistSource, seed: int) -> dict[str, npt.NDArray[np.generic]]:
    """A block of real glyphs (some blank, some slots empty) and wide random parameters."""
    rng = np.random.default_rng(seed)
    source = split.images[rng.integers(0, len(split.images), int(rng.integers(1, 600)))].copy()
    source[rng.random(len(source)) < 0.03] = 0  # blank glyphs
    slots = np.flatnonzero(rng.random(len(source)) < 0.85)
    n = len(slots)
    shift = np.zeros((n, 2), np.float32)
    shift[:, 0], shift[:, 1] = rng.uniform(-4, 4, n), rng.integers(-6, 7, n)
    return {
        "source": source,
        "slots": slots,
        "change": rng.uniform(-5, 5, n).astype(np.float32),  # up to 3 dilation steps each way
        "inverse": _inverse_maps(
            np.tan(np.radians(rng.uniform(-45, 45, n))),
            np.radians(rng.uniform(-180, 180, n)),
            rng.uniform(0.3, 2.5, n),
        ),
        "shift": shift,
        "offsets": (rng.random((n, 2)) * filters.PLANE).astype(np.intp),
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("stroke", [False, True])
@pytest.mark.parametrize("warp", ["none", "affine", "elastic"])
def test_the_compiled_transform_gives_numpys_bytes_and_boxes(
    train: MnistSource, seed: int, stroke: bool, warp: str
) -> None:
    case = random_case(train, seed)
    sigma, alpha = [(4.0, 30.0), (1.0, 8.0), (8.0, 200.0)][seed % 3]
    plan = filters.GlyphPlan(
        case["change"] if stroke else None,
        None if warp == "none" else case["inverse"],
        case["shift"],
        filters.elastic_planes(sigma, alpha) if warp == "elastic" else None,
        case["offsets"],
    )
    glyphs, boxes = compiled.transform(case["source"], case["slots"], plan)
    expected_glyphs, expected_boxes = filters.transform(case["source"], case["slots"], plan)
    np.testing.assert_array_equal(glyphs, expected_glyphs)
    np.testing.assert_array_equal(boxes, expected_boxes)
    assert glyphs[case["slots"]].any()  # not vacuous: ink came through


@pytest.mark.parametrize("preset", ["light", "heavy"])
def test_the_engine_makes_the_same_batch_with_either_kernels(
    train: MnistSource, monkeypatch: pytest.MonkeyPatch, preset: str
) -> None:
    rng = np.random.default_rng(11)
    digits, lengths = rng.integers(0, 10, (700, 6)), rng.integers(1, 7, 700)

    def batch(choice: str) -> list[npt.NDArray[np.generic]]:
        monkeypatch.setenv(VARIABLE, choice)
        assert kernels().name == choice
        made = generate_batch(
            train, digits, lengths, (-4, 6), 220, ComposeOptions(), np.random.default_rng(5),
            np.uint8, PRESETS[preset],
        )  # fmt: skip
        return [made.images, made.boxes]

    for ours, theirs in zip(batch("numba"), batch("numpy"), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_without_a_cache_folder_the_loops_compile_in_each_process() -> None:
    namespace: dict[str, object] = {}
    source = "def add_one(values):\n    for i in range(values.shape[0]):\n        values[i] += 1\n"
    exec(source, namespace)  # no source file: numba finds no cache folder for it
    add_one = compiled._jit(namespace["add_one"])
    values = np.arange(3)
    add_one(values)
    assert values.tolist() == [1, 2, 3]


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != VARIABLE}
    return subprocess.run(
        [sys.executable, "-c", code], env={**env, **environment}, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip


def test_auto_keeps_small_calls_on_numpy_and_loads_numba_for_a_block(
    real_mnist_dir: Path,
) -> None:
    code = """
import sys
import numpy as np
from seqbuilder import generate_numbers_sequence
from seqbuilder.image.engine import generate_batch
from seqbuilder.image.kernels import kernels
from seqbuilder.image.options import PRESETS, ComposeOptions
from seqbuilder.mnist.load import load_mnist
generate_numbers_sequence("0123456789", (0, 4), 320, seed=1, augment="heavy")
print("numba" in sys.modules, kernels(10).name)
digits = np.zeros((100, 5), int)
generate_batch(load_mnist("train"), digits, np.full(100, 5), (0, 4), 200, ComposeOptions(),
               np.random.default_rng(0), np.uint8, PRESETS["heavy"])
print("numba" in sys.modules, kernels(10).name)
"""
    done = run_python(code, SEQBUILDER_DATA=str(real_mnist_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "numpy", "True", "numba"]


def test_a_bad_choice_is_a_one_line_user_error_naming_the_variable(
    real_mnist_dir: Path, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(VARIABLE, "fortran")
        with pytest.raises(ValueError, match=r"\$SEQBUILDER_KERNELS must be one of .*'fortran'"):
            kernels()
    done = subprocess.run(
        [sys.executable, "-m", "seqbuilder", "build", "augment=heavy", "+preset=tiny",
         f"hydra.run.dir={tmp_path / 'run'}"],
        env={**os.environ, VARIABLE: "fortran",
             "SEQBUILDER_DATA": str(real_mnist_dir)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "seqbuilder: error: $SEQBUILDER_KERNELS must be one of auto, numba, numpy, got 'fortran'"
    ]
    assert not (tmp_path / "run").exists()


def test_without_numba_auto_runs_numpy_and_numba_is_refused() -> None:
    code = """
import sys
sys.modules["numba"] = None  # numba cannot be imported in this interpreter
from seqbuilder.image.kernels import kernels
print(kernels().name)
import os
os.environ["SEQBUILDER_KERNELS"] = "numba"
try:
    kernels()
except ValueError as error:
    print(error)
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "numpy",
        "$SEQBUILDER_KERNELS=numba, but numba is not installed: pip install 'seqbuilder[fast]'",
    ]
