"""The ground-truth table: standalone accuracies of architectures, one JSON line per architecture.

    {"arch": "tiny_B...", "space": "tiny", "macs": 412345.0, "params": 160123.0, "bin": 3,
     "included": false, "seeds": [0, 1], "top1": [0.91, 0.9], "top5": [0.99, 1.0],
     "top1_mean": 0.905, "top1_std": 0.0071, "top5_mean": 0.995, "top5_std": 0.0071,
     "recipe_key": "3f2a...", "recipe": {...}}

`top1`/`top5` are the final validation accuracies of the seeds in `seeds`; the std is over seeds
(ddof 1; null with one seed). The recipe is everything that shaped the training (the retraining
settings but the seed and the decode threads, the initialisation, the device count and the data
by content); `recipe_key` is its hash, so a result is reused for (architecture, seed, recipe_key)
only. A space that is not a preset (e.g. another number of classes) travels as `space_config`.
Written and read here only (the table round-trips); no MXNet.
"""
import hashlib
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import ArchitectureError, UserError
from ..space import PRESETS, Architecture, SearchSpace

TABLE = "truth.jsonl"
REFERENCES = "references.jsonl"
# how the training batches are drawn (data/iterators.TrainStream): 2 = one iterator per run, reset
# between epochs (1 was an iterator per epoch); the same settings draw other batches under another
DATA_STREAM = 2     # the reference nets (nn/plain.py) trained by the same recipe and seeds
# the settings that do not shape a unit's result: each unit has its own seed, the number of decode
# threads changes which random order the data comes in, not how it is drawn, and how often (and on
# how many images) the epochs validate, log or keep models changes no weight (the final figure is
# always the whole validation set's)
NOT_RECIPE = ("seed", "threads", "val_images", "val_every", "log_interval", "save_frequency")


def dataset_identity(dataset):
    """The data by content: name, sizes, classes, augmentation and a hash of both RecordIO indexes
    (the same files at another path, or on another machine, are the same data)."""
    digest = hashlib.sha256()
    for records in (dataset.train, dataset.val):
        digest.update(Path(records.idx).read_bytes())
    aug = {f.name: getattr(dataset.augmentation, f.name) for f in fields(dataset.augmentation)}
    return {"name": dataset.name, "train": len(dataset.train), "val": len(dataset.val),
            "classes": dataset.num_classes, "augmentation": aug, "index_sha256": digest.hexdigest()[:16]}


def recipe_of(settings, init, devices, dataset):
    """What shapes a retraining's result (train.settings.Settings + the rest), as a JSON-able dict."""
    recipe = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in NOT_RECIPE}
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()}
    recipe.update(init=init, devices=devices, dataset=dataset_identity(dataset), data_stream=DATA_STREAM)
    return recipe


def recipe_key(recipe):
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _mean_std(values):
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


class _Results:
    """The per-seed accuracies of a row (`seeds`, `top1`, `top5`) and their statistics."""

    @property
    def top1_mean(self):
        return _mean_std(self.top1)[0]

    @property
    def top1_std(self):
        return _mean_std(self.top1)[1]

    def _results_dict(self):
        out = {"seeds": list(self.seeds), "top1": list(self.top1), "top5": list(self.top5)}
        for key in ("top1", "top5"):
            out[f"{key}_mean"], out[f"{key}_std"] = _mean_std(getattr(self, key))
        return out


def _checked_results(data, where):
    """(seeds, top1, top5) of a line, each a tuple; anything malformed is a UserError naming `where`."""
    seeds, top1, top5 = (data[k] if isinstance(data[k], list) else None for k in ("seeds", "top1", "top5"))
    if seeds is None or top1 is None or top5 is None or not len(seeds) == len(top1) == len(top5):
        raise UserError(f"{where}: seeds, top1 and top5 must be lists of the same length")
    if len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"{where}: the seeds {seeds} must be distinct integers")
    for key, values in (("top1", top1), ("top5", top5)):
        for seed, v in zip(seeds, values):
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not (number and math.isfinite(v) and 0 <= v <= 1):
                raise UserError(f"{where}: {key} of seed {seed} is {v!r}, not an accuracy in [0, 1]; "
                                "retrain that unit or remove the line")
    return tuple(seeds), tuple(map(float, top1)), tuple(map(float, top5))


@dataclass(frozen=True)
class TruthRow(_Results):
    """One architecture's line of the table (see the module docstring)."""
    arch: Architecture
    macs: float
    params: float
    seeds: tuple
    top1: tuple
    top5: tuple
    recipe_key: str
    recipe: dict
    bin: int = None
    included: bool = False

    def to_dict(self):
        space = self.arch.space
        out = {"arch": str(self.arch), "space": space.name, "macs": self.macs, "params": self.params,
               "bin": self.bin, "included": self.included, **self._results_dict()}
        out.update(recipe_key=self.recipe_key, recipe=self.recipe)
        if PRESETS.get(space.name) != space:
            out["space_config"] = space.to_dict()
        return out

    @classmethod
    def from_dict(cls, data, where="a table line"):
        """A row from `to_dict`'s record; anything malformed is a UserError naming `where`."""
        if not isinstance(data, dict):
            raise UserError(f"{where} is not a JSON object")
        missing = [k for k in ("arch", "macs", "params", "seeds", "top1", "top5", "recipe_key") if k not in data]
        if missing:
            raise UserError(f"{where} lacks {', '.join(missing)}: it is not a ground-truth table line "
                            "(python -m oneshot_nas.rank truth writes them)")
        try:
            space = SearchSpace.from_dict(data["space_config"]) if "space_config" in data else None
            arch = Architecture.from_str(data["arch"], space)
        except ArchitectureError as err:
            raise UserError(f"{where}: {err}") from None
        seeds, top1, top5 = _checked_results(data, where)
        return cls(arch, float(data["macs"]), float(data["params"]), seeds, top1, top5, str(data["recipe_key"]),
                   data.get("recipe") or {}, data.get("bin"), bool(data.get("included", False)))


@dataclass(frozen=True)
class ReferenceRow(_Results):
    """A reference net's line of references.jsonl: what a searched architecture must beat.

        {"name": "plain-8-16-32-64", "macs": 501760.0, "params": 25290.0, "seeds": [0, 1, 2],
         "top1": [...], "top5": [...], "top1_mean": ..., "top1_std": ..., "recipe_key": "3f2a..."}
    """
    name: str
    macs: float
    params: float
    seeds: tuple
    top1: tuple
    top5: tuple
    recipe_key: str

    def to_dict(self):
        return {"name": self.name, "macs": self.macs, "params": self.params, **self._results_dict(),
                "recipe_key": self.recipe_key}

    @classmethod
    def from_dict(cls, data, where="a reference line"):
        missing = [k for k in ("name", "macs", "params", "seeds", "top1", "top5", "recipe_key")
                   if not isinstance(data, dict) or k not in data]
        if missing:
            raise UserError(f"{where} lacks {', '.join(missing)}: it is not a reference line (python -m "
                            "oneshot_nas.rank truth --reference writes them)")
        return cls(str(data["name"]), float(data["macs"]), float(data["params"]), *_checked_results(data, where),
                   str(data["recipe_key"]))


def write_table(path, rows):
    """Write `rows` (TruthRow or ReferenceRow) as JSON lines, atomically (a reader never sees half a table)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r.to_dict(), allow_nan=False) + "\n" for r in rows))
    os.replace(tmp, path)
    return path


def read_references(path, recipe_key=None):
    """The reference rows beside a table (REFERENCES in its folder, or the file itself); [] when
    there are none. With `recipe_key`, only those trained by that recipe (the table's)."""
    path = Path(path)
    if path.is_dir() or path.name == TABLE:
        path = (path if path.is_dir() else path.parent) / REFERENCES
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path} line {number} is not JSON ({err})") from None
            rows.append(ReferenceRow.from_dict(data, f"{path} line {number}"))
    return [r for r in rows if recipe_key is None or r.recipe_key == recipe_key]


def read_table(path):
    """The rows of a table file (or of TABLE in a run folder), checked line by line."""
    path = Path(path)
    if path.is_dir():
        path = path / TABLE
    if not path.is_file():
        raise UserError(f"ground-truth table {path} does not exist; make one with python -m oneshot_nas.rank "
                        "truth (docs/ranking.md), or pass its run folder")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number} is not JSON ({err}); is it a ground-truth table?") from None
        rows.append(TruthRow.from_dict(data, f"{path} line {number}"))
    if not rows:
        raise UserError(f"ground-truth table {path} is empty; its training has not finished a unit yet")
    keys = {r.recipe_key for r in rows}
    if len(keys) > 1:
        raise UserError(f"{path} mixes {len(keys)} training recipes ({', '.join(sorted(keys))}); a table "
                        "compares architectures under one recipe: keep the lines of one")
    spaces = {r.arch.space.name for r in rows}
    if len(spaces) > 1:
        raise UserError(f"{path} mixes architectures of spaces {', '.join(sorted(spaces))}; keep one space")
    names = [str(r.arch) for r in rows]
    if len(set(names)) != len(names):
        raise UserError(f"{path} lists an architecture twice; merge its lines")
    return rows


def format_table(rows, references=()):
    """The table as text: one line per architecture (then per reference net), accuracies in percent."""
    lines = [f"{'architecture':58s} {'MACs':>7s} {'params':>7s}  {'top-1 per seed':24s} {'mean':>6s} {'std':>5s}"]
    for r in list(rows) + list(references):
        per_seed = " ".join(f"{100 * v:.1f}" for v in r.top1) or "-"
        mean, std = _mean_std(r.top1)
        name = str(r.arch) if isinstance(r, TruthRow) else r.name
        lines.append(f"{name:58s} {r.macs / 1e6:6.3f}M {r.params / 1e6:6.3f}M  {per_seed:24s} "
                     f"{'-' if mean is None else f'{100 * mean:.1f}':>6s} "
                     f"{'-' if std is None else f'{100 * std:.1f}':>5s}"
                     + ("  (included)" if getattr(r, "included", False) else "")
                     + ("  (reference net)" if isinstance(r, ReferenceRow) else ""))
    return "\n".join(lines)
