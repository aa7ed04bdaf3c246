"""What a training entry point does around the loop: checks before anything trains, the run folder
(chief worker only), logging, and the final files (model, curves)."""
import logging
import shutil
from pathlib import Path

from ..cli import setup_logging
from ..errors import UserError
from ..train.curves import plot_training_curves
from .rundir import RunDir
from ..space import Architecture, get_space

log = logging.getLogger(__name__)
# Files of a previous run that --overwrite removes, so the new run's record is its own.
RUN_OUTPUTS = ("metrics.jsonl", "train.log", "curves.png", "checkpoint", "checkpoint.old", "checkpoint.tmp")


def resolve_space(name, num_classes=None):
    """A preset space, with its classifier resized if `num_classes` differs (renamed, so files and
    architecture strings never claim to be the preset)."""
    space = get_space(name)
    if num_classes is not None and num_classes != space.num_classes:
        if num_classes < 2:
            raise UserError(f"--num-classes {num_classes}: a classifier needs at least 2 classes")
        space = space.derive(f"{space.name}-c{num_classes}", num_classes=num_classes)
    return space


def rebase(arch, space, what="--reference-arch"):
    """`arch` on `space` when the two differ only in name and number of classes."""
    if arch.space == space:
        return arch
    mine, theirs = arch.space.to_dict(), space.to_dict()
    for d in (mine, theirs):
        d.pop("name"), d.pop("num_classes")
    if mine != theirs:
        raise UserError(f"{what} {arch} is of space {arch.space.name!r}, which does not match "
                        f"--space {space.name!r}")
    return Architecture(space, arch.blocks, arch.channels)


def check_run_dir(path, resume, overwrite):
    """Refuse, before anything trains, to write over a previous run (every worker checks)."""
    taken = (Path(path) / "args.json").exists()
    if taken and not (resume or overwrite):
        raise UserError(f"{path} already holds a run; pass --resume to continue it or --overwrite to "
                        "start again in it (or choose another --save-dir)")
    if resume and not taken:
        raise UserError(f"--resume: {path} holds no run to resume (args.json is missing)")
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them")


def open_run(path, args, resume, overwrite, chief, logging_file="train.log"):
    """The run folder and logging: the chief writes args.json first, then logs to train.log; other
    workers log warnings to the console only."""
    if not chief:
        setup_logging(None, level=logging.WARNING)
        return None
    if overwrite and not resume:
        for name in RUN_OUTPUTS:
            target = Path(path) / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    run = RunDir.create(path, args, resume=resume, overwrite=overwrite)
    logfile = Path(logging_file)
    setup_logging(logfile if logfile.is_absolute() or logfile.parent != Path(".") else run.file(logfile))
    log.info("run folder %s", run.path)
    return run


def finish_run(run, title):
    """Curves of the whole run (read back from metrics.jsonl) to curves.png."""
    if run is None:
        return None
    path = plot_training_curves(run.read(), run.file("curves.png"), title)
    if path:
        log.info("curves: %s", path)
    return path
