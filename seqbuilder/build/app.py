"""The ``seqbuilder build`` Hydra task: config in, HDF5 splits, galleries and a card out.

Workers compute blocks (see :mod:`seqbuilder.build.plan`); the parent alone writes, in block
order, keeping at most a few blocks in flight, so memory stays bounded whatever the split size.
A stop signal, a full disk or a dead worker ends the build with one message that says what was
kept and the command that resumes it.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import BuildInterrupted, BuildWriteError, JobError, SeqbuilderError, WorkerDiedError
from ..mnist.load import load_mnist
from ..store.schema import read_checkpoint
from ..view.gallery import render_gallery_file
from .card import write_card, write_dataset_info, write_resolved_config
from .config import BuildConfig, register_configs
from .lock import run_lock
from .phases import reach
from .plan import BLOCK_SAMPLES, make_recipe, split_plans
from .preflight import to_build_config
from .resume import resume_point
from .split import split_attrs, write_split
from .stopping import StopRequested, check, finished, stop_signals

log = logging.getLogger(__name__)

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://seqbuilder.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra's entry: validate, then build into this run's output directory.

    The command line has taken charge of stop signals already; a job that a launcher runs in a
    process of its own (submitit on SLURM) takes charge here.
    """
    with stop_signals():
        check()  # a stop signal during Hydra's start-up
        hydra_config = HydraConfig.get()
        run_dir = Path(hydra_config.runtime.output_dir)
        command = shlex.join(["seqbuilder", "build", *hydra_config.overrides.task])
        try:
            config = to_build_config(cfg)
            build(config, OmegaConf.to_yaml(cfg, resolve=True), run_dir, command=command)
        except (SeqbuilderError, HydraException, OmegaConfBaseException) as error:
            raise JobError(error) from None


def build(config: BuildConfig, config_yaml: str, run_dir: Path, *, command: str) -> list[Path]:
    """Build every split of ``config`` into ``run_dir``.

    Each split is written to ``<split>.h5.tmp``, checkpointed every second (and on a stop
    signal) and renamed when complete. With ``config.resume``, complete splits of an earlier
    build of the same configuration are kept and an unfinished one continues from its last
    checkpoint.

    Args:
        config: the validated configuration.
        config_yaml: its resolved YAML, stored in each file for provenance.
        run_dir: the output directory (Hydra's run directory).
        command: the command line that asked for the build, for the dataset card and for the
            resume hint.

    Returns:
        The paths of the written ``<split>.h5`` files.

    Raises:
        ConfigError: a problem with the config found while planning (before any file), or a
            resume over a build of another configuration.
        MnistNotFoundError: MNIST is not available.
        RunDirectoryBusyError: another build is writing into ``run_dir``.
        BuildInterrupted: SIGINT or SIGTERM, noted by
            :func:`~seqbuilder.build.stopping.stop_signals`; the message says what was kept and
            how to resume.
        BuildWriteError: the disk refused a write, or a worker died; the same message.
    """
    recipe = make_recipe(config)
    plans = split_plans(config)
    sources = {plan.source: load_mnist(plan.source, recipe.data_dir) for plan in plans}
    workers = config.workers or os.cpu_count() or 1
    kept = _Kept(run_dir, command)
    try:
        with run_lock(run_dir):
            reach("run-dir")
            check()
            write_resolved_config(run_dir, config_yaml)
            for plan in plans:
                path = kept.current = run_dir / f"{plan.name}.h5"
                sha256 = sources[plan.source].sha256
                start = resume_point(path, config_yaml, sha256) if config.resume else 0
                if start is None:
                    log.info("keeping the complete %s", path)
                else:
                    attrs = split_attrs(config, config_yaml, plan, sha256)
                    try:
                        write_split(recipe, plan, path, config, attrs, workers, start)
                    except OSError as error:
                        # h5py's text is a page of HDF5 internals; the errno says it in a phrase.
                        cause = os.strerror(error.errno) if error.errno else str(error)
                        raise BuildWriteError(
                            kept.say(f"writing {path.name} failed: {cause}")
                        ) from None
                kept.complete.append(path)
                if config.gallery.count and plan.stored_count:
                    reach(f"gallery:{plan.name}")
                    check()
                    gallery = run_dir / f"gallery_{plan.name}.png"
                    render_gallery_file(path, config.gallery.count, gallery)
            reach("card")
            check()
            digests = {source: split.sha256 for source, split in sources.items()}
            write_dataset_info(run_dir, config_yaml, kept.complete, digests)
            write_card(run_dir, command, config, kept.complete)
            check()  # a signal during the last writes is still honoured
            finished()
            reach("done")
    except StopRequested as stop:
        raise BuildInterrupted(kept.say(f"stopped by {stop}"), stop.signum) from None
    except WorkerDiedError as error:
        raise BuildWriteError(kept.say(str(error))) from None
    return kept.complete


class _Kept:
    """What a build has kept so far, and the one message that says so when it stops early."""

    def __init__(self, run_dir: Path, command: str) -> None:
        self.run_dir, self.command = run_dir, command
        self.complete: list[Path] = []
        self.current: Path | None = None

    def say(self, what: str) -> str:
        """Return ``what; kept: ...; resume with: ...`` as one line."""
        current = self.current
        complete = list(self.complete)
        if current is not None and current not in complete and current.exists():
            complete.append(current)  # stopped after its file was finished
        parts = [f"{path.name} complete" for path in complete]
        checkpoint = None if current is None else read_checkpoint(current)
        if current is not None and current not in complete and checkpoint is not None:
            samples = checkpoint[1] // BLOCK_SAMPLES * BLOCK_SAMPLES
            parts.append(f"{samples} samples of {current.name}")
        words = [
            w for w in shlex.split(self.command) if not w.startswith(("resume=", "hydra.run.dir="))
        ]
        resume = shlex.join([*words, f"hydra.run.dir={self.run_dir}", "resume=true"])
        return f"{what}; kept: {', '.join(parts) or 'nothing yet'}; resume with: {resume}"
