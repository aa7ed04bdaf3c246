"""Validation during training: top-1/top-5 of a network, and of supernet paths after BN recalibration.

Every path is scored as nn/pathgraph.py scores it, the same way the search scores candidates: a
static graph holding copies of the path's weights, its BatchNorm statistics re-estimated exactly on
a fixed slice of training images decoded once (data/slices.calibration_slice). So training
validation and search give the same top-1 on the same slices. Scoring copies also keeps the training
network out of inference mode: on this oneDNN build an inference pass of the training network made
the *following* training steps non-deterministic (two identical runs drifted apart after the first
validation, with the threaded engine only), which would break exact resume; and the supernet's own
BatchNorm statistics are left alone. Under a parameter server each worker scores its shard of the
validation set and the counts are summed, so the figures are those of the whole set.
"""
import math

import numpy as np

from ..data.iterators import labelled_batches, val_iter
from ..data.slices import ImageSlice
from ..nn.pathgraph import PathGraph

VAL_CACHE_BYTES = 256 << 20   # a validation shard up to this size (uint8) is decoded once per run


def val_source(dataset, batch_size, input_size, threads, workers, dtype="float32"):
    """A function returning fresh (data, labels) batches of this worker's validation shard: decoded
    once into memory when the shard is small (the digits: 359 images), else streamed from RecordIO
    each time (ImageNet's 50,000). Shards follow ImageRecordIter's split: ceil(N / workers) records
    each, in file order."""
    keys = dataset.val.keys()
    part = math.ceil(len(keys) / workers.num_workers)
    mine = keys[workers.rank * part:(workers.rank + 1) * part]
    if len(mine) * 3 * input_size * input_size <= VAL_CACHE_BYTES and mine:
        shard = ImageSlice.load(dataset, dataset.val, tuple(mine), input_size)
        return lambda: shard.batches(batch_size)

    def stream():
        # a fresh reader each time: ImageRecordIter.reset() after a padded last batch starts the next
        # pass inside the wrap-around, so a reset reader skips images and miscounts `pad`
        return labelled_batches(val_iter(dataset, batch_size, input_size, threads,
                                         num_parts=workers.num_workers, part_index=workers.rank,
                                         dtype=dtype))
    return stream


def evaluate(net, val_batches, workers, arch=None, calibration=None, contexts=None, pieces=None,
             max_images=0, batch_size=64):
    """{'top1', 'top5', 'images'} of a SubNet, or of the supernet path `arch` after recalibrating
    its BatchNorm statistics on `calibration` (an ImageSlice), summed over workers.
    `val_batches()` returns fresh (data, labels) batches; `pieces` (nn.pathgraph.PathPieces of
    `net`) reuses traced parts from one call to the next."""
    graph = PathGraph(net, arch, contexts, pieces)
    if calibration is not None:
        graph.calibrate(calibration.batches(batch_size))
    top1, top5, images = workers.sum(graph.counts(_limit(val_batches(), max_images)))
    return {"top1": top1 / max(images, 1), "top5": top5 / max(images, 1), "images": int(images)}


def _limit(batches, max_images):
    """At most `max_images` images of `batches` (all when 0)."""
    seen = 0
    for data, labels in batches:
        if max_images and seen + len(labels) > max_images:
            keep = max_images - seen
            if keep > 0:
                yield data[:keep], labels[:keep]
            return
        yield data, labels
        seen += len(labels)


def summarise(results, prefix="val"):
    """mean/min/max of top-1 and top-5 over several paths' results."""
    out = {}
    for key in ("top1", "top5"):
        values = [r[key] for r in results]
        out.update({f"{prefix}_{key}_mean": float(np.mean(values)), f"{prefix}_{key}_min": float(min(values)),
                    f"{prefix}_{key}_max": float(max(values))})
    return out
