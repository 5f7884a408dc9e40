"""Train a digit-sequence recogniser on a built ``train.h5`` and evaluate it on ``test.h5``.

The model is a small CRNN without the recurrence: four 3x3 convolution blocks turn the
``(1, 28, W)`` image into ``W / 8`` columns of features, a 1-D convolution over those columns
scores 11 classes per column (the digits and a CTC blank), and CTC loss trains it against the
unsegmented digit strings. Greedy CTC decoding (best class per column, repeats merged, blanks
dropped) gives the prediction. Samples come through :class:`seqbuilder.SequenceDataset` and a
PyTorch ``DataLoader`` with ``--workers`` worker processes; torch is an optional extra
(``pip install -e '.[examples]'``), never a dependency of seqbuilder itself.

Metrics, on the test split (whose digits come from MNIST's test images, unseen in training):

- **sequence accuracy**: the fraction of samples whose predicted string equals the true one.
- **digit accuracy**: ``1 - E / D``, where ``E`` is the total Levenshtein edit distance
  (insertions, deletions, substitutions) between each prediction and its true string and ``D``
  the total number of true digits; that is, one minus the character error rate. A prediction
  that drops or adds a digit costs one edit, not every later position.

The predictions go to a CSV with the header ``index,prediction``: one row per test sample, the
sample's index in ``test.h5`` and the predicted digits as a string (empty if none), which
``seqbuilder gallery test.h5 --predictions FILE`` draws next to the true labels.

Runs are deterministic for a given ``--seed``, ``--threads`` and machine: the weights, dropout
and the shuffling derive from the seed, the workers draw no random numbers, and torch's CPU
kernels give the same results for the same thread count (two runs write identical predictions).
``torch.use_deterministic_algorithms`` is left off: it made the convolutions four times slower.

Weights: ``--save PATH`` writes them after training; ``--load PATH`` reads them instead of
training. Instead of the test split, ``--read SAMPLES.npy`` reads any array of images (for
example a generator's samples, ``(N, 28, W)`` uint8 or float in [0, 1], checked as
``seqbuilder gallery`` checks it) and writes its predictions CSV; with ``--labels LABELS.npy``
(the strings the samples should show) it prints how many it reads as their label, the digit
accuracy, the sequence accuracy by length and, for each digit 0..9, the fraction of its
occurrences read right (paired with an equal digit by a minimal edit alignment).
``docs/generative.md`` uses this to judge ``examples/train_generator.py``.

The configuration documented in the README (lengths 1..6, width 200, 30,000 train samples;
about 97% sequence accuracy in under five minutes on two cores)::

    seqbuilder build hydra.run.dir=outputs/recognizer splits.train.count=30000
    python examples/train_recognizer.py --train outputs/recognizer/train.h5 \\
        --test outputs/recognizer/test.h5 --predictions outputs/recognizer/predictions.csv \\
        --save outputs/recognizer/recognizer.pt
    python examples/train_recognizer.py --load outputs/recognizer/recognizer.pt \\
        --read samples.npy --labels labels.npy --predictions readings.csv

A built file is read through ``ChunkShuffle`` as the ``DataLoader``'s batch sampler (chunk-wise
reads). Without a file: ``--stream [OVERRIDE ...]`` trains this model on fresh
``SequenceStream`` samples, and ``--recipe handwriting`` trains the robust recogniser of
``recognizer_recipes.py`` on augmented streams within ``--minutes``, then scores ``--test`` and
every ``--eval`` file (any width)::

    python examples/train_recognizer.py --recipe handwriting --test outputs/heldout.h5 \\
        --eval outputs/clean/test.h5 --predictions outputs/heldout_predictions.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from seqbuilder import ChunkShuffle, SeqbuilderError, SequenceDataset
from seqbuilder.view.inspection import load_label_array, load_sample_array

BLANK = 10  # CTC blank class; classes 0..9 are the digits themselves
CLASSES = 11

Sample = tuple[
    npt.NDArray[np.float32], npt.NDArray[np.int64]
]  # image (28, W) float32, digits (length,) int64
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def conv_features(channels: Sequence[int], pools: Sequence[tuple[int, int]]) -> nn.Sequential:
    """A stride-2 stem (28 x W -> 14 x W/2), then one block per pool: 3x3 convolution, then
    max-pooling before batch norm and ReLU (which are memory-bound on a CPU: pooling first makes
    them cheaper). ``channels`` are the stem's and each block's output channels."""
    stem, *widths = channels
    layers: list[nn.Module] = [
        nn.Conv2d(1, stem, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(stem),
        nn.ReLU(inplace=True),
    ]
    for in_channels, out_channels, pool in zip(channels[:-1], widths, pools, strict=True):
        layers += [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.MaxPool2d(pool),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class Recognizer(nn.Module):
    """Map a ``(B, 1, 28, W)`` image batch to ``(W // 8, B, 11)`` per-column log-probabilities.

    A stride-2 stem, then three convolution blocks that pool before normalising (max-pooling
    first makes batch norm and ReLU, which are memory-bound on a CPU, four times cheaper); the
    last block pools the remaining height away. Every output column sees about 53 input
    columns, more than a 28-pixel digit.
    """

    def __init__(self, channels: Sequence[int] = (32, 48, 64, 96), hidden: int = 128) -> None:
        super().__init__()
        # height 14 -> 7 -> 3 -> 1, width W/2 -> W/8
        self.features = conv_features(channels, [(2, 2), (2, 2), (3, 1)])
        self.head = nn.Sequential(
            nn.Conv1d(channels[-1], hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv1d(hidden, CLASSES, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return log-probabilities ``(T, B, 11)``, T = W // 8, as CTC loss expects."""
        features = self.features(images).squeeze(2)  # (B, C, T)
        scores: torch.Tensor = self.head(features)  # (B, 11, T)
        return scores.permute(2, 0, 1).log_softmax(-1)


def collate(
    batch: Sequence[Sample],
) -> Batch:
    """Stack samples into ``(images (B, 1, 28, W), targets (sum of lengths,), lengths (B,))``."""
    images = torch.from_numpy(np.stack([image for image, _ in batch])).unsqueeze(1)
    targets = torch.from_numpy(np.concatenate([label for _, label in batch]))
    lengths = torch.tensor([len(label) for _, label in batch], dtype=torch.long)
    return images, targets, lengths


def greedy_decode(log_probs: torch.Tensor) -> list[str]:
    """Decode ``(T, B, 11)`` log-probabilities: best class per column, repeats merged, no blanks."""
    best = log_probs.argmax(-1).T.tolist()  # (B, T)
    strings = []
    for path in best:
        digits = [c for i, c in enumerate(path) if c != BLANK and (i == 0 or c != path[i - 1])]
        strings.append("".join(map(str, digits)))
    return strings


def edit_distance(a: str, b: str) -> int:
    """Return the Levenshtein distance between ``a`` and ``b`` (unit costs)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def read_right(truth: str, prediction: str) -> list[bool]:
    """Return, for each digit of ``truth``, whether ``prediction`` reads it right.

    A digit is read right when a minimal edit alignment of the two strings (the one behind
    :func:`edit_distance`) pairs it with an equal predicted digit: ``read_right("1234", "134")``
    is ``[True, False, True, True]``.
    """
    rows, cols = len(truth) + 1, len(prediction) + 1
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(cols)] for i in range(rows)]
    for i in range(1, rows):
        for j in range(1, cols):
            cost[i][j] = min(
                cost[i - 1][j] + 1,
                cost[i][j - 1] + 1,
                cost[i - 1][j - 1] + (truth[i - 1] != prediction[j - 1]),
            )
    right = [False] * len(truth)
    i, j = len(truth), len(prediction)
    while i > 0 and j > 0:  # walk back along one minimal alignment, preferring pairs
        if cost[i][j] == cost[i - 1][j - 1] + (truth[i - 1] != prediction[j - 1]):
            right[i - 1] = truth[i - 1] == prediction[j - 1]
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return right


def score(truths: Sequence[str], predictions: Sequence[str]) -> tuple[float, float]:
    """Return ``(digit accuracy, sequence accuracy)`` as defined in the module docstring."""
    edits = sum(edit_distance(p, t) for p, t in zip(predictions, truths, strict=True))
    digits = sum(len(t) for t in truths)
    exact = sum(p == t for p, t in zip(predictions, truths, strict=True))
    return 1.0 - edits / max(digits, 1), exact / max(len(truths), 1)


def _one_thread(worker_id: int) -> None:
    # The workers only read and convert samples (no randomness); leave the cores to training.
    torch.set_num_threads(1)


def make_loader(
    dataset: SequenceDataset | Subset[Sample],
    args: argparse.Namespace,
    *,
    shuffle: bool,
) -> DataLoader[Sample]:
    """Return a DataLoader over ``dataset`` with ``args.workers`` worker processes.

    Shuffled batches of a whole file take the fast path: ``ChunkShuffle`` as the batch sampler,
    so each worker reads a batch chunk by chunk (``ds.batch``) instead of sample by sample.
    """
    if shuffle and isinstance(dataset, SequenceDataset):
        # A buffer of one batch of chunks, not the default 64 with num_workers=args.workers:
        # on this recipe the default made the whole run slower (223 s against 189 s, twice the
        # system time) though reading took 0.2 s an epoch either way; why is not known yet.
        sampler = ChunkShuffle(
            dataset,
            batch_size=args.batch_size,
            buffer_chunks=max(1, args.batch_size // dataset.chunk_samples),
            seed=args.seed,
        )
        return DataLoader(
            _as_torch(dataset),
            batch_sampler=sampler,
            num_workers=args.workers,
            collate_fn=collate,
            worker_init_fn=_one_thread,
            persistent_workers=args.workers > 0,
            prefetch_factor=4 if args.workers > 0 else None,
        )
    return DataLoader(
        _as_torch(dataset),
        batch_size=args.batch_size,
        shuffle=shuffle,
        num_workers=args.workers,
        collate_fn=collate,
        worker_init_fn=_one_thread,
        generator=torch.Generator().manual_seed(args.seed),
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )


def _as_torch(dataset: SequenceDataset | Subset[Sample]) -> Dataset[Sample]:
    # SequenceDataset is a map-style dataset (__len__, __getitem__) without subclassing torch's.
    return cast("Dataset[Sample]", dataset)


def train(model: Recognizer, loader: DataLoader[Sample], args: argparse.Namespace) -> None:
    """Train ``model`` for ``args.epochs`` epochs: AdamW, a one-cycle schedule, CTC loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * len(loader), pct_start=0.15
    )
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if isinstance(loader.batch_sampler, ChunkShuffle):
            loader.batch_sampler.set_epoch(epoch - 1)
        model.train()
        total, batches = 0.0, 0
        for images, targets, lengths in loader:
            log_probs = model(images)
            frames = torch.full((images.shape[0],), log_probs.shape[0], dtype=torch.long)
            loss = ctc(log_probs, targets, frames, lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, batches = total + loss.item(), batches + 1
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch}/{args.epochs}: ctc loss {total / batches:.4f} ({elapsed:.0f} s)")


@torch.no_grad()
def predict(model: Recognizer, loader: DataLoader[Sample]) -> tuple[list[str], list[str]]:
    """Return ``(true strings, predicted strings)`` for every sample, in loader order."""
    model.eval()
    truths: list[str] = []
    predictions: list[str] = []
    for images, targets, lengths in loader:
        predictions += greedy_decode(model(images))
        for label in torch.split(targets, lengths.tolist()):
            truths.append("".join(map(str, label.tolist())))
    return truths, predictions


def write_predictions(path: Path, predictions: Sequence[str]) -> None:
    """Write ``index,prediction`` rows, atomically (a temporary name, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "prediction"])
        writer.writerows(enumerate(predictions))
    os.replace(tmp, path)


def load_recognizer(path: Path) -> Recognizer:
    """Load weights written by :func:`save_recognizer` (tensors only: ``weights_only``)."""
    model = Recognizer()
    model.load_state_dict(torch.load(path, weights_only=True)["model"])
    return model


def save_recognizer(path: Path, model: Recognizer) -> None:
    """Save the weights atomically (a temporary name, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict()}, tmp)
    os.replace(tmp, path)


def evaluate(model: Recognizer, args: argparse.Namespace) -> list[str]:
    """Predict every sample of ``args.test``, print the test figures; return the predictions."""
    test_set = SequenceDataset(args.test)
    truths, predictions = predict(model, make_loader(test_set, args, shuffle=False))
    digit_accuracy, sequence_accuracy = score(truths, predictions)
    print(f"test digit accuracy (1 - CER): {digit_accuracy:.4f}")
    print(f"test sequence accuracy: {sequence_accuracy:.4f} ({len(truths)} samples)")
    return predictions


@torch.no_grad()
def read(model: Recognizer, args: argparse.Namespace) -> list[str]:
    """Read every image of ``args.read`` (a ``.npy`` array, e.g. a generator's samples).

    The array is checked as ``seqbuilder gallery`` checks it: ``(N, 28, W)`` or
    ``(N, 1, 28, W)``, uint8 or float in [0, 1]. With ``args.labels`` (the strings the samples
    should show, as the gallery takes them) it prints how many are read as their label, the
    digit accuracy and the sequence accuracy by length.

    Returns:
        The N predicted strings, in array order.

    Raises:
        ValueError: The array or the labels are malformed (one line naming the file).
        SeqbuilderError: A file is missing or unreadable.
    """
    images = torch.from_numpy(load_sample_array(args.read))  # (N, 28, W) float32 in [0, 1]
    truths = None if args.labels is None else load_label_array(args.labels, len(images))
    model.eval()
    predictions: list[str] = []
    for batch in images.split(args.batch_size):
        predictions += greedy_decode(model(batch.unsqueeze(1)))
    print(f"read {len(images)} samples of {args.read} (width {images.shape[-1]})")
    if truths is not None:
        report_reading(truths, predictions)
    return predictions


def report_reading(truths: Sequence[str], predictions: Sequence[str]) -> None:
    """Print how many predictions equal their label, overall and by length; the digit
    accuracy; and, for each digit 0..9, the fraction of its occurrences read right."""
    digit_accuracy, sequence_accuracy = score(truths, predictions)
    right = sum(p == t for p, t in zip(predictions, truths, strict=True))
    print(
        f"read as their label: {right} of {len(truths)} (sequence accuracy "
        f"{sequence_accuracy:.4f}); digit accuracy (1 - CER): {digit_accuracy:.4f}"
    )
    by_length = []
    for length in sorted({len(t) for t in truths}):
        pairs = [(p, t) for p, t in zip(predictions, truths, strict=True) if len(t) == length]
        exact = sum(p == t for p, t in pairs)
        by_length.append(f"{length}: {exact / len(pairs):.3f} ({len(pairs)})")
    print(f"sequence accuracy by length: {', '.join(by_length)}")
    seen = {digit: [0, 0] for digit in "0123456789"}  # digit: [read right, occurrences]
    for truth, prediction in zip(truths, predictions, strict=True):
        for digit, right in zip(truth, read_right(truth, prediction), strict=True):
            seen[digit][0] += right
            seen[digit][1] += 1
    by_digit = [f"{d}: {right / total:.3f}" for d, (right, total) in seen.items() if total]
    print(f"digits read right, by digit: {', '.join(by_digit)}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line: a model (``--train`` or ``--load``), what it predicts
    (``--test`` or ``--read``), and the training options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--train", type=Path, help="a built train.h5 to train on")
    model.add_argument("--load", type=Path, help="weights written by --save: skip training")
    model.add_argument(
        "--recipe",
        choices=["handwriting"],
        help="train the robust recogniser on its own augmented streams (no file)",
    )
    model.add_argument(
        "--stream",
        nargs="*",
        metavar="OVERRIDE",
        help="train on SequenceStream(OVERRIDE...) instead of a file, fresh samples each pass",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--test", type=Path, help="a built .h5 file to evaluate on")
    target.add_argument(
        "--read", type=Path, metavar="SAMPLES.npy", help="images to read, (N, 28, W) in [0, 1]"
    )
    parser.add_argument(
        "--labels", type=Path, metavar="LABELS.npy", help="with --read: what each sample shows"
    )
    parser.add_argument("--save", type=Path, default=None, help="write the trained weights here")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps with --recipe or --stream"
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="training time budget with --recipe/--stream"
    )
    parser.add_argument(
        "--eval", type=Path, action="append", default=[], help="another .h5 file to score"
    )
    parser.add_argument("--epochs", type=int, default=3, help="passes over the train samples")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument(
        "--max-train", type=int, default=None, help="use only the first N train samples"
    )
    parser.add_argument(
        "--predictions",
        type=Path,
        default=Path("predictions.csv"),
        help="CSV to write: the predictions for --test or --read",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generated = args.recipe is not None or args.stream is not None
    if generated and (args.test is None or args.save is not None):
        parser.error("--recipe and --stream train, then score --test (they do not --save)")
    for name in ("epochs", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.workers < 0 or (args.max_train is not None and args.max_train < 1):
        parser.error("--workers must be >= 0 and --max-train >= 1")
    if args.labels is not None and args.read is None:
        parser.error("--labels goes with --read SAMPLES.npy")
    if args.load is not None and args.save is not None:
        parser.error("--save goes with --train: --load skips training")
    return args


def train_recognizer(args: argparse.Namespace) -> Recognizer:
    """Build the model and train it on ``args.train``, as the options say."""
    train_set = SequenceDataset(args.train)
    if args.test is not None and SequenceDataset(args.test).width != train_set.width:
        sys.exit(f"train width {train_set.width} != test width of {args.test}: build together")
    train_data: SequenceDataset | Subset[Sample] = train_set
    if args.max_train is not None and args.max_train < len(train_set):
        train_data = Subset(_as_torch(train_set), range(args.max_train))
    print(
        f"train: {len(train_data)} samples of {args.train}; width {train_set.width}; "
        f"{args.workers} workers, {args.threads} threads"
    )
    model = Recognizer()
    train(model, make_loader(train_data, args, shuffle=True), args)
    if args.save is not None:
        save_recognizer(args.save, model)
        print(f"wrote {args.save}")
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Train or load, predict the test split or an array, write the predictions; return 0."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.recipe is not None or args.stream is not None:
        return _main_generated(args, started)

    model = train_recognizer(args) if args.train is not None else load_recognizer(args.load)
    if args.test is not None:
        predictions = evaluate(model, args)
    else:
        try:
            predictions = read(model, args)
        except (ValueError, SeqbuilderError) as error:  # a missing or malformed file: one line
            print(f"train_recognizer.py: error: {error}", file=sys.stderr)
            return 2
    write_predictions(args.predictions, predictions)
    print(f"wrote {args.predictions}; total time {time.perf_counter() - started:.0f} s")
    return 0


def _main_generated(args: argparse.Namespace, started: float) -> int:
    """``--recipe`` / ``--stream``: train on generated samples, then score every file."""
    import recognizer_recipes as recipes  # next to this script

    steps = args.steps or (recipes.HANDWRITING_STEPS if args.recipe else 3 * 30_000 // 128)
    model = recipes.train_generated(
        args.recipe, args.stream or [], steps=steps, minutes=args.minutes,
        lr=args.lr, batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    print(f"training done at {time.perf_counter() - started:.0f} s", flush=True)
    for path in [*args.eval, args.test]:
        truths, predictions = recipes.predict_file(model, SequenceDataset(path), greedy_decode)
        digit_accuracy, sequence_accuracy = score(truths, predictions)
        print(f"{path}: digit accuracy (1 - CER) {digit_accuracy:.4f}, "
              f"sequence accuracy {sequence_accuracy:.4f} ({len(truths)} samples)")  # fmt: skip
    write_predictions(args.predictions, predictions)
    print(f"wrote {args.predictions}; total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
