"""Training the ground-truth table: K architectures x S seeds, each trained standalone from scratch.

`GroundTruthRun` plans the table (K architectures stratified over a cost range of the budget,
sample/stratified.py, plus the architectures to include; seeds first_seed .. first_seed + S - 1),
then works through its units, one (architecture, seed) each, seed by seed, so a table that is
still growing already holds every architecture once. Reference nets (`references`, nn/plain.py: a
plain CNN, a gluoncv model) are trained by the same recipe and seeds, as units of their own, into
references.jsonl: what a searched architecture must beat. A unit is trained by train/retrain.py, the
retraining of train_subnet.py, with the same settings (the recipe, truthtable.recipe_of).

Sharing and reuse:
- several processes (devices, machines on a shared file system) run the same command on the same
  run folder: each claims a unit with an O_EXCL file (runs/claims.py) and skips units others hold;
  a claim whose process died is taken over, and its unit continues from its last epoch's checkpoint;
- a result is stored in the run folder (units/ARCH/seed-S/result.json) and in a cache shared by
  every table (CACHE/RECIPE_KEY/ARCH-seed-S.json); a (architecture, seed, recipe) result found in
  either, or in the folder's table, is never trained again;
- truth.jsonl is rewritten from the results after every unit (under a claim, atomically), and the
  noise floor (agreement.noise_floor) of the complete rows goes to noise_floor.json.
The first process writes args.json and settings.json (what a joining process must match); later
ones write args.resume-N.json.
"""
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import agreement
from ..cost.counting import cache_dir
from ..cost.latency import LatencyTable
from ..cost.limits import Limits
from ..cost.graph import profile_symbol
from ..cost.model import METRICS, CostModel, costs_of_counts
from ..data.sources import resolve_dataset
from ..errors import UserError
from ..nn.plain import reference_net
from ..runs.claims import Claims
from ..runs.fingerprint import check_same, fingerprint, free
from ..runs.rundir import RunDir
from ..runs.workers import Workers
from ..sample.stratified import describe, stratified_sample
from ..space import get_space, load_architecture
from .checkpoint import find_checkpoint
from .retrain import retrain
from .truthtable import (REFERENCES, TABLE, ReferenceRow, TruthRow, format_table, read_table, recipe_key,
                         recipe_of, write_table)

log = logging.getLogger(__name__)
OUTPUTS = (TABLE, REFERENCES, "noise_floor.json", "truth.log", "settings.json", "units", "claims")
TABLE_LOCK = "table"


@dataclass(frozen=True)
class TruthSettings:
    """What decides a table, but for the training recipe (train.settings.Settings, given beside it).
    Fields marked free may differ between the processes that share a table."""
    space: str = "tiny"                  # a preset
    num_classes: int = None
    archs: int = 60                      # K, drawn
    seeds: int = 3                       # S per architecture
    bins: int = None                     # equal-width cost bins (default min(K, 10))
    arch_seed: int = 0                   # the draw of the architectures
    stratify: str = "macs"               # the cost the bins divide
    include: tuple = ()                  # architecture files or strings always in the table
    references: tuple = ()               # reference nets trained beside them (nn/plain.reference_net names)
    limits: dict = field(default_factory=dict)      # {cost: (lo, hi)}
    baseline: str = "mobilenetv2-1.4"    # MicroNet score baseline and precision (for those budgets)
    bits: int = 32
    latency_table: str = None
    init: str = "msra"
    rec_train: str = free(None)          # the data: the recipe names it by content, not by path
    rec_train_idx: str = free(None)
    rec_val: str = free(None)
    rec_val_idx: str = free(None)
    data_dir: str = free(None)
    digits_view: str = free("default")   # (named by content, like the other data)
    kv_store: str = free("device")
    cache: str = free(None)              # None: $ONESHOT_NAS_CACHE/groundtruth; "": no shared cache
    claim_timeout: float = free(600.0)   # seconds without a heartbeat before another host's claim is stale
    save_dir: str = free(None)           # default logs/truth-SPACE
    progress: bool = free(None)

    def __post_init__(self):
        if self.archs < 2:
            raise UserError(f"{self.archs} architectures: a ranking needs at least 2", settings="archs")
        if self.seeds < 1:
            raise UserError(f"{self.seeds} seeds: train every architecture at least once",
                            settings="seeds")
        if self.bins is not None and not 1 <= self.bins <= self.archs:
            raise UserError(f"{self.bins} bins for {self.archs} architectures: use 1 to {self.archs}",
                            settings="bins")
        if self.stratify not in METRICS:
            raise UserError(f"cost {self.stratify!r} is unknown; choose one of {', '.join(METRICS)}",
                            settings="stratify")
        if self.kv_store.startswith("dist"):
            raise UserError("a table shares its work through claims, not a parameter server: start one "
                            "process per device or machine on the same run folder instead",
                            settings="kv_store")
        if not self.claim_timeout > 60:
            raise UserError(f"claim timeout {self.claim_timeout} s: give more than 60 s (claims are touched "
                            "every 30 s)", settings="claim_timeout")


class GroundTruthRun:
    """One table (the module docstring): prepare() checks, open() starts or joins it, execute() trains."""

    def __init__(self, settings, training, contexts=None):
        import mxnet as mx
        self.settings, self.training = settings, training
        self.contexts = list(contexts or [mx.cpu()])
        self.run = None

    # ----- before anything is written ----------------------------------------------------------------
    def prepare(self):
        import mxnet as mx
        s = self.settings
        space = get_space(s.space).with_classes(s.num_classes)
        latency = LatencyTable.load(s.latency_table, space) if s.latency_table else None
        self.costs = CostModel(space, latency=latency, reference=s.baseline, bits=s.bits)
        self.limits = Limits(self.costs, s.limits)
        self.costs.index(s.stratify)
        includes = []
        for item in s.include:
            arch = load_architecture(item)
            try:
                arch = arch.on(space)
            except UserError:
                raise UserError(f"the architecture {item} to include is of space {arch.space.name!r}, but the "
                                f"table is of space {space.name!r}") from None
            if arch not in includes:
                includes.append(arch)
            verdict = self.limits(arch.genes)
            if not verdict.ok:
                log.warning("%s is included although it breaks the budget (%s)", arch,
                            ", ".join(verdict.reasons))
        drawn = stratified_sample(self.limits, s.archs, s.bins or min(s.archs, 10),
                                  np.random.default_rng(s.arch_seed), s.stratify, exclude=includes)
        self.drawn = drawn
        self.plan = ([(a, b, False) for a, b in zip(drawn.archs, drawn.bins)]
                     + [(a, None, True) for a in includes])     # (architecture, bin, included)
        self.seeds = list(range(self.training.seed, self.training.seed + s.seeds))
        self.references = {}                                   # name -> its cost record
        size = space.input_size
        for name in dict.fromkeys(s.references):
            net = reference_net(name, space.num_classes)
            counts = profile_symbol(net(mx.sym.var("data")), {"data": (1, 3, size, size)}, source=name).counts
            self.references[name] = costs_of_counts(counts, s.baseline, s.bits)
        self.space = space
        self.dataset = resolve_dataset(rec_train=s.rec_train, rec_train_idx=s.rec_train_idx, rec_val=s.rec_val,
                                       rec_val_idx=s.rec_val_idx, data_dir=s.data_dir, digits_view=s.digits_view,
                                       num_classes=space.num_classes)
        self.recipe = recipe_of(self.training, s.init, len(self.contexts), self.dataset)
        self.key = recipe_key(self.recipe)
        self.identity = {"selection": {**fingerprint(s), "include": [str(a) for a in includes]},
                         "seeds": self.seeds, "recipe": self.recipe, "recipe_key": self.key}
        self.save_dir = Path(s.save_dir or f"logs/truth-{space.name}")
        if self.save_dir.exists() and not self.save_dir.is_dir():
            raise UserError(f"{self.save_dir} is a file, not a folder; choose another folder for the table")
        cache = cache_dir() / "groundtruth" if s.cache is None else (Path(s.cache) if s.cache else None)
        self.cache = cache / self.key if cache else None
        return self

    def open(self, overwrite=False, args=None):
        """Start the table in its folder, or join (continue) the one there after checking that it is the
        same table; `overwrite` starts again (while no other process works on it)."""
        from ..cli import setup_logging
        folder = self.save_dir
        if (folder / "args.json").is_file() and not (folder / "settings.json").is_file() and not overwrite:
            raise UserError(f"{folder} holds another kind of run (it has no settings.json); choose another "
                            "folder for the table, or overwrite it", settings="overwrite")
        if overwrite and folder.is_dir():
            for name in OUTPUTS + ("args.json",):
                target = folder / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            for old in folder.glob("args.resume-*.json"):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".settings.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.identity, indent=2, default=str) + "\n")
        try:
            os.link(tmp, folder / "settings.json")          # exactly one process starts a table
            founder = True
        except FileExistsError:
            founder = False
        finally:
            tmp.unlink()
        if not founder:
            check_same(json.loads((folder / "settings.json").read_text()), json.loads(json.dumps(self.identity)),
                       f"the table in {folder} (another table: use another folder)")
        self.run = RunDir(folder)
        self._write_args(args or asdict(self.settings), founder)
        setup_logging(self.run.file("truth.log"))
        log.info("%s the table in %s: %d architectures x %d seeds, recipe %s",
                 "starting" if founder else "joining", folder, len(self.plan), len(self.seeds), self.key)
        log.info("%s", describe(self.drawn))
        self.claims = Claims(folder / "claims", timeout=self.settings.claim_timeout)
        self.previous = self._table_results()
        return self

    def _write_args(self, args, founder):
        text = json.dumps({**args, "process": process_name()}, indent=2, sort_keys=True, default=str) + "\n"
        if founder:
            self.run.file("args.json").write_text(text)
            return
        n = 1
        while True:
            try:
                fd = os.open(self.run.file(f"args.resume-{n}.json"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                n += 1
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def _table_results(self):
        """{(arch, seed): result} in the folder's table as it stands (e.g. a table copied in without units)."""
        path = self.run.file(TABLE)
        if not path.is_file():
            return {}
        try:
            rows = read_table(path)
        except UserError as err:
            log.warning("the table in the folder is not read (%s); it is rewritten from the results", err)
            return {}
        return {(str(r.arch), seed): {"top1": t1, "top5": t5, "source": "table"}
                for r in rows if r.recipe_key == self.key for seed, t1, t5 in zip(r.seeds, r.top1, r.top5)}

    # ----- the units -----------------------------------------------------------------------------------
    def units(self):
        """(arch, seed) of every unit, seed by seed."""
        return [(arch, seed) for seed in self.seeds
                for arch in [a for a, _, _ in self.plan] + list(self.references)]

    def unit_dir(self, arch, seed):
        return self.run.file("units") / str(arch) / f"seed-{seed}"

    def _cache_file(self, arch, seed):
        return self.cache / f"{arch}-seed-{seed}.json" if self.cache else None

    def result(self, arch, seed):
        """The stored result of a unit in this folder, or None."""
        path = self.unit_dir(arch, seed) / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _reuse(self, arch, seed):
        """A result of this (architecture, seed, recipe) from the folder's table or the cache, or None."""
        found = self.previous.get((str(arch), seed))
        if found is None and self.cache is not None:
            path = self._cache_file(arch, seed)
            found = {**json.loads(path.read_text()), "source": "cache"} if path.is_file() else None
        return found

    def execute(self):
        """Work through the units this process can claim; returns a summary of what it did and found."""
        counts = {"trained": 0, "from_cache": 0, "from_table": 0, "done_before": 0, "held_by_others": 0}
        units = self.units()
        for i, (arch, seed) in enumerate(units, 1):
            if self.result(arch, seed) is not None:
                counts["done_before"] += 1
                continue
            claim = self.claims.acquire(f"{arch}-seed-{seed}")
            if claim is None:
                counts["held_by_others"] += 1
                continue
            with claim:
                if self.result(arch, seed) is not None:        # finished while we looked
                    counts["done_before"] += 1
                    continue
                result = self._reuse(arch, seed)
                if result is None:
                    log.info("unit %d/%d: training %s with seed %d", i, len(units), arch, seed)
                    result = self._train(arch, seed)
                else:
                    log.info("unit %d/%d: %s seed %d found in the %s", i, len(units), arch, seed,
                             result["source"])
                counts["trained" if result["source"] == "trained" else f"from_{result['source']}"] += 1
                self._store(arch, seed, result)
                self._write_table()
        return self._finish(*self._write_table(), counts)

    def _train(self, arch, seed):
        folder = self.unit_dir(arch, seed)
        resume = find_checkpoint(folder) is not None
        if resume:
            log.info("continuing from the checkpoint of %s (its process stopped)", folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / "unit.json").write_text(json.dumps({"arch": str(arch), "seed": seed, "recipe_key": self.key,
                                                          "process": process_name()}) + "\n")
        started = time.time()
        workers = Workers(self.settings.kv_store, len(self.contexts))      # a kvstore knows one network
        model = reference_net(arch, self.space.num_classes) if arch in self.references else arch
        _, history, final = retrain(model, self.dataset, replace(self.training, seed=seed), self.contexts,
                                    workers, init=self.settings.init, run=RunDir(folder), save_dir=folder,
                                    resume=resume, progress=self.settings.progress,
                                    input_size=self.space.input_size)
        for name in ("checkpoint", "checkpoint.old", "checkpoint.tmp"):
            shutil.rmtree(folder / name, ignore_errors=True)
        return {"top1": final["top1"], "top5": final["top5"], "epochs": len(history),
                "seconds": round(time.time() - started, 2), "source": "trained"}

    def _store(self, arch, seed, result):
        record = {"arch": str(arch), "seed": seed, "recipe_key": self.key, "top1": float(result["top1"]),
                  "top5": float(result["top5"]), "epochs": result.get("epochs"),
                  "seconds": result.get("seconds"), "source": result["source"], "process": process_name(),
                  "time": round(time.time(), 3)}
        targets = [self.unit_dir(arch, seed) / "result.json"]
        if self.cache is not None and result["source"] != "cache":
            self.cache.mkdir(parents=True, exist_ok=True)
            recipe = self.cache / "recipe.json"
            if not recipe.is_file():
                _write_atomic(recipe, json.dumps(self.recipe, indent=2))
            targets.append(self._cache_file(arch, seed))
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, json.dumps(record))

    def rows(self):
        """The table the stored results make: a TruthRow per planned architecture with a result."""
        rows = []
        for arch, bin_, included in self.plan:
            results = [(seed, self.result(arch, seed)) for seed in self.seeds]
            results = [(seed, r) for seed, r in results if r is not None]
            if not results:
                continue
            costs = self.costs.measure(arch)
            rows.append(TruthRow(arch, costs["macs"], costs["params"], tuple(s for s, _ in results),
                                 tuple(r["top1"] for _, r in results), tuple(r["top5"] for _, r in results),
                                 self.key, self.recipe, bin_, included))
        return rows

    def reference_rows(self):
        """A ReferenceRow per reference net with a result."""
        rows = []
        for name, costs in self.references.items():
            results = [(seed, self.result(name, seed)) for seed in self.seeds]
            results = [(seed, r) for seed, r in results if r is not None]
            if results:
                rows.append(ReferenceRow(name, costs["macs"], costs["params"], tuple(s for s, _ in results),
                                         tuple(r["top1"] for _, r in results), tuple(r["top5"] for _, r in results),
                                         self.key))
        return rows

    def _write_table(self):
        """Rewrite the table, its reference nets and its noise floor from the stored results (one
        process at a time); returns (rows, noise floor or None)."""
        with self.claims.wait(TABLE_LOCK):
            rows = self.rows()
            references = self.reference_rows()
            if references:
                write_table(self.run.file(REFERENCES), references)
            complete = [r.top1 for r in rows if len(r.seeds) == len(self.seeds)]
            noise = agreement.noise_floor(complete, np.random.default_rng(0)) if len(complete) >= 2 else None
            if rows:
                write_table(self.run.file(TABLE), rows)
            if noise:
                _write_atomic(self.run.file("noise_floor.json"), json.dumps(noise, indent=2))
        return rows, noise

    def _finish(self, rows, noise, counts):
        units = (len(self.plan) + len(self.references)) * len(self.seeds)
        done = sum(len(r.seeds) for r in rows + self.reference_rows())
        log.info("this process: %d trained, %d from the cache, %d from the table, %d done before, %d held by "
                 "other processes; the table holds %d of %d units", counts["trained"], counts["from_cache"],
                 counts["from_table"], counts["done_before"], counts["held_by_others"], done, units)
        return {**counts, "units": units, "done": done, "complete": done == units,
                "table": str(self.run.file(TABLE)), "architectures": len(self.plan), "seeds": self.seeds,
                "recipe_key": self.key, "noise_floor": noise}

    def text(self, summary):
        """The table and its noise floor as text (what the command prints)."""
        lines = [format_table(self.rows(), self.reference_rows())]
        if not summary["complete"]:
            lines.append(f"{summary['done']} of {summary['units']} units done (the others are being trained by "
                         "other processes, or run the command again)")
        lines.append(noise_text(summary["noise_floor"]))
        return "\n".join(lines)


def noise_text(noise):
    """The noise floor in a few lines."""
    if noise is None:
        return "noise floor: needs at least 2 architectures with every seed"
    lines = [f"noise floor over {noise['architectures']} architectures x {noise['seeds']} seeds: "
             f"spread of the mean top-1 across architectures {100 * noise['spread']:.2f} points"]
    if noise["seed_std_mean"] is not None:
        lines.append(f"  seed std of top-1 per architecture: mean {100 * noise['seed_std_mean']:.2f}, median "
                     f"{100 * noise['seed_std_median']:.2f}, max {100 * noise['seed_std_max']:.2f} points")
    pair, boot = noise["tau_between_seeds"], noise["tau_resampled"]
    if pair:
        lines.append(f"  Kendall tau between two seeds' top-1: {pair['mean']:.3f} (min {pair['min']:.3f}, max "
                     f"{pair['max']:.3f}, {pair['pairs']} pairs)")
    if boot:
        lines.append(f"  Kendall tau of the mean top-1 vs its seed bootstrap: {boot['mean']:.3f} "
                     f"[{boot['lo']:.3f}, {boot['hi']:.3f}] (about the most a perfect score can reach against "
                     "this table)")
    if noise["seeds"] < 2:
        lines.append("  one seed per architecture: the seed noise cannot be measured")
    return "\n".join(lines)


def process_name():
    """host:pid of this process (who trained a unit, who joined a table)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _write_atomic(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
