"""Compose a held-out set of distorted "handwritten" digit sequences, independently of seqbuilder.

The robust recogniser (``train_recognizer.py --recipe handwriting``) trains on seqbuilder's own
augmented samples; judging it on samples made by the same code would only show that it learnt
that code. This script makes its test set with its own code, numpy and Pillow only, sharing
nothing with ``seqbuilder.image`` but the MNIST *test* digits (never seen in training):

- a writer's slant: one shear per sample, uniform in +-20 degrees;
- per digit: a rotation in +-10 degrees, a size factor in 0.75..1.05 (width and height drawn
  apart by up to 10%), a baseline shift in +-3 pixels;
- a pen: one grey dilation or erosion per sample (the 3x3 maximum or minimum, blended with
  the original by a weight of 0.4..1 for thicker, 0.3..0.6 for thinner);
- elastic wobble: a displacement field of white noise smoothed by a Gaussian (sigma 4 to 6
  pixels) scaled by 1.5 to 3.5 pixels of peak displacement, applied by bilinear
  sampling written here;
- spacing between the digits' ink of -3..+4 columns, so over a third of the gaps touch or overlap
  (ink combined with the pixel-wise maximum);
- the sequence placed on a 200-column canvas at a random offset, squeezed horizontally when it
  does not fit; a Gaussian blur of sigma 0..1.2, sensor noise of standard deviation 0..0.08 and a
  faint background level of 0..0.06.

The output is one split file in the layout of the contract (``images`` uint8 ``(N, 28, 200)``,
``labels`` int8 ``(N, 6)`` padded with -1, ``lengths``, ``boxes`` of each digit's ink,
``source_index`` into MNIST test), written with h5py directly, so ``SequenceDataset``,
``seqbuilder gallery`` and ``train_recognizer.py --test`` read it like a built file::

    python examples/heldout_handwriting.py outputs/heldout.h5 --count 2000 --seed 12345
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
from PIL import Image

from seqbuilder import __version__, load_mnist

WIDTH = 200
HEIGHT = 28
MAX_LENGTH = 6
#: The distortions' ranges, recorded in the file's ``config`` attribute.
SETTINGS = {
    "slant_degrees": 20.0,
    "rotation_degrees": 10.0,
    "scale": (0.75, 1.05),
    "aspect_jitter": 0.10,
    "baseline_pixels": 3,
    "pen_probability": 0.7,
    "elastic_sigma": (4.0, 6.0),
    "elastic_pixels": (1.5, 3.5),
    "thick_weight": (0.4, 1.0),
    "thin_weight": (0.3, 0.6),
    "gap": (-3, 4),
    "blur_sigma": (0.0, 1.2),
    "noise_std": (0.0, 0.08),
    "background": (0.0, 0.06),
}

Glyph = npt.NDArray[np.float32]  # (28, 28) in [0, 1]


def _affine(glyph: Glyph, rng: np.random.Generator, shear: float) -> Glyph:
    """Rotate, scale and shear ``glyph`` about its centre (Pillow's inverse affine map)."""
    angle = np.deg2rad(rng.uniform(-1, 1) * SETTINGS["rotation_degrees"])
    size = rng.uniform(*SETTINGS["scale"])
    aspect = 1.0 + rng.uniform(-1, 1) * SETTINGS["aspect_jitter"]
    sx, sy = size * aspect, size / aspect
    # forward map: shear(x += shear * (c - y)) . rotate . scale; Pillow wants output -> input
    forward = (
        np.array([[1.0, -shear], [0.0, 1.0]])
        @ np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        @ np.diag([sx, sy])
    )
    inverse = np.linalg.inv(forward)
    centre = np.array([13.5, 13.5])
    offset = centre - inverse @ centre
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    image = Image.fromarray(glyph, mode="F").transform(
        (28, 28), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(image, dtype=np.float32)


def _gaussian_blur(image: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    """Blur a 2-D array by a separable Gaussian of ``sigma`` pixels (edges reflected)."""
    if sigma < 0.05:
        return image
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        out = np.apply_along_axis(np.convolve, axis, padded, taps, mode="valid")
    return out.astype(np.float32)


def _smooth_field(rng: np.random.Generator, sigma: float) -> npt.NDArray[np.float32]:
    """Return a (28, 28) white-noise field blurred by a Gaussian of ``sigma``, peak 1."""
    field = _gaussian_blur(rng.uniform(-1, 1, (HEIGHT, 28)).astype(np.float32), sigma)
    return field / max(float(np.abs(field).max()), 1e-6)


def _elastic(glyph: Glyph, rng: np.random.Generator) -> Glyph:
    """Displace every pixel by a smooth random field, sampling ``glyph`` bilinearly."""
    sigma = rng.uniform(*SETTINGS["elastic_sigma"])
    strength = rng.uniform(*SETTINGS["elastic_pixels"])
    dx = _smooth_field(rng, sigma) * strength
    dy = _smooth_field(rng, sigma) * strength
    rows, cols = np.mgrid[0:HEIGHT, 0:28].astype(np.float32)
    y = np.clip(rows + dy, 0, HEIGHT - 1)
    x = np.clip(cols + dx, 0, 27)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, HEIGHT - 1), np.minimum(x0 + 1, 27)
    wy, wx = y - y0, x - x0
    top = glyph[y0, x0] * (1 - wx) + glyph[y0, x1] * wx
    bottom = glyph[y1, x0] * (1 - wx) + glyph[y1, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _pen(glyph: Glyph, kind: str, weight: float) -> Glyph:
    """Thicken (grey dilation) or thin (grey erosion) the strokes, blended by ``weight``."""
    padded = np.pad(glyph, 1)
    windows = np.stack([padded[r : r + HEIGHT, c : c + 28] for r in range(3) for c in range(3)])
    changed = windows.max(axis=0) if kind == "thick" else windows.min(axis=0)
    return (1 - weight) * glyph + weight * changed


def _shift_rows(glyph: Glyph, shift: int) -> Glyph:
    """Move ``glyph`` down by ``shift`` rows (up if negative), filling with background."""
    out = np.zeros_like(glyph)
    if shift >= 0:
        out[shift:] = glyph[: HEIGHT - shift]
    else:
        out[:shift] = glyph[-shift:]
    return out


def compose(
    glyphs: Sequence[npt.NDArray[np.uint8]], rng: np.random.Generator
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """Compose one distorted sample from MNIST glyphs.

    Args:
        glyphs: the digits' MNIST images, each ``(28, 28)`` uint8.
        rng: the source of every random choice.

    Returns:
        ``image`` uint8 ``(28, 200)`` and ``boxes`` int16 ``(len(glyphs), 4)``: ``x0, y0, x1,
        y1`` (end exclusive) of each digit's ink in the image.
    """
    shear = np.tan(np.deg2rad(rng.uniform(-1, 1) * SETTINGS["slant_degrees"]))
    pen = rng.choice(["thick", "thin"]) if rng.random() < SETTINGS["pen_probability"] else None
    pen_weight = rng.uniform(*SETTINGS["thin_weight" if pen == "thin" else "thick_weight"])
    pieces = []
    for raw in glyphs:
        glyph = _affine(raw.astype(np.float32) / 255, rng, shear)
        glyph = _elastic(glyph, rng)
        if pen is not None:
            glyph = _pen(glyph, str(pen), pen_weight)
        baseline = int(rng.integers(-SETTINGS["baseline_pixels"], SETTINGS["baseline_pixels"] + 1))
        glyph = _shift_rows(glyph, baseline)
        ink = np.flatnonzero(glyph.max(axis=0) > 0.1)
        pieces.append(glyph[:, ink[0] : ink[-1] + 1] if ink.size else glyph[:, 10:18])

    gaps = rng.integers(SETTINGS["gap"][0], SETTINGS["gap"][1] + 1, len(pieces) - 1)
    advances = np.array([p.shape[1] for p in pieces[:-1]], dtype=np.int64) + gaps
    starts = np.concatenate([[0], np.cumsum(advances)]).astype(np.int64)
    starts -= min(0, int(starts.min()))  # a large overlap must not start left of the canvas
    natural = int(max(s + p.shape[1] for s, p in zip(starts, pieces, strict=True)))
    canvas = np.zeros((HEIGHT, natural), np.float32)
    for start, piece in zip(starts, pieces, strict=True):
        region = canvas[:, start : start + piece.shape[1]]
        np.maximum(region, piece, out=region)
    spans = [(int(s), int(s) + p.shape[1]) for s, p in zip(starts, pieces, strict=True)]

    squeeze = min(1.0, (WIDTH - 4) / natural)
    if squeeze < 1.0:  # too long for the canvas: resize horizontally, as a cramped writer would
        columns = max(1, round(natural * squeeze))
        resized = Image.fromarray(canvas, mode="F").resize(
            (columns, HEIGHT), Image.Resampling.BILINEAR
        )
        canvas = np.asarray(resized, dtype=np.float32)
        spans = [
            (int(a * squeeze), max(int(a * squeeze) + 1, round(b * squeeze))) for a, b in spans
        ]
    offset = int(rng.integers(0, WIDTH - canvas.shape[1] + 1))
    image = np.zeros((HEIGHT, WIDTH), np.float32)
    image[:, offset : offset + canvas.shape[1]] = canvas

    boxes = np.full((len(pieces), 4), -1, np.int16)
    for i, (a, b) in enumerate(spans):
        rows = np.flatnonzero(canvas[:, a:b].max(axis=1) > 0.1)
        top, bottom = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, HEIGHT)
        boxes[i] = (offset + a, top, offset + b, bottom)

    image = _gaussian_blur(image, rng.uniform(*SETTINGS["blur_sigma"]))
    image = image + rng.uniform(*SETTINGS["background"])
    image = image + rng.normal(0, rng.uniform(*SETTINGS["noise_std"]), image.shape)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), boxes


def make_heldout(count: int, seed: int) -> dict[str, npt.NDArray[np.generic]]:
    """Return the datasets of ``count`` samples, lengths uniform on 1..6, digits uniform."""
    mnist = load_mnist("test")
    by_digit = [np.flatnonzero(mnist.labels == d) for d in range(10)]
    rng = np.random.default_rng(seed)
    images = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    labels = np.full((count, MAX_LENGTH), -1, np.int8)
    lengths = np.zeros(count, np.int16)
    boxes = np.full((count, MAX_LENGTH, 4), -1, np.int16)
    source_index = np.full((count, MAX_LENGTH), -1, np.int32)
    for n in range(count):
        length = int(rng.integers(1, MAX_LENGTH + 1))
        digits = rng.integers(0, 10, length)
        sources = np.array([rng.choice(by_digit[d]) for d in digits])
        images[n], boxes[n, :length] = compose([mnist.images[i] for i in sources], rng)
        labels[n, :length], lengths[n], source_index[n, :length] = digits, length, sources
    return {
        "images": images,
        "labels": labels,
        "lengths": lengths,
        "boxes": boxes,
        "source_index": source_index,
        "source_sha256": np.array(mnist.sha256),
    }


def write_heldout(path: Path, data: dict[str, npt.NDArray[np.generic]], seed: int) -> None:
    """Write ``data`` as a split file of the contract's layout, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    config = "\n".join(
        ["# examples/heldout_handwriting.py: composed without seqbuilder.image"]
        + [
            f"{key}: {list(value) if isinstance(value, tuple) else value}"
            for key, value in SETTINGS.items()
        ]
        + [f"seed: {seed}", f"width: {WIDTH}", f"max_length: {MAX_LENGTH}", ""]
    )
    with h5py.File(tmp, "w") as file:
        count = len(data["images"])
        chunk = max(1, min(8, count))
        file.create_dataset(
            "images", data=data["images"], chunks=(chunk, HEIGHT, WIDTH), compression="gzip"
        )
        for key in ("labels", "lengths", "boxes", "source_index"):
            file.create_dataset(key, data=data[key], chunks=True)
        file.attrs.update(
            {
                "format_version": 1,
                "seqbuilder_version": __version__,
                "config": config,
                "seed": seed,
                "split": "heldout",
                "source": "test",
                "source_sha256": str(data["source_sha256"]),
                "background": "black",
                "height": HEIGHT,
                "width": WIDTH,
            }
        )
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Compose the samples, write the file, print its path; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the .h5 file to write")
    parser.add_argument("--count", type=int, default=2000, help="samples to compose")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count is {args.count}, expected at least 1")
    data = make_heldout(args.count, args.seed)
    write_heldout(args.output, data, args.seed)
    print(f"wrote {args.count} samples to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
