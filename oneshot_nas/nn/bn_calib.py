"""BatchNorm recalibration: exact running statistics of one path over a fixed slice of data.

A supernet's running statistics mix every path it trained; a path must be scored with its own. This
resets and re-estimates them as true averages over the whole slice (E[x] and E[x^2] - E[x]^2 over
every value of every batch), not a momentum average dominated by the last batches. It runs forward
passes only: on this CPU build BatchNorm moves its running statistics only in backward(), so the
statistics are computed explicitly by the layers (see layers.ElasticBatchNorm.calibration).
"""
from contextlib import contextmanager

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import HybridBlock

from .layers import BNStats, ElasticBatchNorm
from .supernet import SuperNet


def path_batchnorms(net, arch=None):
    """The BatchNorm layers a forward pass of `net` (on `arch`, for a supernet) goes through."""
    if isinstance(net, SuperNet):
        blocks = [net.stem] + net.path_blocks(arch) + [net.head]
    else:
        blocks = [net]
    found = []
    for block in blocks:
        _collect(block, found)
    return found


def _collect(block, found):
    if isinstance(block, ElasticBatchNorm):
        found.append(block)
    for child in block._children.values():
        _collect(child, found)


@contextmanager
def imperative(block):
    """Run `block` (and every block inside it) imperatively for a while, keeping its cached graphs.

    Gluon 1.x decides per call from the private `_active` flag; clearing it on the whole tree and
    restoring it afterwards avoids rebuilding the graphs (hybridize(False) would drop them).
    """
    flags = []

    def walk(b):
        if isinstance(b, HybridBlock):
            flags.append((b, b._active))
            b._active = False
        for child in b._children.values():
            walk(child)
    walk(block)
    try:
        yield block
    finally:
        for b, flag in flags:
            b._active = flag


def recalibrate_bn(net, batches, arch=None, ctx=None):
    """Re-estimate the running statistics of every BatchNorm on the path from `batches`.

    `batches` yields data NDArrays (or (data, label) pairs); each is split across `ctx` (a list of
    contexts, default: where the net's parameters live). Returns the number of images used.
    """
    ctx = ctx or net.collect_params().list_ctx()
    bns = path_batchnorms(net, arch)
    stats = {bn: BNStats() for bn in bns}
    images = 0
    for bn in bns:
        bn.calibration = stats[bn]
    try:
        with autograd.train_mode(), imperative(net):
            for batch in batches:
                data = batch[0] if isinstance(batch, (tuple, list)) else batch
                for part in mx.gluon.utils.split_and_load(data, ctx, even_split=False):
                    net(part, arch) if isinstance(net, SuperNet) else net(part)
                images += data.shape[0]
    finally:
        for bn in bns:
            bn.calibration = None
    if images == 0:
        raise ValueError("BN recalibration got no data: the calibration slice is empty")
    for bn, stat in stats.items():
        mean, var = stat.result()
        for c in bn.running_mean.list_ctx():
            bn.running_mean.data(c)[:bn.active] = mean.as_in_context(c)
            bn.running_var.data(c)[:bn.active] = var.as_in_context(c)
    return images
