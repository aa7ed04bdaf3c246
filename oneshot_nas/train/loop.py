"""The training loop, for a weight-sharing supernet (one sampled path per step) or a fixed subnet.

What is trained is a *task* (tasks.py); the loop itself (`fit`) is the same for both kinds: data,
learning-rate schedule, gradient exchange, validation, records and exact resume.

Stale gradients: a supernet step computes gradients only for its path. The Trainer is told to skip
parameters without a fresh gradient (`ignore_stale_grad`), so candidates a step did not use are not
moved by momentum or weight decay either, and only the path's gradients are exchanged (runs.workers).
"""
import logging
import math
import re
import resource
import sys
import time
from functools import partial
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..data.iterators import TrainStream, next_batch
from ..errors import UserError
from ..nn.supernet import SuperNet
from ..runs.fingerprint import check_same, fingerprint as fingerprint_of
from ..runs.modelfile import save_model
from .lr import lr_schedule
from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from .settings import make_trainer, ordered_params
from .validation import val_source

log = logging.getLogger(__name__)
# the files a training run writes in its folder (starting again in it removes them first)
OUTPUTS = ("metrics.jsonl", "paths.jsonl", "train.log", "curves.png", "checkpoint", "checkpoint.old",
           "checkpoint.tmp")


def smoothed_cross_entropy(logits, labels, smoothing=0.0):
    """Per-example cross-entropy (MXNet's loss) against labels smoothed as
    (1 - s) * one_hot + s / num_classes; float32 whatever the network's precision."""
    logits = logits.astype("float32")
    if not smoothing:
        return _SPARSE_CE(logits, labels)
    classes = logits.shape[1]
    target = mx.nd.one_hot(labels, classes, on_value=1 - smoothing + smoothing / classes,
                           off_value=smoothing / classes)
    return _DENSE_CE(logits, target)


_SPARSE_CE = mx.gluon.loss.SoftmaxCrossEntropyLoss()
_DENSE_CE = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)


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


# ----- the loop ------------------------------------------------------------------------------------
def train_step(task, trainer, batch, contexts, arch, workers, global_batch, smoothing, totals):
    """Forward/backward on every device, reduce the path's gradients, update; adds the loss sum
    and top-1 hits to `totals` (NDArrays, read once per epoch so the engine is never stalled)."""
    xs = mx.gluon.utils.split_and_load(batch.data[0], contexts, even_split=False)
    ys = mx.gluon.utils.split_and_load(batch.label[0], contexts, even_split=False)
    cross_entropy = partial(smoothed_cross_entropy, smoothing=smoothing)
    task.before_step(arch)
    with autograd.record():
        outs, losses = zip(*[task.objective(x, y, arch, cross_entropy) for x, y in zip(xs, ys)])
    autograd.backward(list(losses))
    touched = task.touched(arch)
    workers.reduce_grads(touched)
    trainer.update(global_batch, ignore_stale_grad=True)
    task.after_update(arch, touched, workers)
    for i, (o, y, loss) in enumerate(zip(outs, ys, losses)):
        totals[i][0] += loss.sum()
        totals[i][1] += (o.argmax(axis=1) == y.astype(o.dtype)).astype("float32").sum()


class Progress:
    """How an epoch shows its progress: a tqdm bar on a terminal; elsewhere (nohup, a cluster job)
    a log line every `interval` steps with the loss, images/s and the time left in the epoch."""

    def __init__(self, epoch, steps, batch_size, show_bar, interval, stop_on_nan=True):
        self.epoch, self.steps, self.batch_size, self.interval = epoch, steps, batch_size, interval
        self.stop_on_nan = stop_on_nan       # alone, stop at once; several workers stop together at the epoch's end
        self.bar = None
        if show_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, file=sys.stderr)
        self.start = time.perf_counter()

    def step(self, i, totals, lr):
        """After step i (0-based); reads the running loss (a sync) only when it shows it."""
        done = i + 1
        if self.bar is not None:
            self.bar.update(1)
            if done % 10 == 0 or done == self.steps:
                self.bar.set_postfix(loss=f"{_loss(totals, done * self.batch_size):.3f}", lr=f"{lr:.4g}")
        elif self.interval and done % self.interval == 0 and done < self.steps:
            loss = _loss(totals, done * self.batch_size)
            if self.stop_on_nan:
                _check_finite(loss, self.epoch, lr)
            elapsed = time.perf_counter() - self.start
            log.info("epoch %d step %d/%d: loss %.4f, lr %.4g, %.1f images/s, %s left in the epoch",
                     self.epoch, done, self.steps, loss, lr, done * self.batch_size / elapsed,
                     _duration(elapsed / done * (self.steps - done)))

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _loss(totals, images):
    return sum(t[0].asscalar() for t in totals) / max(images, 1)


def _duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def _check_finite(loss, epoch, lr):
    if not math.isfinite(loss):
        raise UserError(f"the training loss became {loss} in epoch {epoch} (learning rate {lr:.4g}): "
                        "training stopped, and the last checkpoint (the end of the previous epoch) is "
                        "kept; resume with a lower learning rate", settings=("lr",))


def train_epoch(task, trainer, batches, steps, contexts, workers, rng, lr_at, update, smoothing=0.0,
                progress=None):
    """`steps` updates on batches from `batches` (an MXNet DataIter), one drawn path each; returns
    the update count after them and the per-device (loss sum, top-1 hits) NDArrays. Waits for the
    last update to finish, so the time around it is the time of the steps."""
    totals = [[mx.nd.zeros(1, ctx=c), mx.nd.zeros(1, ctx=c)] for c in contexts]
    images_per_step = batches.batch_size * workers.num_workers
    for i in range(steps):
        batch = next_batch(batches)
        lr = lr_at(update)
        trainer.set_learning_rate(lr)
        train_step(task, trainer, batch, contexts, task.draw(rng), workers, images_per_step, smoothing, totals)
        update += 1
        if progress is not None:
            progress.step(i, totals, lr)
    mx.nd.waitall()
    if progress is not None:
        progress.close()
    return update, totals


VALIDATION_SHARE = 0.25       # --val-every auto: validation at most this share of the time


class ValidationSchedule:
    """Which epochs validate: every `every`-th and the last of a session, or with every="auto" as
    often as keeps validation within VALIDATION_SHARE of the time. "auto" validates the first
    epoch of a session (which measures what a validation costs), then an epoch whenever the
    training since the last validation took at least (1 - share) / share times as long as that
    validation, and the last epoch always. Only how often changes: what a validation computes
    does not depend on when it runs. Every worker takes the same decision (any worker's clock
    that says "due" decides)."""

    def __init__(self, every, last, workers):
        self.every, self.last, self.workers = every, last, workers
        self.trained = 0.0          # seconds of training since the last validation
        self.cost = None            # seconds the last validation took

    def due(self, epoch, train_seconds):
        self.trained += train_seconds
        if epoch == self.last - 1:
            return True
        if self.every != "auto":
            return (epoch + 1) % self.every == 0
        mine = self.cost is None or self.trained * VALIDATION_SHARE >= self.cost * (1 - VALIDATION_SHARE)
        return bool(self.workers.sum([float(mine)])[0] > 0)

    def validated(self, seconds):
        self.trained, self.cost = 0.0, seconds


def fit(task, dataset, settings, contexts, workers, run=None, save_dir=None, resume=False,
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
    steps = steps_per_epoch(len(dataset.train), per_worker, workers.num_workers)
    lr_at = lr_schedule(settings.lr, steps, settings.num_epochs, settings.lr_mode, settings.warmup_epochs,
                        settings.warmup_lr, settings.target_lr, tuple(settings.lr_decay_epochs),
                        settings.lr_decay)
    rng = np.random.default_rng(settings.seed)
    fingerprint = {"settings": fingerprint_of(settings), "task": task.describe(),
                   "devices": len(contexts), "workers": workers.num_workers}
    start_epoch, update, history = 0, 0, []
    if resume:
        start_epoch, update, history = _resume(save_dir, task, trainer, contexts, rng, fingerprint, settings)
    workers.register(params, contexts)
    if run is not None and resume:
        for name in ("metrics.jsonl", "paths.jsonl"):
            _truncate_record(run, start_epoch, name)
        _truncate_log(run, start_epoch)
    running_stats = [p for p in params if p.grad_req == "null"]
    val_batches = val_source(dataset, per_worker, input_size, settings.threads, workers, settings.dtype)

    stream = TrainStream(dataset, per_worker, input_size, settings.threads, seed=settings.seed,
                         num_parts=workers.num_workers, part_index=workers.rank, dtype=settings.dtype, steps=steps)
    images = per_worker * workers.num_workers * steps
    log.info("%s: %d epochs of %d steps, %d images per step on %d device(s) x %d worker(s), lr %s %s",
             task.kind, settings.num_epochs, steps, per_worker * workers.num_workers, len(contexts),
             workers.num_workers, settings.lr, settings.lr_mode)
    last = settings.num_epochs if stop_after is None else min(settings.num_epochs, stop_after + 1)
    show_bar = workers.is_chief and (sys.stderr.isatty() if progress is None else progress)
    schedule = ValidationSchedule(settings.val_every, last, workers)
    for epoch in range(start_epoch, last):
        stage = task.start_epoch(epoch)
        mx.random.seed(epoch_seed(settings.seed, epoch, workers.rank))
        batches = stream.epoch(epoch)
        shown = Progress(epoch, steps, per_worker * workers.num_workers, show_bar,
                         settings.log_interval if workers.is_chief else 0, workers.num_workers == 1)
        tic = time.perf_counter()
        update, totals = train_epoch(task, trainer, batches, steps, contexts, workers, rng, lr_at, update,
                                     settings.label_smoothing, shown)
        seconds = time.perf_counter() - tic
        loss_sum, hits = workers.sum([sum(t[0].asscalar() for t in totals), sum(t[1].asscalar() for t in totals)])
        _check_finite(loss_sum / images, epoch, lr_at(update - 1))      # every worker sees the same sum
        workers.average_data(running_stats)
        task.end_epoch()
        tic = time.perf_counter()
        val = {}
        if schedule.due(epoch, seconds):
            val = task.validate(epoch, val_batches, contexts, workers, settings.val_images, per_worker)
            schedule.validated(time.perf_counter() - tic)
        record = {"epoch": epoch, "loss": loss_sum / images, "train_top1": hits / images, **val,
                  "lr": lr_at(update - 1), **stage, "images_per_sec": images / seconds,
                  "seconds": seconds, "val_seconds": time.perf_counter() - tic, "updates": update,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        history.append(record)
        if run is not None:
            # the records first, then the checkpoint: a kill in between leaves lines of an epoch the
            # checkpoint lacks, which a resume drops before it trains that epoch again
            run.append(record)
            paths = task.paths_record(epoch)
            if paths:
                run.append(paths, "paths.jsonl")
        log.info("epoch %d: %s", epoch, _summary(record))
        if run is not None:
            save_checkpoint(run.path, net, trainer, {
                "epoch": epoch, "update": update, "num_epochs": settings.num_epochs,
                "rng": rng.bit_generator.state, "task": task.state_dict(), "fingerprint": fingerprint,
                "history": history}, files=task.checkpoint_files())
            if settings.save_frequency and (epoch + 1) % settings.save_frequency == 0:
                save_model(net, run.file(f"epoch-{epoch:04d}.params"), {"epoch": epoch})
    return history


def _resume(save_dir, task, trainer, contexts, rng, fingerprint, settings):
    folder = find_checkpoint(save_dir) if save_dir else None
    if folder is None:
        raise UserError(f"cannot resume: {save_dir} has no checkpoint yet (the run stopped before its "
                        "first epoch ended); start it again")
    state = load_checkpoint(folder, task.net, trainer, contexts)
    check_same(state["fingerprint"], fingerprint, f"the run in {save_dir}")
    task.load_checkpoint_files(folder, contexts)
    if state.get("num_epochs", settings.num_epochs) != settings.num_epochs:
        log.warning("the number of epochs changed from %s to %s: the learning-rate schedule changes "
                    "from here", state["num_epochs"], settings.num_epochs)
    rng.bit_generator.state = state["rng"]
    task.load_state_dict(state["task"])
    log.info("resuming after epoch %d (update %d) from %s", state["epoch"], state["update"], folder)
    return state["epoch"] + 1, state["update"], state["history"]


def _truncate_record(run, start_epoch, name):
    """Drop lines of epochs the checkpoint does not include (a crash after logging them)."""
    rows = [r for r in run.read(name) if r.get("epoch", -1) < start_epoch]
    path = run.file(name)
    if path.exists():
        path.write_text("")
    for r in rows:
        run.append(r, name)


EPOCH_LINE = re.compile(r" epoch (\d+): ")


def _truncate_log(run, start_epoch):
    """Drop the 'epoch N:' lines of the epochs about to be trained again from the run's log (the
    rest of what a stopped session logged stays)."""
    path = getattr(run, "log_file", None)
    if path is None or not Path(path).is_file():
        return
    lines = Path(path).read_text().splitlines(keepends=True)
    kept = [line for line in lines if not ((m := EPOCH_LINE.search(line)) and int(m.group(1)) >= start_epoch)]
    if len(kept) != len(lines):
        with open(path, "r+") as f:        # in place: the log handler appends to this very file
            f.write("".join(kept))
            f.truncate()


def _input_size(net):
    if isinstance(net, SuperNet):
        return net.space.input_size
    if hasattr(net, "arch"):
        return net.arch.space.input_size
    raise ValueError(f"{net.name} has no search space: pass fit the input size")


def _summary(record):
    keys = ("loss", "train_top1", "val_top1_mean", "val_top1_min", "val_top1_max", "val_top5_mean",
            "ref_top1", "val_top1", "val_top5", "lr", "images_per_sec", "seconds")
    parts = [f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), float)]
    if "scales" in record:
        parts.append(f"scales={record['scales'][0]}-{record['scales'][-1]}")
    return " ".join(parts)


def dump_worker_params(net, folder, rank, files=None):
    """Write this worker's parameters to FOLDER/worker-RANK.params, and `files` (a task's
    checkpoint_files) to FOLDER/worker-RANK-NAME (to check workers stayed equal)."""
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        net.save_parameters(str(Path(folder) / f"worker-{rank}.params"))
        for name, save in (files or {}).items():
            save(Path(folder) / f"worker-{rank}-{name}")
