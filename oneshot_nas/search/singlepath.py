"""A Single-Path NAS search run: superkernel searches under CE + lambda * log(R), lambda found for a target.

Each search (one lambda) trains a fresh superkernel network (nn/superkernel.py) from the same seeded
initialisation for `settings.num_epochs` epochs with the loop every other training uses
(train/loop.fit: devices, workers, records, exact resume) in SAVE_DIR/lambda-<i>/, and its result is
the architecture the network computes at the end. search/tradeoff.find_lambda chooses the lambdas.
SAVE_DIR/search.jsonl holds one line per finished search; a resumed run replays them, resumes the
unfinished one from its checkpoint and goes on, so it ends where an uninterrupted run would.
"""
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cost.model import format_value
from ..errors import UserError
from ..nn.superkernel import Layout, SuperkernelNet
from ..runs.rundir import RunDir, read_jsonl
from ..train.checkpoint import find_checkpoint
from ..train.loop import dump_worker_params, fit
from ..train.settings import cast_for_training, initialize
from ..train.singlepath import RuntimeModel, SinglePathTask
from .tradeoff import find_lambda

log = logging.getLogger(__name__)
RESULTS = "search.jsonl"
OUTPUTS = (RESULTS, "train.log", "tradeoff.png")


@dataclass(frozen=True)
class SinglePathOptions:
    """The method's knobs (the training itself is a train.settings.Settings)."""
    metric: str                       # 'latency_ms' or 'macs': what the runtime model sums
    target: float                     # the cost the found network should meet
    lam: float = None                 # a fixed lambda: one search, no trade-off search
    start_lambda: float = 1.0
    factor: float = 4.0
    max_runs: int = 8
    tolerance: float = 0.05
    temperature: float = 1.0          # of the sigmoid relaxing each decision (log-RMS units)
    threshold_init: float = 0.5       # thresholds start at this fraction of the initial weights' RMS
    threshold_lr_mult: float = 10.0   # learning-rate multiplier of the thresholds
    warmup_epochs: int = 3            # epochs of weights alone at the largest network before each search
    form: str = "log"                 # the runtime loss: lambda log(R/target), or 'hinge': only above the target

    def check(self, runtime, epochs):
        if not self.target > 0:
            raise UserError(f"the target {self.target} must be a positive number (--target-latency-ms / --target-macs)")
        if self.lam is not None and not self.lam >= 0:
            raise UserError(f"--lambda {self.lam} must be >= 0")
        for flag, value, ok, rule in (
                ("--start-lambda", self.start_lambda, self.start_lambda > 0, "> 0"),
                ("--lambda-factor", self.factor, self.factor > 1, "> 1"),
                ("--max-searches", self.max_runs, self.max_runs >= 1, ">= 1"),
                ("--tolerance", self.tolerance, 0 <= self.tolerance < 1, "in [0, 1)"),
                ("--temperature", self.temperature, self.temperature > 0, "> 0"),
                ("--threshold-init", self.threshold_init, 0 < self.threshold_init < 1,
                 "in (0, 1), a fraction of the weights' RMS"),
                ("--threshold-lr-mult", self.threshold_lr_mult, self.threshold_lr_mult > 0, "> 0")):
            if not ok:
                raise UserError(f"{flag} {value} must be {rule}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= epochs:
            raise UserError(f"--search-warmup {self.warmup_epochs} must be within 0..--num-epochs - 1 "
                            f"({epochs - 1}): the search needs epochs after the warm-up")
        lo, hi = runtime.range()
        if self.target < lo:
            raise UserError(f"no network of the superkernel meets {_show(self.target, self.metric)}: the "
                            f"smallest (every position at its smallest SNB kernel and width) costs "
                            f"{_show(lo, self.metric)}; raise the target")
        return lo, hi


def _show(value, metric):
    """A cost in messages: the cost model's format, counts followed by their name (0.3M macs)."""
    return format_value(value, metric) + ("" if metric == "latency_ms" else f" {metric}")


class _Stopped(Exception):
    pass


def search(space, dataset, settings, contexts, workers, options, costs, save_dir, run=None, resume=False,
           init="msra", progress=None, stop_after=None, dump_dir=None):
    """Run the searches; returns {'best': record or None, 'history': [record per search], 'range',
    'stopped'}. `run` is the chief's RunDir of SAVE_DIR (None on other workers); `stop_after` ends
    this session once a search has trained that epoch (one resumed past it first finishes);
    --resume continues it. With `dump_dir`, every worker writes each search's final parameters to
    DUMP_DIR/lambda-<i>/worker-RANK.params (to check that workers stay equal)."""
    layout = Layout(space)
    runtime = RuntimeModel(costs, options.metric, layout)
    lo, hi = options.check(runtime, settings.num_epochs)
    save_dir = Path(save_dir)
    done = read_jsonl(save_dir / RESULTS) if resume else []
    records = []

    def cost_of(lam, index):
        if index < len(done):
            if abs(done[index]["lambda"] - lam) > 1e-12 * max(1.0, lam):
                raise UserError(f"cannot resume {save_dir}: its search {index} used lambda "
                                f"{done[index]['lambda']}, this run would use {lam} (the options changed); "
                                "start it again with --overwrite")
            records.append(done[index])
            return done[index]["cost"]
        record = one_search(space, dataset, settings, contexts, workers, options, runtime, lam,
                            save_dir / f"lambda-{index}", run is not None, resume, init, progress, stop_after)
        if record is None:
            raise _Stopped()
        net = record.pop("net")
        if dump_dir:
            dump_worker_params(net, Path(dump_dir) / f"lambda-{index}", workers.rank)
        record["index"] = index
        records.append(record)
        if run is not None:
            run.append(record, RESULTS)
        log.info("search %d: lambda %.4g -> %s, %s (target %s), val top-1 %.4f, %.1f s", index, lam,
                 record["arch"], _show(record["cost"], options.metric), _show(options.target, options.metric),
                 record["val_top1"], record["seconds"])
        return record["cost"]

    log.info("Single-Path NAS on %s: %s target %s; the superkernel's networks cost %s to %s", space.name,
             options.metric, _show(options.target, options.metric), _show(lo, options.metric),
             _show(hi, options.metric))
    try:
        if options.lam is not None:
            cost_of(options.lam, 0)
            best = records[0] if records[0]["cost"] <= options.target else None
        else:
            found, _ = find_lambda(cost_of, options.target, options.start_lambda, options.factor,
                                   options.max_runs, options.tolerance)
            best = next(r for r in records if r["lambda"] == found[0]) if found else None
    except _Stopped:
        log.info("stopped after epoch %d of search %d; continue with --resume", stop_after, len(records))
        return {"best": None, "history": records, "range": [lo, hi], "stopped": True}
    return {"best": best, "history": records, "range": [lo, hi], "stopped": False}


def one_search(space, dataset, settings, contexts, workers, options, runtime, lam, folder, chief, resume,
               init, progress, stop_after=None):
    """Train a superkernel network with `lam` in `folder`; its result record (None when the
    session stopped after epoch `stop_after`, before the search's end)."""
    net = SuperkernelNet(space, temperature=options.temperature)
    initialize(net, contexts, init, settings.seed)
    for name, param in net.collect_params().items():
        if name.endswith("thresholds"):
            param.lr_mult = options.threshold_lr_mult
    cast_for_training(net, settings.dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    task = SinglePathTask(net, runtime, lam, options.warmup_epochs, options.threshold_init, options.target,
                          options.form)
    checkpoint = find_checkpoint(folder) if resume else None
    again = checkpoint is not None
    if again and stop_after is not None and json.loads((checkpoint / "state.json").read_text())["epoch"] >= stop_after:
        stop_after = None        # this search is past that epoch: it finishes, the next one stops there
    sub = None
    if chief:
        sub = RunDir(folder)
        if not again and folder.exists():      # a search that stopped before its first checkpoint
            for name in ("metrics.jsonl", "paths.jsonl"):
                (folder / name).unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
    history = fit(task, dataset, settings, contexts, workers, run=sub, save_dir=folder, resume=again,
                  input_size=space.input_size, progress=progress, stop_after=stop_after)
    if not history or history[-1]["epoch"] != settings.num_epochs - 1:
        return None
    arch = net.architecture()
    last = history[-1]
    if chief:
        from .plots import plot_singlepath
        plot_singlepath(sub.read("paths.jsonl"), sub.read(), folder / "curves.png",
                        f"Single-Path NAS, lambda {lam:.4g}", options.target, options.metric)
    return {"lambda": lam, "arch": str(arch), "cost": runtime.of(arch), "metric": options.metric,
            "val_top1": last.get("val_top1"), "epochs": settings.num_epochs,
            # the search's cost: training and validation time of its epochs (those of earlier sessions too)
            "seconds": sum(r["seconds"] + r["val_seconds"] for r in history), "folder": str(folder),
            "options": asdict(options), "net": net}
