"""Validation during training: top-1/top-5 of a network, and of supernet paths after BN recalibration.

What is scored is always a copy: a hybridized SubNet holding copies of the weights (for a supernet,
of the path's weights, with its own BatchNorm statistics re-estimated exactly on a fixed slice of
training images decoded once, `calibration_batches`). Scoring the training network itself would
run it in inference mode, and on this oneDNN build that makes the *following* training steps
non-deterministic (seen as two identical runs drifting apart after the first validation, and only
with the threaded engine), which would break exact resume; a copy also leaves the supernet's own
BatchNorm statistics alone. Under a parameter server each worker scores its shard of the
validation set and the counts are summed, so the figures are those of the whole set.
"""
import numpy as np
import mxnet as mx

from ..nn.bn_calib import recalibrate_bn
from ..data.sources import load_slice
from ..runs.workers import cast_for_training
from ..nn.subnet import SubNet, copy_prefix_weights, extract_subnet
from ..nn.supernet import SuperNet


def calibration_batches(dataset, count, input_size, batch_size, chunks=8, dtype="float32"):
    """`count` training images (validation transform) in `chunks` runs spread over the file, so a
    class-sorted file still gives a mixed slice; returned as a list of data NDArrays."""
    total = len(dataset.train)
    count = min(count, total)
    chunks = max(1, min(chunks, count))
    starts = np.linspace(0, total - count // chunks, chunks).astype(int)
    sizes = [count // chunks + (1 if i < count % chunks else 0) for i in range(chunks)]
    parts = [load_slice(dataset, dataset.train, n, input_size, offset=int(s))[0]
             for s, n in zip(starts, sizes) if n > 0]
    data = mx.nd.concat(*parts, dim=0).astype(dtype)
    return [data[i:i + batch_size] for i in range(0, data.shape[0], batch_size)]


def accuracy_counts(forward, batches, contexts, max_images=0):
    """(top-1 correct, top-5 correct, images) of `forward(x)` over an iterator of DataBatches (the
    padding repeats of the last batch are left out); stops after `max_images` if > 0."""
    top1 = top5 = seen = 0
    for batch in batches:
        data, label = batch.data[0], batch.label[0]
        keep = data.shape[0] - (batch.pad or 0)
        if max_images:
            keep = min(keep, max_images - seen)
        if keep <= 0:
            break
        parts = mx.gluon.utils.split_and_load(data[:keep], contexts, even_split=False)
        labels = mx.gluon.utils.split_and_load(label[:keep], contexts, even_split=False)
        for x, y in zip(parts, labels):
            out = forward(x).astype("float32")
            k = min(5, out.shape[1])
            top = mx.nd.topk(out, k=k, axis=1)                         # (n, k) class ids
            hit = top == y.reshape((-1, 1)).astype(top.dtype)
            top1 += float(hit[:, 0].sum().asscalar())
            top5 += float(hit.sum().asscalar())
        seen += keep
        if max_images and seen >= max_images:
            break
    return top1, top5, seen


def scoring_copy(net, contexts, arch=None, calibration=None):
    """A hybridized SubNet on `contexts` with copies of the weights of `net` (a SubNet, or the path
    `arch` of a SuperNet), its BatchNorm statistics recalibrated on `calibration` if given."""
    if isinstance(net, SuperNet):
        twin = extract_subnet(net, arch, contexts)
    else:
        twin = SubNet(net.arch)
        twin.initialize(mx.init.Zero(), ctx=contexts)
        copy_prefix_weights(net, twin, contexts[0])
    if net.stem.conv.conv.weight.dtype == np.float16:
        cast_for_training(twin, "float16")
    twin.hybridize(static_alloc=True)
    if calibration is not None:
        recalibrate_bn(twin, calibration, ctx=contexts)
    return twin


def evaluate(net, val_batches, contexts, sync, arch=None, calibration=None, max_images=0):
    """{'top1', 'top5', 'images'} of a SubNet, or of the supernet path `arch` after recalibrating
    its BatchNorm statistics on `calibration` (both scored on a copy, see the module docstring).
    `val_batches()` returns a fresh iterator."""
    twin = scoring_copy(net, contexts, arch, calibration)
    counts = accuracy_counts(twin, val_batches(), contexts, max_images)
    top1, top5, images = sync.sum(counts)
    return {"top1": top1 / max(images, 1), "top5": top5 / max(images, 1), "images": int(images)}


def summarise(results, prefix="val"):
    """mean/min/max of top-1 and top-5 over several paths' results."""
    out = {}
    for key in ("top1", "top5"):
        values = [r[key] for r in results]
        out.update({f"{prefix}_{key}_mean": float(np.mean(values)), f"{prefix}_{key}_min": float(min(values)),
                    f"{prefix}_{key}_max": float(max(values))})
    return out
