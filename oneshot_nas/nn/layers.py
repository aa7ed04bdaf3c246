"""Elastic layers: a convolution and a BatchNorm that run on a prefix of the channels they own.

A layer owns parameters at its widest and computes at a fixed `active` width by slicing the first
channels of the shared weights (no masks: a masked conv still pays for the full width, and zeros
before BN leak BN's offset). The width is fixed per layer instance, so slicing is part of the
layer's graph and it hybridizes; a supernet runs one instance per width over the same parameters
(nn/blocks.py). At full width nothing is sliced: the same layers make a plain network.
"""
from mxnet.gluon import HybridBlock

from .quant import ActRanges, quantize_act, quantize_weight

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


class ElasticConv2D(HybridBlock):
    """A bias-free (or biased) conv that owns weights for `spec` and computes on a prefix of its
    channels: `active` = (c_in, c_out) <= (spec.c_in, spec.c_out), fixed for this block, so the
    slicing is part of its graph and it hybridizes. Weights are cut with slice_axis (a copy:
    oneDNN keeps weights in its own layout and refuses views of them); the gradient of the cut
    lands in the leading channels and is exactly zero beyond them.

    With a `precision` (recipe.Precision) it computes fake-quantized (nn/quant.py): its input at
    `abits` over a learned range (it owns one per width of `precision.widths`), its (sliced)
    weights at `wbits`."""

    def __init__(self, spec, active=None, precision=None, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.precision = spec, precision
        self.active_in, self.active_out = active or (spec.c_in, spec.c_out)
        if spec.depthwise and self.active_in != self.active_out:
            raise ValueError(f"a depthwise conv keeps its width, got {active}")
        if not (0 < self.active_in <= spec.c_in and 0 < self.active_out <= spec.c_out):
            raise ValueError(f"width {active} exceeds the layer's {spec.c_in}->{spec.c_out}")
        in_per_group = 1 if spec.depthwise else spec.c_in
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(spec.c_out, in_per_group, spec.kernel, spec.kernel))
            self.bias = (self.params.get("bias", shape=(spec.c_out,), init="zeros")
                         if spec.bias else None)
            self.act_range = (self.params.get("act_range", shape=(len(precision.widths),),
                                              init=ActRanges(precision.widths))
                              if precision is not None else None)

    def hybrid_forward(self, F, x, weight, bias=None, act_range=None):
        spec, c_in, c_out = self.spec, self.active_in, self.active_out
        if c_out != spec.c_out:
            weight = F.slice_axis(weight, axis=0, begin=0, end=c_out)
            bias = None if bias is None else F.slice_axis(bias, axis=0, begin=0, end=c_out)
        if c_in != spec.c_in and not spec.depthwise:
            weight = F.slice_axis(weight, axis=1, begin=0, end=c_in)
        if self.precision is not None:
            x = quantize_act(F, x, act_range, self.precision, spec.in_act)
            weight = quantize_weight(F, weight, self.precision.wbits)
        conv = dict(kernel=(spec.kernel,) * 2, stride=(spec.stride,) * 2, pad=(spec.kernel // 2,) * 2,
                    num_filter=c_out, num_group=c_out if spec.depthwise else 1)
        if bias is None:
            return F.Convolution(x, weight, no_bias=True, **conv)
        return F.Convolution(x, weight, bias, **conv)


class ElasticBatchNorm(HybridBlock):
    """BatchNorm that owns `channels` of gamma and beta and normalises the first `active`.

    MXNet's `momentum` weights the OLD running value (0.9 keeps 90% of it). Below full width, gamma
    and beta are cut from the shared ones, but a graph can only update running statistics that are
    its own variables, so a narrowed layer keeps running statistics of its own width
    (`running_mean_a<width>`, not saved): a supernet's running statistics are never used, because
    every path is recalibrated before it is scored (nn/pathgraph.py), as SPOS prescribes. At full
    width (a SubNet, or a supernet candidate at its widest) it is a plain BatchNorm.
    """

    def __init__(self, channels, momentum=0.9, epsilon=1e-5, active=None, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.active = channels, active or channels
        if not 0 < self.active <= channels:
            raise ValueError(f"width {self.active} exceeds the layer's {channels} channels")
        self.momentum, self.epsilon = momentum, epsilon
        own = "" if self.active == channels else f"_a{self.active}"
        with self.name_scope():
            self.gamma = self.params.get("gamma", shape=(channels,), init="ones")
            self.beta = self.params.get("beta", shape=(channels,), init="zeros")
            self.running_mean = self.params.get(f"running_mean{own}", shape=(self.active,), init="zeros",
                                                grad_req="null", differentiable=False)
            self.running_var = self.params.get(f"running_var{own}", shape=(self.active,), init="ones",
                                               grad_req="null", differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if self.active != self.channels:
            gamma, beta = (F.slice_axis(a, axis=0, begin=0, end=self.active) for a in (gamma, beta))
        return F.BatchNorm(x, gamma, beta, running_mean, running_var, eps=self.epsilon,
                           momentum=self.momentum, fix_gamma=False)


class ConvUnit(HybridBlock):
    """Conv -> [BN] -> [activation], from a ConvSpec (the parameters' widths); with `active`, the
    spec of the widths it computes at (a narrower ConvSpec of the same layer); with `precision`,
    fake-quantized."""

    def __init__(self, spec, momentum=0.9, active=None, precision=None, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        active = active or spec
        with self.name_scope():
            self.conv = ElasticConv2D(spec, (active.c_in, active.c_out), precision)
            self.bn = ElasticBatchNorm(spec.c_out, momentum, active=active.c_out) if spec.bn else None

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return activation(F, x, self.spec.act)


class SqueezeExcite(HybridBlock):
    """Global pool, 1x1 C->r (+bias), ReLU, 1x1 r->C (+bias), hard-sigmoid, channel-wise scale."""

    def __init__(self, specs, precision=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.reduce = ConvUnit(specs[0], precision=precision)
            self.expand = ConvUnit(specs[1], precision=precision)

    def hybrid_forward(self, F, x):
        w = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
        return F.broadcast_mul(x, self.expand(self.reduce(w)))


class QuantDense(HybridBlock):
    """A classifier (weight (units, in_units) and bias, as nn.Dense) fake-quantized at `precision`;
    its input is the output of activation `in_act`."""

    def __init__(self, units, in_units, precision, in_act, **kwargs):
        super().__init__(**kwargs)
        self.units, self.precision, self.in_act = units, precision, in_act
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(units, in_units))
            self.bias = self.params.get("bias", shape=(units,), init="zeros")
            self.act_range = self.params.get("act_range", shape=(len(precision.widths),),
                                             init=ActRanges(precision.widths))

    def hybrid_forward(self, F, x, weight, bias, act_range):
        x = quantize_act(F, x, act_range, self.precision, self.in_act, ndim=2)
        weight = quantize_weight(F, weight, self.precision.wbits)
        return F.FullyConnected(x, weight, bias, num_hidden=self.units)
