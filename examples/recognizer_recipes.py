"""Training recipes for ``train_recognizer.py`` that make their own data: no built file needed.

- ``--stream``: the example's model trained on :class:`seqbuilder.SequenceStream` batches, a
  fresh set of samples every epoch, generated in memory from the same ``conf/`` a build uses.
- ``--recipe handwriting``: the robust recogniser. A wider CNN with a bidirectional GRU over its
  columns, trained within a time budget on a mixture of fresh augmented streams (wider than
  ``heavy``, with touching and overlapping digits; the same at the default spacing; ``light``)
  plus scanner noise, contrast and background added on the fly. It reads any width.

Both train with :func:`fit`: AdamW, a one-cycle learning rate driven by *progress*: ``step /
steps``, or ``elapsed / budget`` once the clock runs :data:`CLOCK_SLACK` ahead. On a machine
fast enough for the planned steps the run is the planned one (the same for a seed); on a slower
or busy machine the schedule still anneals fully, and training stops, when the ``--minutes``
budget is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from train_recognizer import BLANK, CLASSES, Recognizer, conv_features  # next to this script

from seqbuilder import SequenceDataset, SequenceStream

ArrayBatch = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]

#: Wider than the ``heavy`` preset in every key: handwriting that is off the page's
#: norms (slant to 22 degrees, digits at 0.7..1.1 of their size, pens from thin to thick,
#: a blur to 1.3 pixels) is still handwriting, and a recogniser should have seen it.
WIDE: tuple[str, ...] = (
    "augment=heavy",
    "augment.slant=22",
    "augment.rotation=12",
    "augment.scale=[0.7,1.1]",
    "augment.baseline=3",
    "augment.thickness=[-1.2,1.8]",
    "augment.elastic.alpha=34",
    "augment.elastic.sigma=5",
    "augment.blur=[0,1.3]",
)
#: The handwriting recipe's data: (weight, overrides). Every epoch of every stream is fresh.
HANDWRITING_MIX: tuple[tuple[int, tuple[str, ...]], ...] = (
    (3, (*WIDE, "digit_crop=ink", "spacing.min=-5", "spacing.max=4", "align=random")),
    (1, (*WIDE, "align=random")),
    (1, ("augment=light", "digit_crop=ink", "spacing.min=-2", "spacing.max=6", "align=random")),
)
#: Samples per epoch of each stream: a new ``epoch`` (fresh samples) after this many.
STREAM_COUNT = 8192
#: Planned steps of the handwriting recipe (batches of 128), sized for a quiet 2-core machine.
HANDWRITING_STEPS = 1400


class RobustRecognizer(nn.Module):
    """Map ``(B, 1, 28, W)`` images to ``(W // 4, B, 11)`` log-probabilities, for any ``W``.

    Four 3x3 convolution blocks (height 28 -> 1, width W -> W / 4), then a bidirectional GRU
    over the columns, so each column's decision sees the whole sequence, and a linear layer.
    A column every 4 pixels leaves touching digits, and a digit written twice, the blank
    columns CTC needs between them (at 8 pixels a column, a third of the errors on touching
    digits were digits left out).
    """

    def __init__(self, channels: Sequence[int] = (32, 48, 96, 128), hidden: int = 96) -> None:
        super().__init__()
        # height 14 -> 7 -> 3 -> 1, width W/2 -> W/4
        self.features = conv_features(channels, [(2, 2), (2, 1), (3, 1)])
        self.column = nn.Sequential(
            nn.Conv1d(channels[-1], channels[-1], 3, padding=1), nn.ReLU(inplace=True)
        )
        self.rnn = nn.GRU(channels[-1], hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.1)
        self.out = nn.Linear(2 * hidden, CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return log-probabilities ``(T, B, 11)``, T = W // 4, as CTC loss expects."""
        features = self.column(self.features(images).squeeze(2))  # (B, C, T)
        sequence, _ = self.rnn(features.transpose(1, 2))  # (B, T, 2 * hidden)
        scores: torch.Tensor = self.out(self.dropout(sequence))  # (B, T, 11)
        return scores.transpose(0, 1).log_softmax(-1)


def scan(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add what a scanner adds, one draw per sample: contrast, background level, sensor noise.

    ``images`` ``(B, 1, 28, W)`` in [0, 1]; returns the same shape, clipped to [0, 1].
    """
    size = (images.shape[0], 1, 1, 1)
    contrast = 0.4 + 0.6 * torch.rand(size, generator=generator)
    background = 0.08 * torch.rand(size, generator=generator)
    noise = 0.1 * torch.rand(size, generator=generator)
    noisy = images * contrast + background
    noisy = noisy + noise * torch.randn(images.shape, generator=generator)
    return noisy.clamp_(0, 1)


def stream_batches(
    mix: Sequence[tuple[int, Sequence[str]]], batch_size: int, seed: int, count: int
) -> Iterator[ArrayBatch]:
    """Yield batches forever, streams in proportion to their weights, fresh epochs each pass.

    Every stream is ``SequenceStream([*overrides, f"seed={seed}", f"splits.train.count={count}"],
    epoch=e)`` for e = 0, 1, 2, ...; its batches are interleaved by weight (2, 1, 1 gives
    A A B C A A B C ...).
    """
    order = [i for i, (weight, _) in enumerate(mix) for _ in range(weight)]
    epochs = [0] * len(mix)
    iterators: list[Iterator[ArrayBatch]] = [iter(()) for _ in mix]

    def _next(i: int) -> ArrayBatch:
        while True:
            batch = next(iterators[i], None)
            if batch is not None and len(batch[0]) == batch_size:
                return batch
            overrides = [*mix[i][1], f"seed={seed}", f"splits.train.count={count}"]
            stream = SequenceStream(overrides, split="train", epoch=epochs[i])
            iterators[i], epochs[i] = iter(stream.batches(batch_size)), epochs[i] + 1

    while True:
        for i in order:
            yield _next(i)


def to_tensors(batch: ArrayBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn an array batch into ``(images (B, 1, 28, W), targets (sum,), lengths (B,))``."""
    images, labels, lengths = batch
    targets = labels[labels >= 0]  # row by row, left-aligned: the concatenated digits
    return (
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(targets.astype(np.int64)),
        torch.from_numpy(lengths.astype(np.int64)),
    )


def fit(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    minutes: float,
    lr: float,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    report_every: int = 100,
) -> int:
    """Train ``model`` with CTC for ``steps`` steps or ``minutes`` minutes, whichever ends first.

    The learning rate follows a one-cycle curve (15% warm-up, cosine decay) of the progress:
    ``step / steps``, or ``elapsed / budget`` once that runs more than :data:`CLOCK_SLACK`
    ahead, so it anneals fully either way, and a run that keeps to time depends on its steps
    alone (the clock's share of the first steps made two runs of one seed differ). Returns
    the number of steps taken.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    budget = minutes * 60
    start = time.perf_counter()
    model.train()
    total, step = 0.0, 0
    for images, targets, lengths in batches:
        progress = _progress(step / steps, (time.perf_counter() - start) / budget)
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = _one_cycle(lr, progress)
        if augment is not None:
            images = augment(images)
        log_probs = model(images)
        frames = torch.full((images.shape[0],), log_probs.shape[0], dtype=torch.long)
        loss = ctc(log_probs, targets, frames, lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        total, step = total + loss.item(), step + 1
        if step % report_every == 0:
            elapsed = time.perf_counter() - start
            print(
                f"step {step}/{steps}: ctc loss {total / report_every:.4f} "
                f"({elapsed:.0f} s, {time.process_time():.0f} s CPU, progress {progress:.0%})",
                flush=True,
            )
            total = 0.0
    print(f"trained {step} steps in {time.perf_counter() - start:.0f} s", flush=True)
    return step


#: How far the clock may run ahead of the steps before it sets the schedule: within it, the
#: learning rate depends on the step alone, so a run on time is the same run every time.
CLOCK_SLACK = 0.02


def _progress(by_steps: float, by_clock: float) -> float:
    """The schedule's progress: the steps', unless the clock is more than the slack ahead."""
    return by_clock if by_clock >= 1 or by_clock > by_steps + CLOCK_SLACK else by_steps


def _one_cycle(peak: float, progress: float) -> float:
    warm = 0.15
    if progress < warm:
        return peak * (0.04 + 0.96 * progress / warm)
    return peak * (
        1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))
    )


def file_batches(
    dataset: SequenceDataset, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield a file's samples in order, read chunk-wise with ``ds.batch``, as tensors."""
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        yield to_tensors(dataset.batch(indices))


@torch.no_grad()
def predict_file(
    model: nn.Module, dataset: SequenceDataset, decode: Callable[[torch.Tensor], list[str]]
) -> tuple[list[str], list[str]]:
    """Return ``(true strings, predicted strings)`` for every sample of ``dataset``, in order."""
    model.eval()
    truths: list[str] = []
    predictions: list[str] = []
    for images, targets, lengths in file_batches(dataset, 256):
        predictions += decode(model(images))
        truths += ["".join(map(str, t.tolist())) for t in torch.split(targets, lengths.tolist())]
    return truths, predictions


def train_generated(
    recipe: str | None,
    overrides: Sequence[str],
    *,
    steps: int,
    minutes: float,
    lr: float,
    batch_size: int,
    seed: int,
) -> nn.Module:
    """Train the ``handwriting`` recipe (``recipe="handwriting"``) or the example's model on
    ``SequenceStream(overrides)`` (``recipe=None``); return the trained model."""
    generator = torch.Generator().manual_seed(seed)
    if recipe == "handwriting":
        model: nn.Module = RobustRecognizer()
        mix: Sequence[tuple[int, Sequence[str]]] = HANDWRITING_MIX
        augment: Callable[[torch.Tensor], torch.Tensor] | None = partial(scan, generator=generator)
    else:
        model, mix, augment = Recognizer(), ((1, tuple(overrides)),), None
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model {type(model).__name__}: {parameters:,} parameters; data: {mix}", flush=True)
    count = min(STREAM_COUNT, steps * batch_size)  # a short run needs no 8,192-sample epochs
    batches = map(to_tensors, stream_batches(mix, batch_size, seed, count))
    fit(model, batches, steps=steps, minutes=minutes, lr=lr, augment=augment)
    return model
