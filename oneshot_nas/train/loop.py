"""The training loop, for a weight-sharing supernet (one sampled path per step) or a fixed subnet.

What is trained is a *task*: `SupernetTask` draws one path per step from a seeded numpy Generator
that every device and every worker replays identically, so all gradients of a step belong to the
same path; `SubnetTask` trains a fixed, hybridized network. The loop itself (`fit`) is the same for
both: data, learning-rate schedule, gradient exchange, validation, records and exact resume.

Stale gradients: a supernet step computes gradients only for its path. The Trainer is told to skip
parameters without a fresh gradient (`ignore_stale_grad`), so candidates a step did not use are not
moved by momentum or weight decay either, and only the path's gradients are exchanged (devices.Sync).
"""
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import mxnet as mx
import numpy as np
from mxnet import autograd

from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from ..cost.counting import LookupTable
from ..data.sources import train_iter, val_iter
from ..errors import UserError
from ..nn.inherit import inherit_from_path
from ..sample.training import fixed_paths
from ..sample.schedule import LRSchedule, allowed_scales
from ..nn.supernet import SuperNet
from .validation import evaluate, summarise

log = logging.getLogger(__name__)
OPTIMIZERS = ("nag", "sgd")
INITIALIZERS = {
    "msra": lambda: mx.init.MSRAPrelu(),
    "xavier": lambda: mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
    "uniform": lambda: mx.init.Uniform(0.07),
}


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the optimisation (the entry points map their flags onto these)."""
    num_epochs: int = 10
    batch_size: int = 64            # per device
    lr: float = 0.1
    lr_mode: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    target_lr: float = 0.0
    lr_decay: float = 0.1
    lr_decay_epochs: tuple = ()
    optimizer: str = "nag"
    momentum: float = 0.9
    wd: float = 4e-5
    no_wd: bool = False
    label_smoothing: float = 0.0
    dtype: str = "float32"
    seed: int = 0
    threads: int = 2                # decode threads; the data order is deterministic for a fixed value
    val_images: int = 0             # 0: the whole validation set
    operational: tuple = field(default=("threads", "val_images", "num_epochs"), repr=False)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer {self.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
        if self.dtype not in ("float32", "float16"):
            raise UserError(f"--dtype {self.dtype!r}: use float32 or float16")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label-smoothing {self.label_smoothing} must be in [0, 1)")
        if self.batch_size < 1 or self.num_epochs < 1:
            raise UserError("--batch-size and --num-epochs must be at least 1")

    def fingerprint(self):
        """The settings a resumed run must share with the run it continues."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if k not in self.operational and k != "operational"}


# ----- building blocks ---------------------------------------------------------------------------
def initialize(net, contexts, init="msra", seed=0):
    """Initialise `net` on `contexts` from a seeded MXNet RNG (every worker gets the same weights;
    `Sync.register` then copies worker 0's anyway)."""
    if init not in INITIALIZERS:
        raise UserError(f"--init {init!r} is unknown; choose one of {', '.join(INITIALIZERS)}")
    mx.random.seed(seed)
    net.initialize(INITIALIZERS[init](), ctx=contexts)


def ordered_params(net):
    """Every parameter of `net` in a fixed order (by structural name, the same on every worker)."""
    named = net._collect_params_with_prefix()
    return [named[name] for name in sorted(named)]


def make_trainer(params, settings):
    """A Gluon Trainer that only applies the optimizer on each device (see devices.Sync)."""
    if settings.no_wd:   # no weight decay on BatchNorm's gamma/beta nor on biases
        for p in params:
            if p.name.endswith(("gamma", "beta", "bias")):
                p.wd_mult = 0.0
    opt = {"learning_rate": settings.lr, "momentum": settings.momentum, "wd": settings.wd,
           "multi_precision": settings.dtype == "float16"}
    return mx.gluon.Trainer(params, settings.optimizer, opt, kvstore=None)


def smoothed_cross_entropy(logits, labels, smoothing=0.0):
    """Per-example cross-entropy against labels smoothed as (1 - s) * one_hot + s / num_classes."""
    logp = mx.nd.log_softmax(logits.astype("float32"), axis=1)
    nll = -mx.nd.pick(logp, labels, axis=1)
    if smoothing:
        return (1 - smoothing) * nll - smoothing * logp.mean(axis=1)
    return nll


def steps_per_epoch(num_records, per_worker_batch, num_workers):
    """Steps every worker can take on its shard (MXNet's indexed RecordIO split gives each part
    ceil(N / parts) records, the last part the rest); a worker never waits for another."""
    part = math.ceil(num_records / num_workers)
    smallest = min(min(part * (r + 1), num_records) - min(part * r, num_records) for r in range(num_workers))
    if smallest < 1:
        raise UserError(f"{num_records} training images cannot be shared by {num_workers} workers")
    return math.ceil(smallest / per_worker_batch)


def epoch_seed(seed, epoch, rank):
    """MXNet's RNG (dropout) is reseeded per epoch so a resumed run replays the same masks."""
    return (seed * 10007 + epoch * 101 + rank) % (2 ** 31)


# ----- what is trained -----------------------------------------------------------------------------
class SupernetTask:
    """A supernet trained on one sampled path per step and validated on a few paths, each with its
    own recalibrated BatchNorm statistics (and on `reference` if given).

    With `inherit_epochs` > 0, the first epochs train the path `inherit_path` alone; at the start
    of epoch `inherit_epochs` it is copied into every other candidate (oneshot_nas.nn.inherit) and
    uniform sampling takes over (without it, small supernets sit at chance for thousands of steps).
    """
    kind = "supernet"

    def __init__(self, net, sampler, plan, calibration, val_paths=5, reference=None, seed=0,
                 inherit_epochs=0, inherit_path=None):
        if len(calibration) == 0:
            raise UserError("--calib-images must be at least 1: paths are validated after BN recalibration")
        if inherit_epochs and inherit_path is None:
            raise ValueError("inherit_epochs needs the path to train first")
        self.net, self.sampler, self.plan = net, sampler, plan
        self.calibration, self.val_paths, self.reference, self.seed = calibration, val_paths, reference, seed
        self.inherit_epochs, self.inherit_path = inherit_epochs, inherit_path
        self.space = net.space
        self.constrained = False
        self.fixed = False
        fixed = [self._trainable(net.stem), self._trainable(net.head)]
        self._fixed = [p for ps in fixed for p in ps]
        self._candidates = [[self._trainable(b) for b in row] for row in net.candidates]

    @staticmethod
    def _trainable(block):
        return [p for p in block.collect_params().values() if p.grad_req != "null"]

    def start_epoch(self, epoch):
        self.constrained = self.sampler.start_epoch(self.plan[epoch])
        self.fixed = epoch < self.inherit_epochs
        self.drawn = []
        if self.inherit_epochs and epoch == self.inherit_epochs:   # also right after a resume
            inherit_from_path(self.net, self.inherit_path)
        stage = {"scales": allowed_scales(self.space, self.plan[epoch]), "constrained": self.constrained}
        if self.fixed:
            stage = {"path": str(self.inherit_path), "scales": sorted(set(self.inherit_path.scales)),
                     "constrained": False}
        return stage

    def draw(self, rng):
        arch = self.inherit_path if self.fixed else self.sampler(rng)
        self.drawn.append(arch)
        return arch

    def paths_record(self, epoch):
        """What the epoch trained: MACs and params of every drawn path, and how often each block
        and channel id was drawn at each position (paths.jsonl; the report plots it)."""
        if not self.drawn:
            return None
        table = LookupTable.load(self.space)
        blocks = np.array([a.blocks for a in self.drawn])
        channels = np.array([a.channels for a in self.drawn])
        counts = table.count_many(blocks, channels)
        def histogram(ids, n):
            return [np.bincount(column, minlength=n).tolist() for column in ids.T]
        return {"epoch": epoch, "macs": counts[:, table.field("macs")].tolist(),
                "params": counts[:, table.field("paper_params")].tolist(),
                "block_counts": histogram(blocks, self.space.num_blocks),
                "channel_counts": histogram(channels, self.space.num_scales)}

    def forward(self, x, arch):
        return self.net(x, arch)

    def touched(self, arch):
        """The trainable parameters a step on `arch` gives gradients to."""
        return self._fixed + [p for row, b in zip(self._candidates, arch.blocks) for p in row[b]]

    def validate(self, epoch, val_batches, contexts, sync, max_images):
        paths = fixed_paths(self.sampler, self.val_paths, self.seed, self.plan[epoch])
        results = [evaluate(self.net, val_batches, contexts, sync, arch=a, calibration=self.calibration,
                            max_images=max_images) for a in paths]
        record = summarise(results) if results else {}
        record["val_images"] = results[0]["images"] if results else 0
        record["val_paths"] = {str(a): round(r["top1"], 4) for a, r in zip(paths, results)}
        if self.reference is not None:
            ref = evaluate(self.net, val_batches, contexts, sync, arch=self.reference,
                           calibration=self.calibration, max_images=max_images)
            record.update(ref_top1=ref["top1"], ref_top5=ref["top5"])
        return record

    def describe(self):
        return {"kind": self.kind, "space": self.space.to_dict(), "plan": [list(ids) for ids in self.plan],
                "inherit": [self.inherit_epochs, str(self.inherit_path) if self.inherit_epochs else None],
                "budget": [[k, list(v)] for k, v in self.sampler.budget.ranges] if self.sampler.budget else [],
                "sampler": self.sampler.kind}

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)


class SubnetTask:
    """A fixed architecture (a SubNet, hybridized by the caller): every step trains all of it."""
    kind = "subnet"

    def __init__(self, net):
        self.net = net
        self._trainable = [p for p in ordered_params(net) if p.grad_req != "null"]

    def start_epoch(self, epoch):
        return {}

    def draw(self, rng):
        return None

    def paths_record(self, epoch):
        return None

    def forward(self, x, arch=None):
        return self.net(x)

    def touched(self, arch=None):
        return self._trainable

    def validate(self, epoch, val_batches, contexts, sync, max_images):
        res = evaluate(self.net, val_batches, contexts, sync, max_images=max_images)
        return {"val_top1": res["top1"], "val_top5": res["top5"], "val_images": res["images"]}

    def describe(self):
        return {"kind": self.kind, "arch": str(self.net.arch)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


# ----- the loop ------------------------------------------------------------------------------------
def train_step(task, trainer, batch, contexts, arch, sync, global_batch, smoothing, totals):
    """Forward/backward on every device, reduce the path's gradients, update; adds the loss sum
    and top-1 hits to `totals` (NDArrays, read once per epoch so the engine is never stalled)."""
    xs = mx.gluon.utils.split_and_load(batch.data[0], contexts, even_split=False)
    ys = mx.gluon.utils.split_and_load(batch.label[0], contexts, even_split=False)
    with autograd.record():
        outs = [task.forward(x, arch) for x in xs]
        losses = [smoothed_cross_entropy(o, y, smoothing) for o, y in zip(outs, ys)]
    autograd.backward(losses)
    sync.reduce_grads(task.touched(arch))
    trainer.update(global_batch, ignore_stale_grad=True)
    for i, (o, y, loss) in enumerate(zip(outs, ys, losses)):
        totals[i][0] += loss.sum()
        totals[i][1] += (o.argmax(axis=1) == y.astype(o.dtype)).astype("float32").sum()


def train_epoch(task, trainer, batches, steps, contexts, sync, rng, lr_at, update, smoothing=0.0, bar=None):
    """`steps` updates on batches from `batches` (an MXNet DataIter), one drawn path each; returns
    the update count after them and the per-device (loss sum, top-1 hits) NDArrays. Waits for the
    last update to finish, so the time around it is the time of the steps."""
    totals = [[mx.nd.zeros(1, ctx=c), mx.nd.zeros(1, ctx=c)] for c in contexts]
    images_per_step = batches.batch_size * sync.num_workers
    for i in range(steps):
        batch = _next(batches)
        lr = lr_at(update)
        trainer.set_learning_rate(lr)
        train_step(task, trainer, batch, contexts, task.draw(rng), sync, images_per_step, smoothing, totals)
        update += 1
        if bar is not None:
            bar.update(1)
            if i % 10 == 9 or i == steps - 1:
                seen = (i + 1) * batches.batch_size
                bar.set_postfix(loss=f"{sum(t[0].asscalar() for t in totals) / seen:.3f}", lr=f"{lr:.4g}")
    mx.nd.waitall()
    if bar is not None:
        bar.close()
    return update, totals


def fit(task, dataset, settings, contexts, sync, run=None, save_dir=None, resume=False,
        stop_after=None, input_size=None, progress=None):
    """Train `task` for `settings.num_epochs` epochs; returns the per-epoch records.

    `run` (a runlog.RunDir, chief only) receives metrics.jsonl lines and checkpoints; `save_dir` is
    where every worker finds the checkpoint to `resume` from. `stop_after` ends this session after
    that epoch (a time-limited job; `resume` continues it exactly). `progress` forces the tqdm bar
    on or off (default: on when stderr is a terminal).
    """
    net = task.net
    input_size = input_size or _input_size(net)
    params = ordered_params(net)
    trainer = make_trainer(params, settings)
    per_worker = settings.batch_size * len(contexts)
    steps = steps_per_epoch(len(dataset.train), per_worker, sync.num_workers)
    lr_at = LRSchedule(settings.lr, steps, settings.num_epochs, settings.lr_mode, settings.warmup_epochs,
                       settings.warmup_lr, settings.target_lr, tuple(settings.lr_decay_epochs),
                       settings.lr_decay)
    rng = np.random.default_rng(settings.seed)
    fingerprint = {"settings": settings.fingerprint(), "task": task.describe(),
                   "devices": len(contexts), "workers": sync.num_workers}
    start_epoch, update, history = 0, 0, []
    if resume:
        start_epoch, update, history = _resume(save_dir, task, trainer, contexts, rng, fingerprint, settings)
    sync.register(params, contexts)
    if run is not None and resume:
        for name in ("metrics.jsonl", "paths.jsonl"):
            _truncate_record(run, start_epoch, name)
    running_stats = [p for p in params if p.grad_req == "null"]
    def val_batches():
        # a fresh reader each time: ImageRecordIter.reset() after a padded last batch starts the next
        # pass inside the wrap-around, so a reset reader skips images and miscounts `pad`
        return val_iter(dataset, per_worker, input_size, settings.threads, num_parts=sync.num_workers,
                        part_index=sync.rank, dtype=settings.dtype)

    images = per_worker * sync.num_workers * steps
    log.info("%s: %d epochs of %d steps, %d images per step on %d device(s) x %d worker(s), lr %s %s",
             task.kind, settings.num_epochs, steps, per_worker * sync.num_workers, len(contexts),
             sync.num_workers, settings.lr, settings.lr_mode)
    last = settings.num_epochs if stop_after is None else min(settings.num_epochs, stop_after + 1)
    for epoch in range(start_epoch, last):
        stage = task.start_epoch(epoch)
        mx.random.seed(epoch_seed(settings.seed, epoch, sync.rank))
        batches = train_iter(dataset, per_worker, input_size, settings.threads, seed=settings.seed + epoch,
                             num_parts=sync.num_workers, part_index=sync.rank, dtype=settings.dtype)
        bar = _bar(steps, epoch, sync.is_chief, progress)
        tic = time.perf_counter()
        update, totals = train_epoch(task, trainer, batches, steps, contexts, sync, rng, lr_at, update,
                                     settings.label_smoothing, bar)
        seconds = time.perf_counter() - tic
        del batches
        loss_sum, hits = sync.sum([sum(t[0].asscalar() for t in totals), sum(t[1].asscalar() for t in totals)])
        sync.average_data(running_stats)
        tic = time.perf_counter()
        val = task.validate(epoch, val_batches, contexts, sync, settings.val_images)
        record = {"epoch": epoch, "loss": loss_sum / images, "train_top1": hits / images, **val,
                  "lr": lr_at(update - 1), **stage, "images_per_sec": images / seconds,
                  "seconds": seconds, "val_seconds": time.perf_counter() - tic, "updates": update}
        history.append(record)
        if run is not None:
            save_checkpoint(run.path, net, trainer, {
                "epoch": epoch, "update": update, "num_epochs": settings.num_epochs,
                "rng": rng.bit_generator.state, "task": task.state_dict(), "fingerprint": fingerprint,
                "history": history})
            run.append(record)
            paths = task.paths_record(epoch)
            if paths:
                run.append(paths, "paths.jsonl")
        log.info("epoch %d: %s", epoch, _summary(record))
    return history


def _resume(save_dir, task, trainer, contexts, rng, fingerprint, settings):
    folder = find_checkpoint(save_dir) if save_dir else None
    if folder is None:
        raise UserError(f"--resume: {save_dir} has no checkpoint yet (the run stopped before its first "
                        "epoch ended); start it again with --overwrite")
    state = load_checkpoint(folder, task.net, trainer, contexts)
    old = state["fingerprint"]
    changed = _differences(old, fingerprint)
    if changed:
        raise UserError("--resume: this run was started with different settings, so it would not "
                        f"continue the same way: {'; '.join(changed)}. Resume with the original flags "
                        "(see args.json in the run folder) or start again with --overwrite")
    if state.get("num_epochs", settings.num_epochs) != settings.num_epochs:
        log.warning("--num-epochs changed from %s to %s: the learning-rate schedule changes from here",
                    state["num_epochs"], settings.num_epochs)
    rng.bit_generator.state = state["rng"]
    task.load_state_dict(state["task"])
    log.info("resuming after epoch %d (update %d) from %s", state["epoch"], state["update"], folder)
    return state["epoch"] + 1, state["update"], state["history"]


def _differences(old, new, prefix=""):
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b and key != "num_epochs":
            show = (lambda v: (str(v)[:60] + "...") if len(str(v)) > 60 else str(v))
            out.append(f"{prefix}{key} was {show(a)}, now {show(b)}")
    return out


def _truncate_record(run, start_epoch, name):
    """Drop lines of epochs the checkpoint does not include (a crash after logging them)."""
    rows = [r for r in run.read(name) if r.get("epoch", -1) < start_epoch]
    path = run.file(name)
    if path.exists():
        path.write_text("")
    for r in rows:
        run.append(r, name)


def _next(batches):
    try:
        return batches.next()
    except StopIteration:   # cannot happen with steps_per_epoch; a short shard restarts rather than hang
        batches.reset()
        return batches.next()


def _bar(steps, epoch, chief, progress):
    show = chief and (sys.stderr.isatty() if progress is None else progress)
    if not show:
        return None
    from tqdm import tqdm
    return tqdm(total=steps, desc=f"epoch {epoch}", leave=False, file=sys.stderr)


def _input_size(net):
    space = net.space if isinstance(net, SuperNet) else net.arch.space
    return space.input_size


def _summary(record):
    keys = ("loss", "train_top1", "val_top1_mean", "val_top1_min", "val_top1_max", "val_top5_mean",
            "ref_top1", "val_top1", "val_top5", "lr", "images_per_sec", "seconds")
    parts = [f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), float)]
    if "scales" in record:
        parts.append(f"scales={record['scales'][0]}-{record['scales'][-1]}")
    return " ".join(parts)
