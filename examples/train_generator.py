"""Train a conditional generator of digit sequences on a built ``train.h5``, then draw strings.

The model is a VAE of *glyphs*, one per digit, with a composition step that places them on a
layout; a string is generated conditioned on its digits and on a layout (``boxes``):

- **Training data.** :class:`seqbuilder.SequenceDataset` reads the built samples with
  ``label_format="padded"`` and ``value_range=(-1, 1)``; the file's ``boxes`` (each digit's
  ink box, read with h5py: the file is plain HDF5) cut every digit out of its sequence into a
  28x28 glyph, its ink centred. A build of 30,000 samples of 1 to 6 digits gives about 105,000
  glyphs, each paired with its digit and the width and height of its box.
- **Model.** Ten small VAEs, one per digit (a digit-indexed stack of weights, trained together
  in one batched product): the encoder maps a glyph and its box size to an 8-dimensional
  Gaussian posterior, the decoder maps a latent ``z`` and a box size to 28x28 logits. The loss
  is the usual MNIST VAE likelihood, binary cross-entropy of the logits against the pixel
  intensities ``(x + 1) / 2``, plus the KL divergence to N(0, I). One VAE per digit, rather
  than one VAE given the digit as an input, makes the digit impossible to ignore: a single
  conditional VAE trained this briefly kept the digit in ``z`` and drew the wrong digit for a
  random ``z`` (the recogniser read at most 16% of its strings right).
- **Drawing a string.** After training, a Gaussian is fitted to each digit's posterior means;
  every digit of a string gets a glyph decoded from a ``z`` drawn from its digit's Gaussian,
  its spread scaled by ``--temperature``. The glyph's ink is centred on its box and glyphs
  combine by pixel maximum, as the builder does. The boxes come from a layout: the boxes of
  the test sample whose string is drawn (``--layout boxes``, the default for
  ``--strings-from``), or a layout drawn as the builder draws one (``--layout drawn``, and
  always for ``--strings``): box sizes from the training glyphs of that digit, gaps uniform in
  the build's spacing range, the width, ``align`` and ``digit_crop`` read from the file's
  ``config`` attribute (always padded: a string the width cannot hold is an error).

Why glyphs and not whole 28 x W images: a sequence is its digits placed on a layout, and the
builder writes both (``labels``, ``boxes``), so the model learns only what varies, the
handwriting, and the composition is exact. It trains in minutes on two CPU cores and draws
strings of any length the width holds; a model of whole images would have to learn the
placement and the digits' identities from far more computation than this budget.

Outputs, for the N strings asked for: ``--samples`` (default ``samples.npy``), float32
``(N, 28, W)`` in [0, 1], white ink on black unless the build was ``background=white``; and
``--labels`` (default ``labels.npy``), int8 ``(N, L)`` digits padded with -1, the layout
``seqbuilder gallery`` and ``examples/train_recognizer.py --read`` take. ``--save`` and
``--load`` keep the weights and what drawing needs (the layout config and the box sizes), so a
saved model draws without the train file. The same ``--seed`` and ``--threads`` give the same
weights and samples.

The loop: build, train the recogniser, train the generator, draw, read::

    seqbuilder build hydra.run.dir=outputs/recognizer splits.train.count=30000
    python examples/train_generator.py --train outputs/recognizer/train.h5 \\
        --save outputs/generator/generator.pt --strings-from outputs/recognizer/test.h5 \\
        --count 1000 --samples outputs/generator/samples.npy --labels outputs/generator/labels.npy
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import numpy.typing as npt
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from seqbuilder import SequenceDataset

GLYPH = 28  # glyphs are 28x28, like MNIST digits and the sequences' height
DIGITS = 10
READ_BATCH = 512  # samples read and cropped at a time
SIZES_KEPT = 2000  # box sizes kept per digit for drawn layouts

Glyphs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (G, 28, 28), digits (G,), sizes (G, 2)


class Layout(NamedTuple):
    """The build's composition settings, from the ``config`` attribute of its files."""

    width: int
    spacing: tuple[int, int]
    align: str = "center"
    digit_crop: str = "box"
    background: str = "black"


class DigitLinear(nn.Module):
    """Ten linear layers, one per digit, applied to groups of inputs in one batched product."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        bound = inputs**-0.5  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(DIGITS, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(DIGITS, 1, outputs).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, digits: torch.Tensor | None) -> torch.Tensor:
        """Map ``(D, B, inputs)`` to ``(D, B, outputs)``, group ``d`` through the layer of digit
        ``digits[d]`` (``None``: the ten digits in order)."""
        if digits is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[digits], x, self.weight[digits])


class GlyphVAE(nn.Module):
    """Ten small VAEs of 28x28 glyphs, one per digit, each conditioned on the glyph's box size.

    Inputs come in groups, one per digit: ``(D, B, 28, 28)`` glyphs in [-1, 1] and ``(D, B, 2)``
    box sizes; ``digits`` ``(D,)`` says which digit each group is (``None``: the ten in order).
    """

    def __init__(self, latent: int = 8, hidden: int = 256) -> None:
        super().__init__()
        self.latent = latent
        self.hidden = hidden
        self.encode_1 = DigitLinear(GLYPH * GLYPH + 2, hidden)
        self.encode_2 = DigitLinear(hidden, 2 * latent)
        self.decode_1 = DigitLinear(latent + 2, hidden)
        self.decode_2 = DigitLinear(hidden, GLYPH * GLYPH)
        # Where each digit's glyphs sit in latent space (fit_latents): drawing samples there.
        self.register_buffer("latent_mean", torch.zeros(DIGITS, latent))
        self.register_buffer("latent_scale", torch.eye(latent).repeat(DIGITS, 1, 1))

    def encode(
        self, glyphs: torch.Tensor, sizes: torch.Tensor, digits: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior's mean and log-variance, each ``(D, B, latent)``."""
        inputs = torch.cat([glyphs.flatten(-2), sizes.float() / GLYPH], -1)
        hidden = F.relu(self.encode_1(inputs, digits))
        mean, log_var = self.encode_2(hidden, digits).chunk(2, -1)
        return mean, log_var

    def decode(
        self, z: torch.Tensor, sizes: torch.Tensor, digits: torch.Tensor | None
    ) -> torch.Tensor:
        """Return ``(D, B, 28, 28)`` ink logits for latents ``(D, B, latent)``."""
        hidden = F.relu(self.decode_1(torch.cat([z, sizes.float() / GLYPH], -1), digits))
        logits: torch.Tensor = self.decode_2(hidden, digits)
        return logits.unflatten(-1, (GLYPH, GLYPH))

    def loss(self, glyphs: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """Return the negative ELBO per glyph for ten groups ``(10, B, 28, 28)`` of glyphs."""
        mean, log_var = self.encode(glyphs, sizes, None)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decode(z, sizes, None)
        targets = (glyphs + 1) / 2
        likelihood = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum()
        return (likelihood + kl) / glyphs.shape[:2].numel()


# --- data ----------------------------------------------------------------------------------


def read_layout(path: Path) -> Layout:
    """Read the composition settings from the ``config`` attribute of a built file."""
    config: Any = OmegaConf.create(str(SequenceDataset(path).attrs["config"]))
    return Layout(
        width=int(config.width),
        spacing=(int(config.spacing.min), int(config.spacing.max)),
        align=str(config.align),
        digit_crop=str(config.digit_crop),
        background=str(config.background),
    )


def read_boxes(path: Path) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int16]]:
    """Return the ``(N, L)`` -1 padded labels and ``(N, L, 4)`` ink boxes of a built file."""
    with h5py.File(path, "r") as file:
        return file["labels"][()], file["boxes"][()]


def read_glyphs(path: Path, max_train: int | None, background: str) -> Glyphs:
    """Cut every digit of a built file out of its sample, through :class:`SequenceDataset`.

    Returns:
        ``(glyphs, digits, sizes)``: ``(G, 28, 28)`` float32 in [-1, 1] (ink high), each
        glyph's ink box centred; ``(G,)`` int64 digits; ``(G, 2)`` int64 box width and height.
    """
    dataset = SequenceDataset(path, label_format="padded", value_range=(-1, 1))
    _, boxes = read_boxes(path)
    count = len(dataset) if max_train is None else min(max_train, len(dataset))
    parts: list[Glyphs] = []
    for start in range(0, count, READ_BATCH):
        rows = range(start, min(start + READ_BATCH, count))
        samples = [dataset[i] for i in rows]
        images = np.stack([image for image, _ in samples])  # (B, 28, W) in [-1, 1]
        labels = np.stack([label for _, label in samples])  # (B, L), -1 padded
        if background == "white":
            images = -images  # dark ink on white: make ink high, as in a black build
        parts.append(crop_glyphs(images, labels, boxes[start : start + len(rows)]))
    glyphs, digits, sizes = (torch.cat(part) for part in zip(*parts, strict=True))
    return glyphs, digits, sizes


def crop_glyphs(
    images: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], boxes: npt.NDArray[np.int16]
) -> Glyphs:
    """Cut the digits of ``images`` ``(B, 28, W)`` out along their ``boxes`` ``(B, L, 4)``.

    Each glyph keeps only its own box (a neighbour's ink never leaks in), centred on a 28x28
    canvas of background (-1); a box wider or taller than 28 keeps its central 28 pixels.
    """
    sample, slot = np.nonzero(labels >= 0)
    x0, y0, x1, y1 = (boxes[sample, slot, k].astype(np.int64) for k in range(4))
    size = np.stack([np.minimum(x1 - x0, GLYPH), np.minimum(y1 - y0, GLYPH)], 1)  # (G, 2)
    x0, y0 = x0 + (x1 - x0 - size[:, 0]) // 2, y0 + (y1 - y0 - size[:, 1]) // 2
    grid = np.arange(GLYPH)
    rows = y0[:, None] - (GLYPH - size[:, 1:]) // 2 + grid  # (G, 28) source row of each row
    cols = x0[:, None] - (GLYPH - size[:, :1]) // 2 + grid
    inside = ((rows >= y0[:, None]) & (rows < (y0 + size[:, 1])[:, None]))[:, :, None] & (
        (cols >= x0[:, None]) & (cols < (x0 + size[:, 0])[:, None])
    )[:, None, :]
    height, width = images.shape[1:]
    pixels = images[
        sample[:, None, None],
        np.clip(rows, 0, height - 1)[:, :, None],
        np.clip(cols, 0, width - 1)[:, None, :],
    ]
    glyphs = np.where(inside, pixels, np.float32(-1)).astype(np.float32)
    digits = labels[sample, slot]
    return torch.from_numpy(glyphs), torch.from_numpy(digits), torch.from_numpy(size)


# --- training ------------------------------------------------------------------------------


def train(model: GlyphVAE, data: Glyphs, args: argparse.Namespace) -> None:
    """Train ``model`` for ``args.epochs`` epochs: Adam with a cosine decay of the learning rate.

    Each step takes ``args.batch_size // 10`` glyphs of every digit, so the ten VAEs train in
    one batched pass; an epoch is as many steps as the commonest digit needs to be seen once
    (the others are cycled).
    """
    glyphs, digits, sizes = data
    per_digit = max(args.batch_size // DIGITS, 1)
    members = [torch.nonzero(digits == digit).squeeze(1) for digit in range(DIGITS)]
    # a digit that a tiny build lacks trains on every glyph rather than on nothing
    members = [found if len(found) else torch.arange(len(digits)) for found in members]
    steps = -(-max(len(found) for found in members) // per_digit)
    # fused: one kernel for the whole update, which with 4M parameters costs more than the batch
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * steps)
    shuffle = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    model.train()
    for epoch in range(1, args.epochs + 1):
        orders = [found[torch.randperm(len(found), generator=shuffle)] for found in members]
        total = 0.0
        for step in range(steps):
            positions = torch.arange(step * per_digit, (step + 1) * per_digit)
            batch = torch.stack([order[positions % len(order)] for order in orders])  # (10, b)
            loss = model.loss(glyphs[batch], sizes[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch}/{args.epochs}: loss {total / steps:.2f} ({elapsed:.0f} s)")


@torch.no_grad()
def fit_latents(model: GlyphVAE, data: Glyphs) -> None:
    """Fit a Gaussian to each digit's posterior means, the region its samples are drawn from.

    A VAE's glyphs do not fill its N(0, I) prior evenly; decoding from the prior hits regions
    no training glyph maps to, which give faint, ambiguous glyphs. Sampling from a density
    fitted to where the training glyphs do map ("ex-post density estimation", Ghosh et al.,
    2020) keeps to the glyphs the decoder learnt.
    """
    glyphs, digits, sizes = data
    model.eval()
    for digit in range(DIGITS):
        chosen = digits == digit
        if chosen.sum() <= model.latent:  # too few glyphs (a tiny build): keep N(0, I)
            continue
        means = torch.cat(
            [
                model.encode(glyphs[part][None], sizes[part][None], torch.tensor([digit]))[0][0]
                for part in torch.nonzero(chosen).squeeze(1).split(4096)
            ]
        )
        covariance = torch.cov(means.T) + 1e-4 * torch.eye(model.latent)
        model.latent_mean[digit] = means.mean(0)
        model.latent_scale[digit] = torch.linalg.cholesky(covariance)


# --- drawing -------------------------------------------------------------------------------


@torch.no_grad()
def draw_glyphs(
    model: GlyphVAE,
    digits: torch.Tensor,
    sizes: torch.Tensor,
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Decode one glyph per digit ``(G,)`` with box size ``(G, 2)``: ``(G, 28, 28)`` in [0, 1]."""
    model.eval()
    noise = torch.randn(len(digits), model.latent, generator=generator) * temperature
    z = model.latent_mean[digits] + (model.latent_scale[digits] @ noise[:, :, None])[..., 0]
    glyphs = torch.zeros(len(digits), GLYPH, GLYPH)
    for digit in digits.unique():
        chosen = digits == digit
        logits = model.decode(z[chosen][None], sizes[chosen][None], digit[None])
        glyphs[chosen] = torch.sigmoid(logits[0])
    return glyphs


def draw_layout(
    sizes: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    layout: Layout,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Place boxes of ``sizes`` ``(N, L, 2)`` on the build's width as the builder places digits.

    Gaps are uniform on the build's spacing range, between 28-column digit boxes
    (``digit_crop="box"``, each ink box centred in its digit box) or between ink boxes
    (``"ink"``); the composition is aligned on the width as ``align`` says. It is always
    padded, never scaled (a build's ``fit="scale"`` is not reproduced).

    Returns:
        ``(N, L, 4)`` int64 ink boxes ``x0, y0, x1, y1``, -1 padded.

    Raises:
        ValueError: A string could be wider than the build's width (every gap at its largest),
            checked before anything is drawn, as the builder does.
    """
    n, slots = sizes.shape[:2]
    valid = np.arange(slots) < lengths[:, None]  # (N, L)
    low, high = layout.spacing
    element = sizes[..., 0] if layout.digit_crop == "ink" else np.full((n, slots), GLYPH)
    widest = np.where(valid, element + high, 0).sum(1) - high  # every gap at its largest
    if widest.max() > layout.width:
        raise ValueError(
            f"{lengths[widest.argmax()]} digits with gaps up to {high} need {widest.max()} "
            f"columns, more than the build's width {layout.width}: draw shorter strings"
        )
    gaps = rng.integers(low, high, endpoint=True, size=(n, slots))
    steps = np.where(valid, np.maximum(element + gaps, 0), 0)  # ink crops: never leftwards
    start = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(steps, 1)[:, :-1]], 1)
    natural = np.where(valid, start + element, 0).max(1)  # (N,) width of each composition
    free = layout.width - natural
    if layout.align == "random":
        offset = rng.integers(0, free, endpoint=True)
    else:
        offset = free // 2 if layout.align == "center" else np.zeros(n, np.int64)
    x0 = offset[:, None] + start
    if layout.digit_crop == "box":
        x0 += (GLYPH - sizes[..., 0]) // 2
    y0 = (GLYPH - sizes[..., 1]) // 2
    boxes = np.stack([x0, y0, x0 + sizes[..., 0], y0 + sizes[..., 1]], -1)
    return np.where(valid[..., None], boxes, -1)


def compose(
    glyphs: torch.Tensor, boxes: npt.NDArray[np.int64], width: int
) -> npt.NDArray[np.float32]:
    """Place glyphs ``(N, L, 28, 28)`` with their ink centred on ``boxes`` ``(N, L, 4)``.

    Overlapping ink combines by pixel maximum, as in the builder.

    Returns:
        ``(N, 28, width)`` float32 in [0, 1].
    """
    n, slots = boxes.shape[:2]
    canvas = torch.zeros(n, GLYPH + 2 * GLYPH, width + 2 * GLYPH)  # a glyph's margin all round
    grid = torch.arange(GLYPH)
    everyone = torch.arange(n)[:, None, None]
    for slot in range(slots):
        box = torch.from_numpy(boxes[:, slot])
        placed = box[:, 0] >= 0
        w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        left = (box[:, 0] - (GLYPH - w) // 2).clamp(-GLYPH, width) + GLYPH
        top = (box[:, 1] - (GLYPH - h) // 2).clamp(-GLYPH, GLYPH) + GLYPH
        rows = (top[:, None] + grid)[:, :, None]
        cols = (left[:, None] + grid)[:, None, :]
        ink = glyphs[:, slot] * placed[:, None, None]
        canvas[everyone, rows, cols] = torch.maximum(canvas[everyone, rows, cols], ink)
    images = canvas[:, GLYPH : 2 * GLYPH, GLYPH : GLYPH + width]
    return images.contiguous().numpy()


def draw_samples(
    model: GlyphVAE,
    labels: npt.NDArray[np.int64],
    boxes: npt.NDArray[np.int64] | None,
    state: dict[str, Any],
    args: argparse.Namespace,
) -> npt.NDArray[np.float32]:
    """Draw one sample per row of ``labels`` ``(N, L)`` (-1 padded), on ``boxes`` if given.

    Without ``boxes`` the box sizes come from the training glyphs of each digit and the layout
    from :func:`draw_layout`.

    Returns:
        ``(N, 28, W)`` float32 in [0, 1], ``background`` as the build's.
    """
    layout = Layout(**state["layout"])
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    valid = labels >= 0
    lengths = valid.sum(1)
    if boxes is None:
        sizes = np.zeros((*labels.shape, 2), np.int64)
        for digit, table in enumerate(state["sizes"]):
            chosen = valid & (labels == digit)
            sizes[chosen] = table.numpy()[rng.integers(0, len(table), chosen.sum())]
        boxes = draw_layout(sizes, lengths, layout, rng)
    size = np.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], -1)
    size = np.clip(size, 1, GLYPH)
    glyphs = torch.zeros(*labels.shape, GLYPH, GLYPH)
    glyphs[torch.from_numpy(valid)] = draw_glyphs(
        model,
        torch.from_numpy(labels[valid]),
        torch.from_numpy(size[valid]),
        args.temperature,
        generator,
    )
    images = compose(glyphs, boxes, layout.width)
    return 1 - images if layout.background == "white" else images


def requested(
    args: argparse.Namespace, width: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any] | None]:
    """Return the strings to draw as ``(N, L)`` digits padded with -1, and their boxes if any.

    Raises:
        ValueError: ``--strings-from`` names a file of another width than the model's build.
    """
    if args.strings_from is not None:
        test_width = SequenceDataset(args.strings_from).width
        if test_width != width:
            raise ValueError(
                f"{args.strings_from} is {test_width} pixels wide, the model's build {width}: "
                "draw the strings of a file built with it"
            )
        labels, boxes = read_boxes(args.strings_from)
        labels, boxes = labels[: args.count].astype(np.int64), boxes[: args.count]
        return labels, boxes.astype(np.int64) if args.layout == "boxes" else None
    longest = max(len(string) for string in args.strings)
    labels = np.full((len(args.strings), longest), -1, np.int64)
    for row, string in enumerate(args.strings):
        labels[row, : len(string)] = [int(char) for char in string]
    return labels, None


def save_array(path: Path, array: npt.NDArray[Any]) -> None:
    """Write a ``.npy`` array atomically (a temporary name, then a rename), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as file:
        np.save(file, array, allow_pickle=False)
    os.replace(tmp, path)


# --- weights -------------------------------------------------------------------------------


def make_state(data: Glyphs, layout: Layout, rng: np.random.Generator) -> dict[str, Any]:
    """Keep what drawing needs besides the weights: the layout and up to 2000 box sizes a digit."""
    _, digits, sizes = data
    tables = []
    for digit in range(DIGITS):
        of_digit = sizes[digits == digit]
        if len(of_digit) == 0:  # a tiny build may lack a digit: fall back to every glyph's
            of_digit = sizes
        chosen = rng.permutation(len(of_digit))[:SIZES_KEPT]
        tables.append(of_digit[torch.from_numpy(chosen)])
    return {"layout": layout._asdict(), "sizes": tables}


def save(path: Path, model: GlyphVAE, state: dict[str, Any]) -> None:
    """Save the weights and the drawing state atomically, making the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    shape = {"latent": model.latent, "hidden": model.hidden}
    torch.save({"model": model.state_dict(), **shape, **state}, tmp)
    os.replace(tmp, path)


def load(path: Path) -> tuple[GlyphVAE, dict[str, Any]]:
    """Load what :func:`save` wrote (tensors and plain values only: ``weights_only``)."""
    saved = torch.load(path, weights_only=True)
    model = GlyphVAE(latent=saved["latent"], hidden=saved["hidden"])
    model.load_state_dict(saved["model"])
    saved["layout"]["spacing"] = tuple(saved["layout"]["spacing"])
    return model, {"layout": saved["layout"], "sizes": saved["sizes"]}


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", type=Path, help="a built train.h5 to train on")
    source.add_argument("--load", type=Path, help="weights saved by --save: skip training")
    parser.add_argument("--save", type=Path, default=None, help="write the weights here")
    wanted = parser.add_mutually_exclusive_group()
    wanted.add_argument(
        "--strings-from", type=Path, default=None, help="draw the strings of this built test.h5"
    )
    wanted.add_argument("--strings", nargs="+", default=None, help="draw these, e.g. 0965 31")
    parser.add_argument("--count", type=int, default=1000, help="strings of --strings-from")
    parser.add_argument(
        "--layout",
        choices=["boxes", "drawn"],
        default="boxes",
        help="--strings-from: the test samples' own boxes, or a layout drawn as the builder does",
    )
    parser.add_argument("--samples", type=Path, default=Path("samples.npy"), help=".npy to write")
    parser.add_argument("--labels", type=Path, default=Path("labels.npy"), help=".npy to write")
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="spread of the latents when drawing"
    )
    parser.add_argument("--epochs", type=int, default=20, help="passes over the train glyphs")
    parser.add_argument(
        "--batch-size", type=int, default=640, help="glyphs per step, a tenth of each digit"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="initial learning rate")
    parser.add_argument("--latent", type=int, default=8, help="latent dimensions")
    parser.add_argument("--hidden", type=int, default=256, help="hidden units of each VAE")
    parser.add_argument(
        "--max-train", type=int, default=None, help="use only the first N train samples"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "threads", "count", "latent", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_train is not None and args.max_train < 1:
        parser.error("--max-train must be at least 1")
    if args.temperature < 0:
        parser.error("--temperature must be >= 0")
    if args.strings is not None and not all(s.isdigit() and s.isascii() for s in args.strings):
        parser.error(f"--strings {' '.join(args.strings)}: expected strings of digits 0..9")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Train or load, draw the strings asked for, write them; return the exit status."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    if args.train is not None:
        layout = read_layout(args.train)
        data = read_glyphs(args.train, args.max_train, layout.background)
        print(
            f"train: {len(data[0])} glyphs of {args.train}; width {layout.width}, "
            f"{args.threads} threads ({time.perf_counter() - started:.0f} s to read)"
        )
        model = GlyphVAE(latent=args.latent, hidden=args.hidden)
        train(model, data, args)
        fit_latents(model, data)
        state = make_state(data, layout, np.random.default_rng(args.seed))
    else:
        model, state = load(args.load)
    if args.save is not None:
        save(args.save, model, state)
        print(f"wrote {args.save}")

    if args.strings_from is not None or args.strings is not None:
        try:
            labels, boxes = requested(args, state["layout"]["width"])
            samples = draw_samples(model, labels, boxes, state, args)
        except ValueError as error:  # strings the model's build cannot hold: one line
            print(f"train_generator.py: error: {error}", file=sys.stderr)
            return 2
        save_array(args.samples, samples)
        save_array(args.labels, labels.astype(np.int8))
        print(f"wrote {args.samples} {samples.shape} and {args.labels} {labels.shape}")
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
