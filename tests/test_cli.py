"""The ``seqbuilder`` command line: ``image``, ``gallery`` and ``info``, called as ``main(argv)``.

Every run asserts on the return code, on what was written, and on stderr: a user error is exactly
one ``seqbuilder: error: ...`` line. ``build`` has its own module, test_build.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seqbuilder import generate_numbers_sequence
from seqbuilder.cli import main

IMAGE_ARGS = ["0965", "0", "10", "160"]


@pytest.fixture
def in_tmp(tmp_path: Path, real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty current directory, with real MNIST from ``$SEQBUILDER_DATA``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQBUILDER_DATA", str(real_mnist_dir))
    return tmp_path


def png_pixels(path: Path, width: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.mode == "L"
        assert png.size == (width, 28)
        return np.asarray(png)


def expected_pixels(*args: Any, **options: Any) -> np.ndarray[Any, np.dtype[np.uint8]]:
    image = generate_numbers_sequence(*args, **options)
    return np.rint(image.astype(np.float64) * 255).astype(np.uint8)


def assert_one_error_line(err: str, match: str) -> None:
    assert len(err.splitlines()) == 1, err
    assert err.startswith("seqbuilder: error: "), err
    assert re.search(match, err), err


# --- image --------------------------------------------------------------------------------------


def test_image_writes_sequence_png_in_the_current_directory_and_prints_its_path(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["image", *IMAGE_ARGS, "--seed", "1"])

    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    assert out == "0965.png\n"
    assert sorted(path.name for path in in_tmp.iterdir()) == ["0965.png"]
    np.testing.assert_array_equal(
        png_pixels(in_tmp / "0965.png", 160), expected_pixels("0965", (0, 10), 160, seed=1)
    )


def test_image_output_writes_the_png_where_it_is_told(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "out").mkdir()

    code = main(["image", *IMAGE_ARGS, "--seed", "1", "--output", "out/zip.png"])

    assert code == 0
    assert capsys.readouterr().out == "out/zip.png\n"
    assert not (in_tmp / "0965.png").exists()
    np.testing.assert_array_equal(
        png_pixels(in_tmp / "out" / "zip.png", 160), expected_pixels("0965", (0, 10), 160, seed=1)
    )


@pytest.mark.parametrize(
    ("flags", "options", "width"),
    [
        pytest.param(["--fit", "scale"], {"fit": "scale"}, 160, id="fit-scale"),
        pytest.param(["--fit", "auto"], {"fit": "auto"}, 120, id="fit-auto"),
        pytest.param(["--align", "left"], {"align": "left"}, 160, id="align-left"),
        pytest.param(["--align", "random"], {"align": "random"}, 160, id="align-random"),
        pytest.param(["--digit-crop", "ink"], {"digit_crop": "ink"}, 160, id="digit-crop-ink"),
        pytest.param(["--background", "white"], {"background": "white"}, 160, id="white"),
        pytest.param(["--source", "test"], {"source": "test"}, 160, id="source-test"),
    ],
)
def test_each_image_option_reaches_the_generator(
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    options: dict[str, str],
    width: int,
) -> None:
    code = main(["image", "0965", "0", "10", str(width), "--seed", "5", *flags])

    assert code == 0
    assert capsys.readouterr().err == ""
    pixels = png_pixels(in_tmp / "0965.png", width)
    np.testing.assert_array_equal(
        pixels, expected_pixels("0965", (0, 10), width, seed=5, **options)
    )
    try:
        default = expected_pixels("0965", (0, 10), width, seed=5)
    except ValueError:  # the defaults cannot draw at this width, so the flag did matter
        return
    assert not np.array_equal(pixels, default), f"{flags} changed nothing"


def test_image_data_dir_is_used_before_the_environment(
    in_tmp: Path, real_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(in_tmp / "nowhere"))

    code = main(["image", *IMAGE_ARGS, "--seed", "1", "--data-dir", str(real_mnist_dir)])

    assert code == 0
    np.testing.assert_array_equal(
        png_pixels(in_tmp / "0965.png", 160),
        expected_pixels("0965", (0, 10), 160, seed=1, data_dir=real_mnist_dir),
    )


def test_image_seeds_repeat_and_differ(in_tmp: Path) -> None:
    for seed, name in (("1", "a.png"), ("1", "b.png"), ("2", "c.png")):
        assert main(["image", *IMAGE_ARGS, "--seed", seed, "--output", name]) == 0

    first = png_pixels(in_tmp / "a.png", 160)
    np.testing.assert_array_equal(first, png_pixels(in_tmp / "b.png", 160))
    assert not np.array_equal(first, png_pixels(in_tmp / "c.png", 160))


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        pytest.param(
            ["image", "09a5", "0", "10", "160"],
            r"digits\[2\] is 'a', expected a decimal character",
            id="bad-sequence",
        ),
        pytest.param(["image", "", "0", "10", "160"], r"digits='' is empty", id="empty-sequence"),
        pytest.param(
            ["image", "0965", "10", "0", "160"],
            r"spacing_range=\(10, 0\): min must be <= max",
            id="min-above-max",
        ),
        pytest.param(
            ["image", "0965", "-28", "0", "300"],
            r"spacing_range min is -28, expected >= -27",
            id="overlap-too-deep",
        ),
        pytest.param(
            ["image", "0965", "0", "10", "50"],
            r"image_width=50 is too small: 4 digits with gaps up to 10 need at least 142 columns",
            id="width-too-small",
        ),
        pytest.param(
            ["image", "0965", "0", "10", "wide"],
            r"argument IMAGE_WIDTH: invalid int value: 'wide'",
            id="width-not-int",
        ),
        pytest.param(
            ["image", "0965", "0", "10", "160", "--fit", "stretch"],
            r"argument --fit: invalid choice: 'stretch'.*'pad', 'scale', 'auto'",
            id="fit-unknown",
        ),
        pytest.param(
            ["image", "0965", "0", "10", "160", "--seed", "-1"],
            r"seed=-1 is negative",
            id="seed-negative",
        ),
        pytest.param(
            ["image", "0965", "0", "10"],
            r"the following arguments are required: IMAGE_WIDTH",
            id="missing-width",
        ),
        pytest.param(
            ["image", "0965", "0", "10", "160", "--output", "no/such/dir/x.png"],
            r"No such file or directory",
            id="output-folder-missing",
        ),
        pytest.param(["paint"], r"invalid choice: 'paint'", id="unknown-command"),
        pytest.param([], r"the following arguments are required: COMMAND", id="no-command"),
    ],
)
def test_a_bad_image_command_exits_2_with_one_line_and_writes_nothing(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str
) -> None:
    code = main(argv)

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert_one_error_line(err, match)
    assert list(in_tmp.iterdir()) == []


def test_image_without_mnist_exits_2_saying_where_it_looked_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQBUILDER_DATA", str(empty))  # the autouse fixture empties the mirrors

    code = main(["image", *IMAGE_ARGS])

    assert code == 2
    assert_one_error_line(
        capsys.readouterr().err,
        rf"MNIST files not found \(missing: train-images-idx3-ubyte.*"
        rf"{re.escape(str(empty))}.*set SEQBUILDER_DATA",
    )
    assert not list(tmp_path.glob("*.png"))


# --- gallery and info ---------------------------------------------------------------------------


def test_gallery_writes_a_png_of_a_built_file_and_prints_its_path(
    tiny_run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "grid.png"

    code = main(
        ["gallery", str(tiny_run_dir / "train.h5"), "--count", "4", "--output", str(output)]
    )

    assert code == 0
    assert capsys.readouterr().out == f"{output}\n"
    with Image.open(output) as grid:
        assert grid.format == "PNG"
        assert grid.width > 2 * 200  # a sample is shown at twice its size
        assert grid.height > 2 * 28


def test_gallery_defaults_to_a_png_named_after_the_file_in_the_current_directory(
    tiny_run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    code = main(["gallery", str(tiny_run_dir / "test.h5")])

    assert code == 0
    assert [path.name for path in tmp_path.iterdir()] == ["test_gallery.png"]


def test_info_summarises_counts_compression_and_provenance(
    tiny_run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["info", str(tiny_run_dir / "train.h5")])

    out = capsys.readouterr().out
    assert code == 0
    assert "200 samples of 28 x 200, up to 6 digits" in out
    assert re.search(r"images\s+\(200, 28, 200\)\s+uint8\s+chunks \(\d+, 28, 200\)", out)
    assert "gzip level 1" in out
    assert re.search(r"^seed:\s+0$", out, re.MULTILINE)
    assert re.search(r"^split:\s+train$", out, re.MULTILINE)
    assert "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db" in out


@pytest.mark.parametrize("command", ["gallery", "info"])
@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(b"this is not HDF5\n", r"x\.h5: not an HDF5 file", id="text-file"),
        pytest.param(b"", r"x\.h5: empty file", id="empty-file"),
        pytest.param(None, r"x\.h5: no such file", id="missing-file"),
    ],
)
def test_gallery_and_info_on_a_file_that_is_not_a_built_dataset_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: bytes | None,
    match: str,
) -> None:
    path = tmp_path / "x.h5"
    if content is not None:
        path.write_bytes(content)

    options = ["--output", str(tmp_path / "g.png")] if command == "gallery" else []

    code = main([command, str(path), *options])

    assert code == 2
    assert_one_error_line(capsys.readouterr().err, match)
    assert not (tmp_path / "g.png").exists()


def test_gallery_count_below_one_exits_2_with_one_line(
    tiny_run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "g.png"

    code = main(["gallery", str(tiny_run_dir / "val.h5"), "--count", "0", "--output", str(output)])

    assert code == 2
    assert_one_error_line(capsys.readouterr().err, r"--count 0 is too small, expected at least 1")
    assert not output.exists()


# --- the entry points ---------------------------------------------------------------------------


def test_python_m_seqbuilder_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seqbuilder", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: seqbuilder ")
    for command in ("image", "build", "preview", "gallery", "info", "merge"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


def test_image_help_describes_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["image", "--help"])
    except SystemExit as stop:  # argparse's --help exits; returning 0 would do as well
        code = stop.code

    out = capsys.readouterr().out
    assert code == 0
    for word in ("SEQUENCE", "MIN_SPACING", "MAX_SPACING", "IMAGE_WIDTH", "--output", "--seed"):
        assert word in out


@pytest.mark.usefixtures("isolated_logging")
def test_build_help_names_the_app(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--help"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("seqbuilder build:")
    assert "sequences" in out


def test_the_seqbuilder_console_script_guards_start_up_then_runs_main() -> None:
    (script,) = entry_points(group="console_scripts", name="seqbuilder")

    # a stdlib-only launcher takes charge of stop signals before seqbuilder is imported
    assert script.value == "_seqbuilder_launcher:main"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import _seqbuilder_launcher"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()}
    assert "_seqbuilder_launcher" in imported
    assert not {"seqbuilder", "numpy", "h5py", "hydra"} & imported
