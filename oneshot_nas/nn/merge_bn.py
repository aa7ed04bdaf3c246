"""Merged-BN networks: every BatchNorm folded into the convolution before it.

At inference a BatchNorm is a per-channel affine map, y = s * (x - mean) + beta with
s = gamma / sqrt(var + eps). After a convolution x = W * u + b it is the same convolution with
W' = s * W (per output channel) and b' = s * (b - mean) + beta. The folded network is the same
`SubNet` class built with `fold_bn=True` (no BatchNorm layers; those convs carry a bias), so it
hybridizes, exports and quantizes like any SubNet, with one op fewer per conv.
"""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from .. import recipe
from .layers import ConvUnit
from .subnet import SubNet


def units(block):
    """The ConvUnits and Dense layers inside `block`, in network order.

    Gluon keeps children in registration order, and every block here registers its parts in the
    order its forward pass runs them (stem, blocks: projection, main, SE; head conv, classifier), so
    two networks built from the same architecture pair up unit by unit.
    """
    found = []

    def walk(b):
        if isinstance(b, (ConvUnit, nn.Dense)):
            found.append(b)
            return
        for child in b._children.values():
            walk(child)
    walk(block)
    return found


def folded_conv(unit):
    """(weight, bias) of `unit`'s convolution with its BatchNorm folded in (float64 numpy)."""
    conv, bn = unit.conv, unit.bn
    weight = conv.weight.data(conv.weight.list_ctx()[0]).asnumpy().astype(np.float64)
    bias = (conv.bias.data(conv.bias.list_ctx()[0]).asnumpy().astype(np.float64)
            if conv.bias is not None else np.zeros(weight.shape[0]))
    if bn is None:
        return weight, bias
    gamma, beta, mean, var = (p.data(p.list_ctx()[0]).asnumpy().astype(np.float64)
                              for p in (bn.gamma, bn.beta, bn.running_mean, bn.running_var))
    scale = gamma / np.sqrt(var + bn.epsilon)             # (C_out,)
    return weight * scale[:, None, None, None], (bias - mean) * scale + beta


def merge_bn(net, ctx=None):
    """A new SubNet equal to `net` at inference, without BatchNorm layers (fold_bn=True).

    `net` keeps its own parameters; the twin lives on `ctx` (default: where `net`'s parameters are).
    """
    if not isinstance(net, SubNet):
        raise TypeError(f"merge_bn takes a SubNet, not {type(net).__name__}")
    if net.fold_bn:
        raise ValueError("this SubNet has no BatchNorm left to fold (it was built with fold_bn=True)")
    ctx = ctx or net.collect_params().list_ctx()
    twin = SubNet(net.arch, fold_bn=True)
    twin.initialize(mx.init.Zero(), ctx=ctx)
    source, target = units(net), units(twin)
    if len(source) != len(target):
        raise RuntimeError(f"{len(source)} layers in the network but {len(target)} in its folded twin")
    for src, dst in zip(source, target):
        if isinstance(src, nn.Dense):
            for name in ("weight", "bias"):
                param = getattr(src, name)
                getattr(dst, name).set_data(param.data(param.list_ctx()[0]))
            continue
        if recipe.fold_bn(src.spec) != dst.spec:
            raise RuntimeError(f"layer mismatch while folding: {src.spec} vs {dst.spec}")
        weight, bias = folded_conv(src)
        dst.conv.weight.set_data(mx.nd.array(weight, dtype="float32"))
        dst.conv.bias.set_data(mx.nd.array(bias, dtype="float32"))
    return twin
