"""Elastic layers: a convolution and a BatchNorm that can run on a prefix of their channels.

A layer owns parameters at its widest and runs at `active` width by slicing the first channels of
the shared weights (no masks: a masked conv still pays for the full width, and zeros before BN leak
BN's offset). At full width nothing is sliced, so the same layers make a plain hybridizable network.
Slicing is only allowed imperatively: a hybridized graph would freeze whatever width it saw first.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

HARD_SIGMOID = dict(alpha=1.0 / 6, beta=0.5)  # hard-sigmoid(x) = relu6(x + 3) / 6


def activation(F, x, kind):
    """'relu', 'hard_swish' (x * hard-sigmoid(x)), 'hard_sigmoid', or None for identity."""
    if kind is None:
        return x
    if kind == "relu":
        return F.relu(x)
    if kind == "hard_swish":
        return x * F.hard_sigmoid(x, **HARD_SIGMOID)
    if kind == "hard_sigmoid":
        return F.hard_sigmoid(x, **HARD_SIGMOID)
    raise ValueError(f"unknown activation {kind!r}")


def channel_shuffle(F, x):
    """Interleave the two channel halves: (N, C, H, W) -> (N, 2, C/2, H, W) -> swap 1,2 -> (N, C, H, W)."""
    x = F.reshape(x, shape=(0, -4, 2, -1, -2))
    x = F.swapaxes(x, 1, 2)
    return F.reshape(x, shape=(0, -3, -2))


def concat_channels(F, a, b):
    """Concatenate NCHW tensors along channels, as 5-D tensors.

    oneDNN's 4-D concat backward dies with SIGFPE on this CPU build when the incoming gradient is in
    a channel-blocked layout whose blocks the split point cuts (e.g. 8 + 8 channels with 16-blocks).
    MXNet hands 5-D concats to its plain kernel, which has no such bug.
    """
    out = F.concat(F.expand_dims(a, axis=4), F.expand_dims(b, axis=4), dim=1)
    return F.reshape(out, shape=(0, 0, 0, -1))


def _prefix(F, array, axis, size, view=False):
    """The first `size` entries of `array` along `axis`; with `view`, a shared-memory view (axis 0).

    Views let BatchNorm's in-place statistics updates reach the full parameter. Convolution weights
    are copied instead: oneDNN keeps weights in its own layout and refuses views of them.
    """
    if F is not mx.nd:
        raise RuntimeError("a layer running below its full width cannot be hybridized: the graph "
                           "would keep the first width it saw. Run the supernet imperatively.")
    if view:
        return array[:size]
    return F.slice_axis(array, axis=axis, begin=0, end=size)


class ElasticConv2D(HybridBlock):
    """A bias-free (or biased) conv whose input/output channels can be narrowed to a prefix."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.active_in, self.active_out = spec.c_in, spec.c_out
        in_per_group = 1 if spec.depthwise else spec.c_in
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(spec.c_out, in_per_group, spec.kernel, spec.kernel))
            self.bias = (self.params.get("bias", shape=(spec.c_out,), init="zeros")
                         if spec.bias else None)

    def set_width(self, c_in, c_out):
        if self.spec.depthwise and c_in != c_out:
            raise ValueError(f"a depthwise conv keeps its width, got {c_in} -> {c_out}")
        if not (0 < c_in <= self.spec.c_in and 0 < c_out <= self.spec.c_out):
            raise ValueError(f"width {c_in}->{c_out} exceeds the layer's {self.spec.c_in}->{self.spec.c_out}")
        self.active_in, self.active_out = c_in, c_out

    def hybrid_forward(self, F, x, weight, bias=None):
        spec, c_in, c_out = self.spec, self.active_in, self.active_out
        if c_out != spec.c_out:
            weight = _prefix(F, weight, 0, c_out)
            bias = None if bias is None else _prefix(F, bias, 0, c_out)
        if c_in != spec.c_in and not spec.depthwise:
            weight = _prefix(F, weight, 1, c_in)
        conv = dict(kernel=(spec.kernel,) * 2, stride=(spec.stride,) * 2, pad=(spec.kernel // 2,) * 2,
                    num_filter=c_out, num_group=c_out if spec.depthwise else 1)
        if bias is None:
            return F.Convolution(x, weight, no_bias=True, **conv)
        return F.Convolution(x, weight, bias, **conv)


class ElasticBatchNorm(HybridBlock):
    """BatchNorm whose gamma/beta/statistics are sliced to the active channel prefix.

    MXNet's `momentum` weights the OLD running value (0.9 keeps 90% of it). On CPU the running
    statistics move during backward(), and slices on axis 0 are views, so narrowed layers update the
    shared statistics in place. (Recalibrated statistics of a path come from nn/pathgraph.py.)
    """

    def __init__(self, channels, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.active = channels, channels
        self.momentum, self.epsilon = momentum, epsilon
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=(channels,), init="ones")
            self.beta = self.params.get("beta", shape=(channels,), init="zeros")
            self.running_mean = self.params.get("running_mean", shape=(channels,), init="zeros",
                                                grad_req="null", differentiable=False)
            self.running_var = self.params.get("running_var", shape=(channels,), init="ones",
                                               grad_req="null", differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if self.active != self.channels:
            gamma, beta, running_mean, running_var = (
                _prefix(F, a, 0, self.active, view=True) for a in (gamma, beta, running_mean, running_var))
        return F.BatchNorm(x, gamma, beta, running_mean, running_var, eps=self.epsilon,
                           momentum=self.momentum, fix_gamma=False)


class ConvUnit(HybridBlock):
    """Conv -> [BN] -> [activation], from a ConvSpec; elastic in its channels."""

    def __init__(self, spec, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.conv = ElasticConv2D(spec)
            self.bn = ElasticBatchNorm(spec.c_out, momentum) if spec.bn else None

    def set_width(self, c_in, c_out):
        self.conv.set_width(c_in, c_out)
        if self.bn is not None:
            self.bn.active = c_out

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return activation(F, x, self.spec.act)


class SqueezeExcite(HybridBlock):
    """Global pool, 1x1 C->r (+bias), ReLU, 1x1 r->C (+bias), hard-sigmoid, channel-wise scale."""

    def __init__(self, specs, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.reduce = ConvUnit(specs[0])
            self.expand = ConvUnit(specs[1])

    def hybrid_forward(self, F, x):
        w = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
        return F.broadcast_mul(x, self.expand(self.reduce(w)))
