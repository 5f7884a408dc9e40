"""MNIST: layouts, discovery order, per-label index, caching, real data, downloads."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from seqbuilder.errors import IdxFormatError, MnistNotFoundError
from seqbuilder.mnist.download import download_mnist
from seqbuilder.mnist.load import load_mnist
from seqbuilder.mnist.resources import FILES, SHA256
from tests.support.idx_files import TINY_BOX, TINY_COUNTS, idx_bytes, tiny_split, write_idx

# The published digests, copied from ../shared/mnist/README.md (independently of SHA256).
README_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
ALL_FILES = sorted(README_SHA256)


def _write_layout(folder: Path, layout: str) -> Path:
    """Write both tiny splits in ``layout`` under ``folder``; return what to pass as data_dir."""
    if layout == "npz":
        (tr_x, tr_y), (te_x, te_y) = tiny_split("train"), tiny_split("test")
        np.savez_compressed(
            folder / "mnist.npz", x_train=tr_x, y_train=tr_y, x_test=te_x, y_test=te_y
        )
        return folder
    target = folder / "MNIST" / "raw" if layout == "MNIST/raw" else folder
    target.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if layout in ("standard-gz", "MNIST/raw") else ""
    for source, names in FILES.items():
        images, labels = tiny_split(source)
        write_idx(target / (names["images"] + suffix), images)
        write_idx(target / (names["labels"] + suffix), labels)
    return folder


def _brute_force_ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image)
    if not len(ys):
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


# --- layouts and validation ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["train", "test"])
@pytest.mark.parametrize("layout", ["standard-gz", "standard-raw", "MNIST/raw", "npz"])
def test_every_layout_loads_the_right_arrays(tmp_path: Path, layout: str, source: str) -> None:
    split = load_mnist(source, data_dir=_write_layout(tmp_path, layout))
    images, labels = tiny_split(source)
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)
    assert split.images.dtype == np.uint8
    assert split.labels.dtype == np.uint8
    assert split.source == source
    assert str(tmp_path) in split.location
    # The digest is of the equivalent IDX file, whatever the layout.
    assert split.sha256 == hashlib.sha256(idx_bytes(images)).hexdigest()
    arrays = (split.images, split.labels, split.label_order, split.label_counts, split.ink_boxes)
    for array in arrays:
        assert not array.flags.writeable


def test_tiny_fixture_loads_train_gz_and_test_raw(tiny_mnist_dir: Path) -> None:
    train, test = load_mnist("train", tiny_mnist_dir), load_mnist("test", tiny_mnist_dir)
    assert len(train.images) == TINY_COUNTS["train"]
    assert len(test.images) == TINY_COUNTS["test"]
    # Each image identifies itself: image i is filled with i + 1 (train) or i + 101 (test).
    assert [int(img.max()) for img in train.images] == list(range(1, 31))
    assert [int(img.max()) for img in test.images] == list(range(101, 111))


def test_label_index_and_ink_boxes_of_the_tiny_split(tiny_mnist_dir: Path) -> None:
    split = load_mnist("train", tiny_mnist_dir)
    assert split.label_starts.tolist() == list(range(0, 31, 3))
    assert split.label_order.dtype == np.int32
    assert split.label_starts.dtype == np.int64
    assert split.label_counts.tolist() == [3] * 10
    assert split.label_counts.dtype == np.int64
    for digit in range(10):
        chosen = split.label_order[split.label_starts[digit] : split.label_starts[digit + 1]]
        assert chosen.tolist() == [digit, digit + 10, digit + 20]
    assert split.ink_boxes.dtype == np.int16
    assert split.ink_boxes.shape == (30, 4)
    assert (split.ink_boxes == TINY_BOX).all()


def test_ink_boxes_at_the_edges(tmp_path: Path) -> None:
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    images[1, 5, 7] = 1  # one pixel
    images[2] = 255  # full
    images[3, 27, 27] = 9  # bottom-right corner
    images[4, 0, 3] = images[4, 20, 0] = 2  # two separate strokes
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 1, 0], dtype=np.uint8))
    split = load_mnist("test", tmp_path)
    expected = [(0, 0, 0, 0), (7, 5, 8, 6), (0, 0, 28, 28), (27, 27, 28, 28), (0, 0, 4, 21)]
    assert [tuple(box) for box in split.ink_boxes.tolist()] == expected
    assert split.label_starts.tolist() == [0, 2, 4, 5, 5, 5, 5, 5, 5, 5, 5]
    assert split.label_counts.tolist() == [2, 2, 1, 0, 0, 0, 0, 0, 0, 0]  # a label with none: 0
    assert split.label_order.tolist() == [0, 4, 1, 3, 2]


def _idx(name: str, array: np.ndarray) -> Callable[[Path], object]:
    return lambda folder: write_idx(folder / name, array)


def _npz(**arrays: np.ndarray) -> Callable[[Path], object]:
    return lambda folder: np.savez(folder / "mnist.npz", **arrays)


def _npz_lying_header(folder: Path) -> None:
    """An npz whose x_test member declares a 1e9-image array but holds a few bytes."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)}
    with zipfile.ZipFile(folder / "mnist.npz", "w") as archive:
        with archive.open("x_test.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(100))
        archive.writestr("y_test.npy", b"")


_IMAGES, _LABELS = tiny_split("test")
_IMG, _LBL = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"

# (writers of the bad layout, message); the good partner file is written too where needed.
BAD_DATA = [
    pytest.param(
        [_idx(_IMG, _IMAGES), _idx(_LBL + ".gz", _IMAGES)],
        "t10k-labels-idx1-ubyte.gz: magic number 0x00000803 means 3 dims, "
        "expected 1 for a label file",
        id="labels-with-3-dims",
    ),
    pytest.param(
        [_idx(_IMG, _IMAGES[0]), _idx(_LBL, _LABELS)],
        "t10k-images-idx3-ubyte: magic number 0x00000802 means 2 dims, "
        "expected 3 for an image file",
        id="images-with-2-dims",
    ),
    pytest.param(
        [_idx(_IMG, _IMAGES[:, :, :27]), _idx(_LBL, _LABELS)],
        "t10k-images-idx3-ubyte: images have shape (10, 28, 27), expected (N, 28, 28)",
        id="images-28x27",
    ),
    pytest.param(
        [_idx(_IMG, _IMAGES.astype(np.int16)), _idx(_LBL, _LABELS)],
        "t10k-images-idx3-ubyte: element type int16, expected uint8",
        id="images-int16",
    ),
    pytest.param(
        [_idx(_IMG, _IMAGES), _idx(_LBL, _LABELS[:9])],
        "t10k-images-idx3-ubyte holds 10 images but t10k-labels-idx1-ubyte holds 9 labels",
        id="count-mismatch",
    ),
    pytest.param(
        [_idx(_IMG, _IMAGES), _idx(_LBL, np.where(_LABELS == 4, 10, _LABELS).astype(np.uint8))],
        "t10k-labels-idx1-ubyte: label 10 at index 4, expected 0..9",
        id="label-10",
    ),
    pytest.param(
        [lambda folder: (folder / _IMG).write_bytes(idx_bytes(_IMAGES)[:-7]), _idx(_LBL, _LABELS)],
        "t10k-images-idx3-ubyte: truncated: header declares 7840 payload bytes, file has 7833",
        id="truncated-images",
    ),
    pytest.param(
        [_npz(x_test=_IMAGES)],
        "mnist.npz: no array 'y_test', expected keys x_train, y_train, x_test, y_test",
        id="npz-missing-key",
    ),
    pytest.param(
        [_npz(x_test=_IMAGES, y_test=_LABELS.astype(np.int64))],
        "mnist.npz: y_test: element type int64, expected uint8",
        id="npz-int64-labels",
    ),
    pytest.param(
        [_npz(x_test=_IMAGES, y_test=np.array([None] * 10, dtype=object))],
        "mnist.npz: y_test declares object (10,)",
        id="npz-object-array",
    ),
    pytest.param(
        [_npz_lying_header],
        "mnist.npz: x_test declares uint8 (1000000000, 28, 28) (784000000128 bytes with header), "
        "its zip member holds 228",
        id="npz-header-declares-more-than-member",
    ),
    pytest.param(
        [lambda folder: (folder / "mnist.npz").write_bytes(b"not a zip")],
        "mnist.npz: not a valid .npz file: File is not a zip file",
        id="npz-not-a-zip",
    ),
]


@pytest.mark.parametrize(("writers", "message"), BAD_DATA)
def test_malformed_mnist_files_are_rejected_naming_the_file(
    tmp_path: Path, writers: list[Callable[[Path], object]], message: str
) -> None:
    for write in writers:
        write(tmp_path)
    with pytest.raises(IdxFormatError, match=re.escape(message)):
        load_mnist("test", tmp_path)


@pytest.mark.parametrize("source", ["validation", "Train", ""])
def test_unknown_source_lists_the_valid_ones(source: str) -> None:
    with pytest.raises(
        ValueError, match=r"is not an MNIST split, expected one of \('train', 'test'\)"
    ):
        load_mnist(source)


# --- discovery order and caching -------------------------------------------------------------


@pytest.fixture
def three_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    places = {name: tmp_path / name for name in ("arg", "env", "xdg-cache")}
    for place in places.values():
        place.mkdir(exist_ok=True)
    _write_layout(places["arg"], "standard-gz")
    _write_layout(places["env"], "npz")
    _write_layout(places["xdg-cache"] / "seqbuilder" / "mnist", "MNIST/raw")
    monkeypatch.setenv("SEQBUILDER_DATA", str(places["env"]))
    return places


def test_data_dir_beats_env_beats_cache(
    three_locations: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_mnist("train", three_locations["arg"]).location == str(three_locations["arg"])
    assert load_mnist("train").location == str(three_locations["env"] / "mnist.npz")
    monkeypatch.delenv("SEQBUILDER_DATA")
    cache = three_locations["xdg-cache"] / "seqbuilder" / "mnist" / "MNIST" / "raw"
    assert load_mnist("train").location == str(cache)


def test_a_location_without_the_split_is_skipped(
    three_locations: dict[str, Path], tmp_path: Path
) -> None:
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    for kind in ("images", "labels"):
        shutil.copy(three_locations["arg"] / f"{FILES['test'][kind]}.gz", only_test)
    assert load_mnist("test", only_test).location == str(only_test)
    assert load_mnist("train", only_test).location == str(three_locations["env"] / "mnist.npz")


def test_second_load_is_the_same_object_without_touching_the_disk(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    folder = shutil.copytree(tiny_mnist_dir, tmp_path / "copy")
    first = load_mnist("train", folder)
    folder.rename(tmp_path / "moved-away")
    assert load_mnist("train", folder) is first
    assert load_mnist("train", str(folder)) is first
    with pytest.raises(MnistNotFoundError):  # a new key looks again, and finds nothing
        load_mnist("test", folder)


def test_a_split_found_through_seqbuilder_data_is_keyed_by_it_alone(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQBUILDER_DATA", str(tiny_mnist_dir))
    first = load_mnist("test")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    assert load_mnist("test") is first  # the cache's place cannot change what was found
    other = tmp_path / "other"
    shutil.copytree(tiny_mnist_dir, other)
    monkeypatch.setenv("SEQBUILDER_DATA", str(other))
    second = load_mnist("test")
    assert second is not first
    assert second.location == str(other)
    np.testing.assert_array_equal(second.images, first.images)


def test_a_split_found_in_the_cache_is_keyed_by_the_cache_location(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    monkeypatch.setenv("SEQBUILDER_MNIST_MIRRORS", "")
    for home in ("one", "two"):
        shutil.copytree(tiny_mnist_dir, tmp_path / home / "seqbuilder" / "mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "one"))
    first = load_mnist("test")
    assert load_mnist("test") is first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "two"))
    second = load_mnist("test")
    assert second is not first
    assert second.location == str(tmp_path / "two" / "seqbuilder" / "mnist")


def test_a_repeated_load_never_touches_the_disk(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    shutil.copytree(tiny_mnist_dir, folder)
    first = load_mnist("train", folder)
    shutil.rmtree(folder)
    assert load_mnist("train", folder) is first


# --- real MNIST ------------------------------------------------------------------------------


def test_checksum_table_matches_the_readme() -> None:
    assert SHA256 == README_SHA256


@pytest.mark.parametrize(("source", "count"), [("train", 60000), ("test", 10000)])
def test_real_mnist_loads_with_the_published_checksums(
    real_mnist_dir: Path, source: str, count: int
) -> None:
    split = load_mnist(source, real_mnist_dir)
    assert split.images.shape == (count, 28, 28)
    assert split.labels.shape == (count,)
    assert split.sha256 == README_SHA256[FILES[source]["images"]]
    assert split.label_starts[-1] == count
    np.testing.assert_array_equal(np.diff(split.label_starts), np.bincount(split.labels))
    np.testing.assert_array_equal(split.label_counts, np.bincount(split.labels))
    grouped = split.labels[split.label_order]
    assert (np.diff(grouped.astype(int)) >= 0).all()
    for i in range(0, count, count // 500):
        assert tuple(split.ink_boxes[i]) == _brute_force_ink_box(split.images[i])


# --- downloads, against a real HTTP server on 127.0.0.1 ---------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler: no socket outlives a test
    real_dir: Path
    requests: list[str]
    release: threading.Event


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /<behaviour>/<file>.gz, the behaviour being how this mirror misbehaves."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        behaviour, _, name = self.path.strip("/").partition("/")
        real = self.server.real_dir / name
        if behaviour in ("404", "500") or not real.is_file():
            self.send_error(int(behaviour) if behaviour in ("404", "500") else 404)
            return
        body = real.read_bytes()
        if behaviour == "loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if behaviour == "reset":
            return  # close without a response
        if behaviour == "stall":  # accept the connection, never answer
            self.server.release.wait(20)
            return
        if behaviour == "corrupt":
            body = body[:5000] + bytes(b ^ 0x55 for b in body[5000:5100]) + body[5100:]
        if behaviour == "wrong":  # a valid gzip of a valid IDX file, just not MNIST's
            body = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "hang":
            self.wfile.write(body[:1000])
            self.wfile.flush()
            self.server.release.wait(20)
        elif behaviour == "truncated":
            self.wfile.write(body[: len(body) // 2])
        else:
            self.wfile.write(body)


@pytest.fixture(scope="module")
def mirror(real_mnist_dir: Path) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.real_dir, server.requests, server.release = real_mnist_dir, [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def _url(server: _Server, behaviour: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{behaviour}/"


@pytest.fixture
def download_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: _Server
) -> Callable[..., Path]:
    """Point the mirrors at the local server; return the (empty) cache folder."""
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    monkeypatch.setenv("SEQBUILDER_DOWNLOAD_TIMEOUT", "0.5")
    mirror.requests.clear()

    def use(*behaviours: str) -> Path:
        monkeypatch.setenv(
            "SEQBUILDER_MNIST_MIRRORS", " ".join(_url(mirror, b) for b in behaviours)
        )
        return tmp_path / "xdg-cache" / "seqbuilder" / "mnist"

    return use


def _assert_cache_holds_exactly_the_genuine_files(cache: Path) -> None:
    assert sorted(p.name for p in cache.iterdir()) == [f"{n}.gz" for n in ALL_FILES]
    for name in ALL_FILES:
        payload = gzip.decompress((cache / f"{name}.gz").read_bytes())
        assert hashlib.sha256(payload).hexdigest() == README_SHA256[name]


def test_download_fills_the_cache_with_a_progress_bar(
    download_env: Callable[..., Path], mirror: _Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = download_env("good")
    split = load_mnist("test")
    assert split.sha256 == README_SHA256["t10k-images-idx3-ubyte"]
    assert split.location == str(cache)
    _assert_cache_holds_exactly_the_genuine_files(cache)
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().err  # tqdm's bar
    assert len(mirror.requests) == 4


def test_valid_cached_files_are_not_downloaded_again(
    download_env: Callable[..., Path], mirror: _Server, real_mnist_dir: Path
) -> None:
    cache = download_env("good")
    cache.mkdir(parents=True)
    for name in ALL_FILES[1:]:
        shutil.copy(real_mnist_dir / f"{name}.gz", cache)
    (cache / f"{ALL_FILES[0]}.gz").write_bytes(b"rubbish")  # present but invalid: replaced
    download_mnist(cache)
    assert mirror.requests == [f"/good/{ALL_FILES[0]}.gz"]
    _assert_cache_holds_exactly_the_genuine_files(cache)


BAD_MIRRORS = [
    pytest.param("corrupt", "corrupt gzip: ", id="corrupt-gzip"),
    pytest.param(
        "wrong", "sha256 of the decompressed payload does not match", id="sha256-mismatch"
    ),
    pytest.param("404", "HTTP 404 Not Found", id="http-404"),
    pytest.param("500", "HTTP 500 Internal Server Error", id="http-500"),
    pytest.param("stall", "timed out", id="hangs-before-headers"),
    pytest.param("hang", "timed out", id="hangs-mid-body"),
    pytest.param("truncated", r"truncated body: got \d+ of \d+ bytes", id="truncated-body"),
    pytest.param("loop", "HTTP 302 .*infinite loop", id="redirect-loop"),
    pytest.param("reset", "Remote end closed connection without response", id="connection-reset"),
]


@pytest.mark.parametrize(("behaviour", "reason"), BAD_MIRRORS)
def test_a_bad_mirror_is_skipped_for_a_good_one(
    download_env: Callable[..., Path],
    mirror: _Server,
    caplog: pytest.LogCaptureFixture,
    behaviour: str,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO)  # each mirror's failure is logged at INFO
    cache = download_env(behaviour, "good")
    assert load_mnist("test").sha256 == README_SHA256["t10k-images-idx3-ubyte"]
    _assert_cache_holds_exactly_the_genuine_files(cache)
    assert {p.split("/")[1] for p in mirror.requests} >= {behaviour, "good"}
    assert any(re.search(reason, r.getMessage()) for r in caplog.records), caplog.text


def test_only_bad_mirrors_give_a_clean_error_and_an_empty_cache(
    download_env: Callable[..., Path], mirror: _Server
) -> None:
    cache = download_env("corrupt", "wrong", "404", "500", "truncated", "loop")
    pattern = (
        r"^MNIST files not found \(missing: train-images-idx3-ubyte\[\.gz\], "
        r"train-labels-idx1-ubyte\[\.gz\]\); looked in: data_dir \(unset\), "
        rf"\$SEQBUILDER_DATA \(unset\), {re.escape(str(cache))}; download failed from 6 mirrors "
        rf"\({re.escape(_url(mirror, 'corrupt'))}: corrupt gzip: .*; "
        rf"{re.escape(_url(mirror, 'wrong'))}: sha256 .*; .*/404/: HTTP 404 Not Found; .*\); "
        r"set SEQBUILDER_DATA to a folder holding them$"
    )
    with pytest.raises(MnistNotFoundError, match=pattern):
        load_mnist("train")
    assert list(cache.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_no_server_gives_the_offline_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    monkeypatch.setenv("SEQBUILDER_MNIST_MIRRORS", f"http://127.0.0.1:{_closed_port()}/mnist/")
    with pytest.raises(
        MnistNotFoundError,
        match=(
            r"MNIST files not found \(missing: t10k-images-idx3-ubyte\[\.gz\], .*\); looked in: "
            r".*; download failed from mirror \(http://127\.0\.0\.1:\d+/mnist/: .*Connection "
            r"refused\); set SEQBUILDER_DATA to a folder holding them$"
        ),
    ):
        load_mnist("test")
    assert list((tmp_path / "xdg-cache" / "seqbuilder" / "mnist").iterdir()) == []


def test_no_mirrors_configured_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    cache = tmp_path / "xdg-cache" / "seqbuilder" / "mnist"
    with pytest.raises(
        MnistNotFoundError,
        match=(
            r"^MNIST files not found \(missing: train-images-idx3-ubyte\[\.gz\], "
            r"train-labels-idx1-ubyte\[\.gz\]\); looked in: data_dir \(unset\), "
            rf"\$SEQBUILDER_DATA \(unset\), {re.escape(str(cache))}; no download mirrors "
            r"configured \(\$SEQBUILDER_MNIST_MIRRORS is empty\); set SEQBUILDER_DATA to a "
            r"folder holding them$"
        ),
    ):
        load_mnist()


def test_missing_lists_only_the_files_not_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_mnist_dir: Path
) -> None:
    monkeypatch.delenv("SEQBUILDER_DATA", raising=False)
    shutil.copy(tiny_mnist_dir / "train-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(
        MnistNotFoundError,
        match=(
            r"\(missing: train-labels-idx1-ubyte\[\.gz\]\); "
            rf"looked in: data_dir {re.escape(str(tmp_path))},"
        ),
    ):
        load_mnist("train", tmp_path)


def test_bad_download_timeout_is_a_value_error(
    download_env: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    download_env("good")
    monkeypatch.setenv("SEQBUILDER_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SEQBUILDER_DOWNLOAD_TIMEOUT='soon' is not a number"):
        load_mnist("test")


def test_two_threads_downloading_into_one_cache_both_succeed(
    download_env: Callable[..., Path],
) -> None:
    cache = download_env("good")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download_mnist(cache)
        except BaseException as exc:  # pragma: no cover -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _assert_cache_holds_exactly_the_genuine_files(cache)


def test_two_processes_downloading_into_one_cache_both_succeed(
    download_env: Callable[..., Path],
) -> None:
    cache = download_env("good")
    code = "from seqbuilder.mnist.load import load_mnist; print(load_mnist('test').sha256)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == README_SHA256["t10k-images-idx3-ubyte"]
    _assert_cache_holds_exactly_the_genuine_files(cache)
