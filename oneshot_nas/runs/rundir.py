"""A run is a record: logs/<run>/ holds args.json (first), train.log, metrics.jsonl and plots.

One JSON object per line in metrics.jsonl (per epoch, per generation or per candidate), so plots
and reports are made from the record, not from the live objects.
"""
import errno
import json
import logging
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

log = logging.getLogger(__name__)


class WriteError(UserError):
    """A write that failed; `cause` says why (a full disk, a read-only folder)."""

    def __init__(self, message, cause):
        super().__init__(message, settings="save_dir")
        self.cause = cause


@contextmanager
def writing(what, folder, cleanup=()):
    """Turn a failed write (a full disk, a read-only folder, MXNet's 'FileStream.Write incomplete')
    into one UserError naming what was written, where, and the cause, after removing the `cleanup`
    paths (the partial files of the write), so nothing half-written is left behind. Nested writes
    report as the outermost one."""
    try:
        yield
    except (OSError, RuntimeError, WriteError) as err:        # MXNetError is a RuntimeError
        for path in cleanup:
            path = Path(path)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        cause = err.cause if isinstance(err, WriteError) else _cause(err, folder)
        raise WriteError(f"cannot write {what} in {folder}: {cause} (nothing half-written was left)",
                         cause) from None


def _cause(err, folder):
    """Why a write failed, and what to do about it."""
    code = getattr(err, "errno", None)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{err.strerror.lower()}: the folder is read-only for you; choose another folder"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder; choose another folder"
    try:
        free = shutil.disk_usage(next(p for p in [Path(folder), *Path(folder).parents] if p.exists())).free
    except (OSError, StopIteration):
        free = None
    if code == errno.ENOSPC or (free is not None and free < 64 << 20):
        return f"no space left on the device ({free >> 10 if free is not None else '?'} KB free); free some space"
    return (err.strerror.lower() if isinstance(err, OSError) and err.strerror
            else str(err).strip().splitlines()[-1])


class RunDir:
    """The folder of one run. `create` refuses to reuse a folder with results unless told to."""

    def __init__(self, path):
        self.path = Path(path)
        self.log_file = None          # the log file of the run, when open_run set it up

    @staticmethod
    def check(path, resume=False, overwrite=False, marker="args.json"):
        """Refuse, before anything is written, to reuse a folder that holds a run unless told to
        resume or overwrite it, and a resume of a folder that holds none. A folder whose run failed
        to start (only its args, settings and log) holds no run: a corrected rerun just starts."""
        path = Path(path)
        taken = (path / marker).exists() and _has_results(path)
        if resume and overwrite:
            raise UserError("resume and overwrite contradict each other; choose one of them",
                            settings=("resume", "overwrite"))
        if taken and not (resume or overwrite):
            raise UserError(f"{path} already holds a run; resume it, overwrite it (start again in it) "
                            "or choose another folder", settings=("resume", "overwrite"))
        if resume and not taken:
            what = "its start failed: nothing was recorded" if (path / marker).exists() else f"{marker} is missing"
            raise UserError(f"cannot resume: {path} holds no run ({what}); start it without resuming")
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file, not a folder; choose another folder for the run")

    @classmethod
    def create(cls, path, args, resume=False, overwrite=False, marker="args.json", outputs=()):
        """Make the folder and write the resolved `args` (a dict) to args.json.

        An existing folder with a `marker` file is reused only with `resume` (args are kept; the new
        ones go to args.resume-N.json) or `overwrite` (the files named in `outputs` are removed
        first, so the new run's record is its own).
        """
        cls.check(path, resume, overwrite, marker)
        run = cls(path)
        with writing("the run's first files", path):
            run._start(args, resume, overwrite, outputs)
        return run

    def _start(self, args, resume, overwrite, outputs):
        run = self
        if overwrite and not resume:
            for name in outputs:
                target = run.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        run.path.mkdir(parents=True, exist_ok=True)
        name = "args.json"
        if resume:
            n = 1
            while (run.path / f"args.resume-{n}.json").exists():
                n += 1
            name = f"args.resume-{n}.json"
        (run.path / name).write_text(json.dumps(args, indent=2, sort_keys=True, default=str) + "\n")

    def file(self, name):
        return self.path / name

    def append(self, record, name="metrics.jsonl"):
        """Append one JSON line (non-finite floats become null so the file stays valid JSON)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        clean.setdefault("time", round(time.time(), 3))
        with writing(name, self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        with writing(name, self.path), open(self.path / name, "a") as f:
            f.write(json.dumps(clean, default=str) + "\n")

    def read(self, name="metrics.jsonl"):
        return read_jsonl(self.path / name)


def read_jsonl(path):
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break   # a line cut by a crash ends the record
    return rows


def _has_results(path):
    """Whether a run folder holds more than a start that failed (its args, settings and log)."""
    def setup_file(p):
        return p.name in ("args.json", "settings.json") or p.name.startswith("args.resume-") or p.suffix == ".log"
    return any(not setup_file(p) for p in Path(path).iterdir())


def open_run(path, args, resume=False, overwrite=False, chief=True, log_name="train.log", outputs=()):
    """The run folder and logging of an entry point: the chief worker writes args.json first, then
    logs to `log_name` in the folder (or to that path, if it names one elsewhere); other workers log
    warnings to the console only and get None."""
    from ..cli import setup_logging
    if not chief:
        setup_logging(None, level=logging.WARNING)
        return None
    run = RunDir.create(path, args, resume=resume, overwrite=overwrite, outputs=outputs)
    logfile = Path(log_name)
    run.log_file = logfile if logfile.is_absolute() or logfile.parent != Path(".") else run.file(logfile)
    setup_logging(run.log_file)
    log.info("run folder %s", run.path)
    return run
