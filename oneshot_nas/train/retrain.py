"""Retraining one architecture: its fixed network built, initialised, hybridized and trained by the loop.

`retrain` is what `train_subnet.py` runs and what the ground-truth table (groundtruth.py) runs for
every (architecture, seed), and for the reference nets it is compared with (nn/plain.py): one
recipe in one place. The network starts from scratch (initialised from `settings.seed`) or from a
loaded supernet's weights of that path (`start_from`).
"""
import logging

import mxnet as mx

from ..nn.subnet import SubNet, extract_subnet
from .loop import fit
from .settings import cast_for_training, initialize
from .tasks import SubnetTask
from .validation import evaluate, val_source

log = logging.getLogger(__name__)


def inherit(net, supernet, arch):
    """Copy the path's weights (and BN statistics) out of a loaded supernet into `net`."""
    source = extract_subnet(supernet, arch.on(supernet.space), mx.cpu())
    theirs = source._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        if theirs[name].shape != param.shape:    # only the classifier can differ (num_classes)
            log.info("%s not inherited: shape %s in the supernet, %s here", name, theirs[name].shape,
                     param.shape)
            continue
        param.set_data(theirs[name].data(mx.cpu()))


def retrain(arch, dataset, settings, contexts, workers, init="msra", start_from=None, run=None,
            save_dir=None, resume=False, stop_after=None, progress=None, input_size=None):
    """Train the fixed network of `arch` with `settings`; returns (net, history, final).

    `arch` is an Architecture, or an untrained reference net (nn/plain.reference_net) whose input
    size is `input_size`. `final` is {'top1', 'top5'} on the whole validation set once the last
    epoch has run (the epochs validate on `settings.val_images` images only when that is set),
    else None. `run`, `save_dir`, `resume`, `stop_after` and `progress` are train.loop.fit's.
    """
    if isinstance(arch, mx.gluon.HybridBlock):
        net = arch
        if start_from is not None:
            raise ValueError("a reference net has no path to inherit from a supernet")
    else:
        net, input_size = SubNet(arch), arch.space.input_size
    initialize(net, contexts, init, settings.seed)
    if start_from is not None and not resume:
        inherit(net, start_from, arch)
    cast_for_training(net, settings.dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    task = SubnetTask(net)
    history = fit(task, dataset, settings, contexts, workers, run=run, save_dir=save_dir, resume=resume,
                  stop_after=stop_after, input_size=input_size, progress=progress)
    if not history or history[-1]["epoch"] != settings.num_epochs - 1:
        return net, history, None
    final = {"top1": history[-1]["val_top1"], "top5": history[-1]["val_top5"]}
    if settings.val_images:    # the epochs validated on a subset: the final figure is the whole set's
        per_worker = settings.batch_size * len(contexts)
        batches = val_source(dataset, per_worker, input_size, settings.threads, workers, settings.dtype)
        result = evaluate(net, batches, workers, contexts=contexts, pieces=task.pieces, batch_size=per_worker)
        final = {"top1": result["top1"], "top5": result["top5"]}
    return net, history, final
