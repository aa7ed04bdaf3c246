"""A run is a record: logs/<run>/ holds args.json (first), train.log, metrics.jsonl and plots.

One JSON object per line in metrics.jsonl (per epoch, per generation or per candidate), so plots
and reports are made from the record, not from the live objects.
"""
import json
import math
import time
from pathlib import Path

from ..errors import UserError


class RunDir:
    """The folder of one run. `create` refuses to reuse a folder with results unless told to."""

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, args, resume=False, overwrite=False, marker="args.json"):
        """Make the folder and write the resolved `args` (a dict) to args.json.

        An existing folder with a `marker` file is reused only with `resume` (args are kept; the new
        ones go to args.resume-N.json) or `overwrite` (the folder's files are left, args replaced).
        """
        run = cls(path)
        taken = (run.path / marker).exists()
        if taken and not (resume or overwrite):
            raise UserError(f"{run.path} already holds a run; pass --resume to continue it or "
                            "--overwrite to start again in it (or choose another --save-dir)")
        if resume and not taken:
            raise UserError(f"--resume: {run.path} holds no run to resume ({marker} is missing)")
        run.path.mkdir(parents=True, exist_ok=True)
        name = "args.json"
        if resume:
            n = 1
            while (run.path / f"args.resume-{n}.json").exists():
                n += 1
            name = f"args.resume-{n}.json"
        (run.path / name).write_text(json.dumps(args, indent=2, sort_keys=True, default=str) + "\n")
        return run

    def file(self, name):
        return self.path / name

    def append(self, record, name="metrics.jsonl"):
        """Append one JSON line (non-finite floats become null so the file stays valid JSON)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        clean.setdefault("time", round(time.time(), 3))
        with open(self.path / name, "a") as f:
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
