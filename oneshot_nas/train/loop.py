"""The training loop, for a weight-sharing supernet (one sampled path per step) or a fixed subnet.

What is trained is a *task* (tasks.py); the loop itself (`fit`) is the same for both kinds: data,
learning-rate schedule, gradient exchange, validation, records and exact resume.

Stale gradients: a supernet step computes gradients only for its path. The Trainer is told to skip
parameters without a fresh gradient (`ignore_stale_grad`), so candidates a step did not use are not
moved by momentum or weight decay either, and only the path's gradients are exchanged (runs.workers).
"""
import logging
import math
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..data.iterators import train_iter
from ..errors import UserError
from ..nn.supernet import SuperNet
from ..runs.fingerprint import check_same, fingerprint as fingerprint_of
from .lr import LRSchedule
from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from .settings import make_trainer, ordered_params
from .validation import val_source

log = logging.getLogger(__name__)
# the files a training run writes in its folder (starting again in it removes them first)
OUTPUTS = ("metrics.jsonl", "paths.jsonl", "train.log", "curves.png", "checkpoint", "checkpoint.old",
           "checkpoint.tmp")


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


# ----- the loop ------------------------------------------------------------------------------------
def train_step(task, trainer, batch, contexts, arch, workers, global_batch, smoothing, totals):
    """Forward/backward on every device, reduce the path's gradients, update; adds the loss sum
    and top-1 hits to `totals` (NDArrays, read once per epoch so the engine is never stalled)."""
    xs = mx.gluon.utils.split_and_load(batch.data[0], contexts, even_split=False)
    ys = mx.gluon.utils.split_and_load(batch.label[0], contexts, even_split=False)
    with autograd.record():
        outs = [task.forward(x, arch) for x in xs]
        losses = [smoothed_cross_entropy(o, y, smoothing) for o, y in zip(outs, ys)]
    autograd.backward(losses)
    workers.reduce_grads(task.touched(arch))
    trainer.update(global_batch, ignore_stale_grad=True)
    for i, (o, y, loss) in enumerate(zip(outs, ys, losses)):
        totals[i][0] += loss.sum()
        totals[i][1] += (o.argmax(axis=1) == y.astype(o.dtype)).astype("float32").sum()


def train_epoch(task, trainer, batches, steps, contexts, workers, rng, lr_at, update, smoothing=0.0, bar=None):
    """`steps` updates on batches from `batches` (an MXNet DataIter), one drawn path each; returns
    the update count after them and the per-device (loss sum, top-1 hits) NDArrays. Waits for the
    last update to finish, so the time around it is the time of the steps."""
    totals = [[mx.nd.zeros(1, ctx=c), mx.nd.zeros(1, ctx=c)] for c in contexts]
    images_per_step = batches.batch_size * workers.num_workers
    for i in range(steps):
        batch = _next(batches)
        lr = lr_at(update)
        trainer.set_learning_rate(lr)
        train_step(task, trainer, batch, contexts, task.draw(rng), workers, images_per_step, smoothing, totals)
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
    lr_at = LRSchedule(settings.lr, steps, settings.num_epochs, settings.lr_mode, settings.warmup_epochs,
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
    running_stats = [p for p in params if p.grad_req == "null"]
    val_batches = val_source(dataset, per_worker, input_size, settings.threads, workers, settings.dtype)

    images = per_worker * workers.num_workers * steps
    log.info("%s: %d epochs of %d steps, %d images per step on %d device(s) x %d worker(s), lr %s %s",
             task.kind, settings.num_epochs, steps, per_worker * workers.num_workers, len(contexts),
             workers.num_workers, settings.lr, settings.lr_mode)
    last = settings.num_epochs if stop_after is None else min(settings.num_epochs, stop_after + 1)
    for epoch in range(start_epoch, last):
        stage = task.start_epoch(epoch)
        mx.random.seed(epoch_seed(settings.seed, epoch, workers.rank))
        batches = train_iter(dataset, per_worker, input_size, settings.threads, seed=settings.seed + epoch,
                             num_parts=workers.num_workers, part_index=workers.rank, dtype=settings.dtype)
        bar = _bar(steps, epoch, workers.is_chief, progress)
        tic = time.perf_counter()
        update, totals = train_epoch(task, trainer, batches, steps, contexts, workers, rng, lr_at, update,
                                     settings.label_smoothing, bar)
        seconds = time.perf_counter() - tic
        del batches
        loss_sum, hits = workers.sum([sum(t[0].asscalar() for t in totals), sum(t[1].asscalar() for t in totals)])
        workers.average_data(running_stats)
        tic = time.perf_counter()
        val = task.validate(epoch, val_batches, contexts, workers, settings.val_images, per_worker)
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
        raise UserError(f"cannot resume: {save_dir} has no checkpoint yet (the run stopped before its "
                        "first epoch ended); start it again")
    state = load_checkpoint(folder, task.net, trainer, contexts)
    check_same(state["fingerprint"], fingerprint, f"the run in {save_dir}")
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


def dump_worker_params(net, folder, rank):
    """Write this worker's parameters to FOLDER/worker-RANK.params (to check workers stayed equal)."""
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        net.save_parameters(str(Path(folder) / f"worker-{rank}.params"))
