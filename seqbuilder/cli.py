"""The ``seqbuilder`` command line: ``image``, ``build``, ``preview``, ``gallery``, ``merge``
and ``info``.

This is the one place that prints results and turns user errors into exit status 2 with a
single ``seqbuilder: error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .build.stopping import StopRequested, interruptible, stop_signals
from .errors import BuildInterrupted, JobError, SeqbuilderError, UsageError
from .image.options import PRESETS, Align, Background, DigitCrop, Fit
from .mnist.resources import SOURCES

PROG = "seqbuilder"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one ``seqbuilder: error: ...`` line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


#: The exit status of the command once it has ended, for the console script: a stop signal in
#: the last moments before the process exits then changes nothing (see _seqbuilder_launcher).
exit_status: int | None = None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``seqbuilder`` command line and return its exit status."""
    global exit_status
    args = list(sys.argv[1:] if argv is None else argv)
    with stop_signals():
        exit_status = _run(args)
        return exit_status


def prepare_exit() -> None:
    """Get a process that ran :func:`main` ready to exit: call it from its entry point.

    Python restores the default signal handlers while it shuts down, where a SIGTERM would kill
    the process without a word: stop signals are held until it has exited. The objects still
    alive (Hydra's, numpy's, a build's) are frozen, so Python's last garbage collection skips
    them and the OS frees them, about 0.1 s sooner after a build. Exit handlers still run, and
    every file is closed by now. Not for a process that goes on (tests call :func:`main`).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    gc.freeze()


def _run(args: list[str]) -> int:
    if args[:1] == ["build"]:
        return _guard(lambda: _build(args[1:]), args)
    if args[:1] == ["preview"]:  # overrides and flags mix freely, so it parses its own argv
        try:
            preview_args = _preview_parser().parse_intermixed_args(args[1:])
        except UsageError as error:
            return _report(str(error))

        def run_preview() -> int:
            with interruptible():  # writes one PNG, through an atomic rename
                return _preview(preview_args)

        return _guard(run_preview, args)
    parser = _make_parser()
    try:
        namespace = parser.parse_args(args)
    except UsageError as error:
        return _report(str(error))
    command: Callable[[argparse.Namespace], int] = namespace.command

    def run_command() -> int:
        # These commands write only through atomic renames: a stop signal may cut them anywhere.
        with interruptible():
            return command(namespace)

    return _guard(run_command, args)


def _guard(action: Callable[[], int], args: list[str]) -> int:
    """Run ``action``; the one place where failures become exit statuses.

    A user error (a :class:`SeqbuilderError`, or a config error from Hydra or OmegaConf) is one
    ``seqbuilder: error:`` line and status 2; a stop signal is one line and ``128 + signal``.
    Anything else is a bug: it propagates with its traceback (status 1).
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return action()
    except BrokenPipeError:  # e.g. `seqbuilder info FILE | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SeqbuilderError, HydraException, OmegaConfBaseException) as error:
        return _report(_describe(error))
    except BuildInterrupted as interrupt:
        print(f"{PROG}: {interrupt}", file=sys.stderr)
        return 128 + interrupt.signum
    except StopRequested as stop:  # before a build began, or in another command
        rerun = shlex.join([PROG, *args])
        what = "no data was written; run it again: " + rerun if args[:1] == ["build"] else ""
        print(
            f"{PROG}: stopped by {stop}" + (f" before the build began; {what}" if what else ""),
            file=sys.stderr,
        )
        return 128 + stop.signum


def _describe(error: BaseException) -> str:
    """Return the message of ``error`` and of the errors that caused it, as one line."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 4:
        text = str(current).strip()
        if text and text not in parts:
            parts.append(text)
        current = current.__cause__
    return ": ".join(parts) or type(error).__name__


def _report(message: str) -> int:
    """Print ``message`` as one ``seqbuilder: error:`` line and return status 2."""
    one_line = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return 2


def _make_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Digit-sequence images and datasets from MNIST.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    image = commands.add_parser(
        "image", help="write one sequence image as SEQUENCE.png", description=_IMAGE_HELP
    )
    image.add_argument("sequence", metavar="SEQUENCE", help="the digits, e.g. 0965")
    image.add_argument("min_spacing", metavar="MIN_SPACING", type=int, help="smallest gap (px)")
    image.add_argument("max_spacing", metavar="MAX_SPACING", type=int, help="largest gap (px)")
    image.add_argument("image_width", metavar="IMAGE_WIDTH", type=int, help="width in pixels")
    image.add_argument("--seed", type=int, default=None, help="make the image repeatable")
    image.add_argument("--output", type=Path, default=None, help="PNG path (default SEQUENCE.png)")
    image.add_argument("--fit", choices=[m.value for m in Fit], default="pad")
    image.add_argument("--align", choices=[m.value for m in Align], default="center")
    image.add_argument("--digit-crop", choices=[m.value for m in DigitCrop], default="box")
    image.add_argument("--background", choices=[m.value for m in Background], default="black")
    image.add_argument("--source", choices=SOURCES, default="train", help="MNIST split")
    image.add_argument(
        "--augment", choices=list(PRESETS), default="none", help="handwriting variation preset"
    )
    image.add_argument("--data-dir", type=Path, default=None, help="folder holding MNIST")
    image.set_defaults(command=_image)

    commands.add_parser(
        "build",
        help="build HDF5 datasets from conf/ (a Hydra app: see seqbuilder build --help)",
        add_help=False,
    )
    commands.add_parser(
        "preview",
        help="a PNG of the first samples a build configuration makes, without building",
        add_help=False,
    )

    gallery = commands.add_parser(
        "gallery",
        help="a PNG grid of samples of a built file, a model's predictions or generated samples",
        description=_GALLERY_HELP,
    )
    gallery.add_argument("file", metavar="FILE.h5|SAMPLES.npy", type=Path)
    gallery.add_argument("--count", type=int, default=32, help="samples to show (default 32)")
    gallery.add_argument("--output", type=Path, default=None, help="PNG path")
    gallery.add_argument(
        "--predictions", type=Path, default=None, metavar="CSV", help="index,prediction rows"
    )
    gallery.add_argument(
        "--errors-only", action="store_true", help="only samples whose prediction is wrong"
    )
    gallery.add_argument(
        "--indices", default=None, metavar="LIST", help="samples to show, e.g. 3,17,40-49"
    )
    gallery.add_argument(
        "--labels", type=Path, default=None, metavar="LABELS.npy", help="labels of SAMPLES.npy"
    )
    gallery.set_defaults(command=_gallery)

    merge = commands.add_parser(
        "merge",
        help="join the shard runs of a sharded build into one file per split",
        description="Join the <split>.h5 files of the runs of a sharded build (shard.count > 1) "
        "into DIR/<split>.h5, as HDF5 virtual datasets that read the shard files in place.",
    )
    merge.add_argument("runs", metavar="RUN_DIR", type=Path, nargs="+")
    merge.add_argument("--output", type=Path, required=True, metavar="DIR")
    merge.set_defaults(command=_merge)

    info = commands.add_parser("info", help="a summary of a built file")
    info.add_argument("file", metavar="FILE.h5", type=Path)
    info.set_defaults(command=_info)
    return parser


_IMAGE_HELP = (
    "Write an image of SEQUENCE in MNIST handwriting, IMAGE_WIDTH x 28 pixels, each gap "
    "between neighbouring digits drawn uniformly from [MIN_SPACING, MAX_SPACING]. "
    "Saves SEQUENCE.png in the current directory unless --output is given."
)


def _image(args: argparse.Namespace) -> int:
    from .image.sequence import generate_numbers_sequence
    from .view.gallery import save_png

    image = generate_numbers_sequence(
        args.sequence,
        (args.min_spacing, args.max_spacing),
        args.image_width,
        seed=args.seed,
        source=args.source,
        fit=args.fit,
        align=args.align,
        digit_crop=args.digit_crop,
        background=args.background,
        data_dir=args.data_dir,
        augment=args.augment,
    )
    output = args.output if args.output is not None else Path(f"{args.sequence}.png")
    save_png(image, output)
    print(output)
    return 0


_GALLERY_HELP = (
    "Draw samples as a PNG grid with their labels. FILE.h5: a built split; with --predictions "
    "(a CSV of index,prediction rows) each caption reads '#index: label -> prediction', red "
    "with a red frame where they differ. SAMPLES.npy: images a generative model made, "
    "(N, 28, W) uint8 or float in [0, 1], with optional --labels ((N, L) digits padded with -1, "
    "or (N,) strings). --indices shows exactly the listed samples; otherwise the first --count."
)


def _gallery(args: argparse.Namespace) -> int:
    from .view.gallery import render_gallery_file
    from .view.inspection import parse_indices, render_inspection

    if args.count < 1:
        raise UsageError(f"--count {args.count} is too small, expected at least 1")
    output = args.output if args.output is not None else Path(f"{args.file.stem}_gallery.png")
    options = (args.predictions, args.indices, args.labels)
    inspecting = args.errors_only or any(option is not None for option in options)
    if not inspecting and args.file.suffix.lower() != ".npy":
        print(render_gallery_file(args.file, args.count, output))
        return 0
    if args.errors_only and args.predictions is None:
        raise UsageError("--errors-only needs --predictions CSV")
    result = render_inspection(
        args.file,
        output,
        count=args.count,
        predictions=args.predictions,
        errors_only=args.errors_only,
        indices=None if args.indices is None else parse_indices(args.indices),
        labels=args.labels,
    )
    if args.predictions is not None:
        right = result.predicted - result.mismatches
        print(
            f"{result.mismatches} of {result.predicted} predictions wrong "
            f"({right / max(result.predicted, 1):.2%} right); showing {len(result.shown)}"
        )
    print(result.path)
    return 0


_PREVIEW_HELP = (
    "Draw the first --count samples that `seqbuilder build OVERRIDES` would write to a split, "
    "made in memory in a second or two: no run directory, no HDF5. The overrides are the "
    "build's (e.g. augment=heavy augment.slant=30 width=256); the PNG equals that build's "
    "gallery. Use it to tune augment.* and the layout keys."
)


def _preview_parser() -> _Parser:
    parser = _Parser(prog=f"{PROG} preview", description=_PREVIEW_HELP)
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="e.g. augment=heavy")
    parser.add_argument("--count", type=int, default=32, help="samples to show (default 32)")
    parser.add_argument("--output", type=Path, default=Path("preview.png"), help="PNG path")
    parser.add_argument("--split", default=None, help="split to show (default: the first)")
    return parser


def _preview(args: argparse.Namespace) -> int:
    from .build.preview import render_preview

    print(render_preview(args.overrides, args.count, args.output, args.split))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .store.merge import merge_runs

    for path in merge_runs(args.runs, args.output):
        print(path)
    return 0


def _info(args: argparse.Namespace) -> int:
    from .view.info import describe

    print(describe(args.file))
    return 0


def _build(overrides: list[str]) -> int:
    """Check every job, then hand over to the Hydra app, which raises to :func:`_guard`."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # raise, so we report one line
    from .build.app import hydra_main
    from .build.preflight import preflight

    preflight(overrides)  # bad jobs fail here, before Hydra makes a run directory

    saved = sys.argv
    sys.argv = [f"{PROG} build", *overrides]
    try:
        hydra_main()
    except JobError as failed:  # a user error inside the job, passed through Hydra's runner
        raise failed.error from None
    except SystemExit as stop:  # --help and friends exit through Hydra
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    finally:
        sys.argv = saved
    return 0
