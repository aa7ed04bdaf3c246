"""Which convolutions each part of the network is made of, as plain data.

The MXNet blocks (`blocks.py`) are built from these recipes and the analytic counters (`counting.py`)
count them, so the two can never describe different networks. Widths are concrete integers: a
recipe is asked for at one main-branch width `mid`.
"""
from dataclasses import dataclass, replace

from .space import FLOAT_BITS, se_channels


@dataclass(frozen=True)
class ConvSpec:
    """A convolution, optionally followed by BatchNorm and an activation ('relu' or 'hard_swish')."""
    c_in: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    depthwise: bool = False
    bn: bool = True
    bias: bool = False
    act: str = None
    in_act: str = None      # the activation its input comes out of (None: a signed tensor); sets
                            # the lower end of the input's quantization range (nn/quant.py)

    @property
    def groups(self):
        return self.c_in if self.depthwise else 1


@dataclass(frozen=True)
class Precision:
    """The bit widths a layer computes at: its weights at `wbits`, its input at `abits`. The layer
    owns one learned activation range per width of `widths` (the ones a supernet may ask of it),
    so every path that uses the layer at one width trains the same range."""
    wbits: int
    abits: int
    widths: tuple

    @property
    def index(self):
        """Which of the layer's activation ranges this precision uses."""
        return self.widths.index(self.abits)


def block_precision(space, wbit_id, abit_id):
    """Every layer of a searchable block at a quantized space's bit ids; None for a float space."""
    if not space.bit_widths:
        return None
    return Precision(space.bit_widths[wbit_id], space.bit_widths[abit_id], space.bit_widths)


def path_precisions(arch):
    """The precision of each position of `arch` (None for every one of a float space)."""
    if not arch.space.bit_widths:
        return (None,) * arch.space.num_positions
    return tuple(block_precision(arch.space, w, a) for w, a in zip(arch.wbits, arch.abits))


def edge_precision(space):
    """The stem's and the head's precision: `edge_bits` (8, as usual) in a quantized space; None
    (float) in a float space or at edge_bits 32."""
    if not space.bit_widths or space.edge_bits == FLOAT_BITS:
        return None
    return Precision(space.edge_bits, space.edge_bits, (space.edge_bits,))


def fold_bn(spec):
    """The BN-free twin of `spec`: BatchNorm folded into the conv, which gains a bias (merge_bn.py)."""
    return replace(spec, bn=False, bias=True) if spec.bn else spec


def main_branch(choice, position, mid):
    """The main branch of block `choice` (a BlockChoice) at `position` with width `mid`.

    SNB-k: 1x1 in->mid, BN, act; kxk depthwise (stride s), BN; 1x1 mid->out, BN, act.
    SXB-k: three times [kxk depthwise, BN, 1x1, BN, act], the first depthwise at stride s, widths
    in->mid->mid->out. SE (when the position has it) follows the branch; see `se_layers`.
    """
    c_in, c_out, s, k, act = position.main_in, position.main_out, position.stride, choice.kernel, position.act
    block_in = position.in_act
    if choice.family == "SNB":
        return (ConvSpec(c_in, mid, act=act, in_act=block_in),
                ConvSpec(mid, mid, k, s, depthwise=True, in_act=act),
                ConvSpec(mid, c_out, act=act))
    if choice.family == "SXB":
        return (ConvSpec(c_in, c_in, k, s, depthwise=True, in_act=block_in),
                ConvSpec(c_in, mid, act=act),
                ConvSpec(mid, mid, k, 1, depthwise=True, in_act=act),
                ConvSpec(mid, mid, act=act),
                ConvSpec(mid, mid, k, 1, depthwise=True, in_act=act),
                ConvSpec(mid, c_out, act=act))
    raise ValueError(f"no recipe for block family {choice.family!r}")


def projection_branch(choice, position):
    """The stride-2 shortcut: kxk depthwise stride 2 (k of the block), BN, 1x1 in->in, BN, act."""
    if position.stride == 1:
        return ()
    c = position.c_in
    return (ConvSpec(c, c, choice.kernel, 2, depthwise=True, in_act=position.in_act),
            ConvSpec(c, c, act=position.act))


def se_layers(channels, in_act=None):
    """SE on `channels` (the output of activation `in_act`): global pool, 1x1 C->r with bias,
    ReLU, 1x1 r->C with bias, hard-sigmoid, scale."""
    r = se_channels(channels)
    return (ConvSpec(channels, r, bn=False, bias=True, act="relu", in_act=in_act),
            ConvSpec(r, channels, bn=False, bias=True, act="hard_sigmoid", in_act="relu"))


def stem(space):
    """First conv: 3x3 stride 2, 3 -> first_conv, BN, activation."""
    return ConvSpec(3, space.first_conv, 3, 2, act=space.stem_act)


def head_conv(space):
    """The last block's conv: before the pool with BN (original) or after it with a bias (MobileNetV3)."""
    c_in, last = space.stage_channels[-1], space.positions[-1].act
    if space.last_block == "original":
        return ConvSpec(c_in, space.last_conv, act=space.head_act, in_act=last)
    return ConvSpec(c_in, space.last_conv, bn=False, bias=True, act=space.head_act, in_act=last)
