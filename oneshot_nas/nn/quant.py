"""Fake quantization: a layer's weights and input activations rounded to its bit widths in float,
with a straight-through estimator (STE), over the shared full-precision weights.

- Weights: symmetric, per output channel, 2^(b-1) - 1 levels each side of zero, the scale from the
  largest magnitude of the channel's weights as the layer computes them (a supernet layer narrowed
  to a path's width quantizes its sliced weights, exactly as the extracted subnet does).
- Activations (the conv's input): 2^b levels evenly spaced over [lo, alpha]. `alpha` is learned,
  one per bit width the layer may run at (a supernet path at 2 bits and one at 8 train different
  ranges of the same layer); its gradient is PACT's (the clipped elements'). `lo` follows from what
  feeds the layer (recipe.ConvSpec.in_act): 0 after ReLU, -3/8 after hard-swish (its minimum), and
  -alpha for a signed tensor (after BN without an activation, or the image).
- STE: forward the quantized value, backward the identity (of the clipped value):
  x + BlockGrad(q(x) - x). F.round alone has a zero gradient.
Nothing here keeps state beyond the learned ranges (ordinary parameters: checkpoints, subnet
extraction, path graphs and exports carry them like any weight).

In a traced graph (a Symbol, a hybridized or exported network) every op of a fake quantization
carries the attribute FAKE_QUANT_ATTR = 'weight:<bits>' or 'input:<bits>' (mx.AttrScope; it is
saved in the symbol JSON and changes no arithmetic): the graph profiler (cost/graph.py) reads each
conv's and FC's bit widths from the ops that feed it, and does not count these ops, which simulate
integer arithmetic rather than being operations of the network they stand for.
"""
import mxnet as mx

ACT_LOW = {"relu": 0.0, "hard_sigmoid": 0.0, "hard_swish": -0.375}   # smallest output of each activation
MIN_RANGE = 0.05        # alpha never falls below this (a collapsed range would divide by zero)
FAKE_QUANT_ATTR = "__fake_quant__"     # 'weight:<bits>' / 'input:<bits>' on every fake-quant op


def _tagged(role, bits):
    """Tags every op traced inside with FAKE_QUANT_ATTR = '<role>:<bits>' (no-op for NDArrays)."""
    return mx.AttrScope(**{FAKE_QUANT_ATTR: f"{role}:{bits}"})


def initial_range(bits):
    """Starting alpha of a `bits`-wide activation: narrow ranges for few levels (whose rounding
    error would dominate), wide ones for many (whose clipping would): 3.0 at 2 bits to 6.0 at 8."""
    return min(2.0 + 0.5 * bits, 8.0)


class ActRanges(mx.init.Initializer):
    """Initialises a layer's vector of activation ranges, one per bit width of `widths`."""

    def __init__(self, widths):
        super().__init__(widths=list(widths))
        self.widths = tuple(widths)

    def _init_weight(self, name, arr):
        arr[:] = mx.nd.array([initial_range(b) for b in self.widths], dtype=arr.dtype)


def quantize_weight(F, weight, bits):
    """Symmetric per-output-channel fake quantization of `weight` (out, ...) to `bits`, with STE."""
    levels = 2 ** (bits - 1) - 1
    with _tagged("weight", bits):
        scale = F.max(F.abs(weight), axis=0, exclude=True, keepdims=True) / levels     # (out, 1, ...)
        scale = F.maximum(F.BlockGrad(scale), 1e-12)
        q = F.broadcast_mul(F.round(F.broadcast_div(weight, scale)), scale)
        return weight + F.BlockGrad(q - weight)


def quantize_act(F, x, ranges, precision, in_act, ndim=4):
    """Fake quantization of the activations `x` to `precision.abits` over [lo, alpha], alpha the
    learned entry of `ranges` for that width; STE for x, PACT's gradient for alpha."""
    k = precision.index
    with _tagged("input", precision.abits):
        alpha = F.clip(F.slice_axis(ranges, axis=0, begin=k, end=k + 1), MIN_RANGE, 1e4)
        alpha = F.reshape(alpha, shape=(1,) * ndim)
        if in_act is None:                       # a signed tensor: [-alpha, alpha]
            low = -alpha
            clipped = F.broadcast_minimum(F.broadcast_maximum(x, low), alpha)
        else:
            low = ACT_LOW[in_act]
            clipped = F.broadcast_minimum(F.maximum(x, low), alpha)
        step = (alpha - low) / (2 ** precision.abits - 1)
        offset = F.broadcast_sub(clipped, low) if in_act is None else clipped - low
        q = F.broadcast_mul(F.round(F.broadcast_div(offset, step)), step)
        q = F.broadcast_add(q, low) if in_act is None else q + low
        return clipped + F.BlockGrad(q - clipped)
