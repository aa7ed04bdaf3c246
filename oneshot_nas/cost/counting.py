"""Exact op-by-op counts of an Architecture, and a lookup table that sums them in microseconds.

Units (per image, at the space's input size), because the field's numbers disagree for want of them:
- `mults`, `adds`: MicroNet-challenge counts; `flops` = mults + adds. BatchNorm after a conv is folded
  into it (the conv gains a bias); a BatchNorm alone costs 1 mult + 1 add per element.
- `params`: MicroNet parameters (folded BN: C_out biases per conv, no BN params of its own).
- `macs`: the SPOS/ShuffleNet papers' "FLOPs": conv/FC multiply-accumulates, + 1 per output with an
  explicit bias, + 1 per input element of a global pool. `paper_params`: every trainable parameter
  (BN gamma and beta included).
- `q_params`, `q_mults`: the part of params/mults in quantizable ops (conv, FC, ReLU).
- `bitops`: of a mixed-precision network (a quantized space, docs/quantization.md), the sum over
  its conv and FC layers of MACs (as counted above) x weight bits x input-activation bits, each
  layer at its own widths (a float layer of such a network counts 32 x 32); 0 for a float network.
The graph profiler (`graph.py`) applies the same rules to any MXNet symbol, reading a fake-quantized
graph's bit widths from the graph; tests prove that both agree exactly on our networks, BitOps included.
"""
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .. import recipe
from ..space import FLOAT_BITS, conv_out_size, get_space

QUANTIZABLE = frozenset({"conv", "fc", "relu"})
# MicroNet reference network (MobileNetV2 width 1.4 on ImageNet): 6.9M params, 1170M math ops.
MOBILENETV2_14 = (6.9e6, 1170e6)


@dataclass(frozen=True)
class Op:
    """One operation's cost. `in_shape` is (C, H, W) of its input; `kernel` is 0 when not a conv."""
    name: str
    kind: str
    in_shape: tuple
    kernel: int
    c_in: int
    c_out: int
    params: int
    mults: int
    adds: int
    macs: int
    paper_params: int
    wbits: int = 0          # the bit widths a conv/FC computes at in a mixed-precision network
    abits: int = 0          # (0: a float network, which has no BitOps)

    @property
    def quantizable(self):
        return self.kind in QUANTIZABLE

    @property
    def bitops(self):
        return self.macs * self.wbits * self.abits if self.kind in ("conv", "fc") else 0

    @property
    def flops(self):
        return self.mults + self.adds


@dataclass(frozen=True)
class Counts:
    """Totals of a network or a part of it; add them with `+`."""
    params: int = 0
    mults: int = 0
    adds: int = 0
    macs: int = 0
    paper_params: int = 0
    q_params: int = 0
    q_mults: int = 0
    bitops: int = 0

    @property
    def flops(self):
        return self.mults + self.adds

    def __add__(self, other):
        return Counts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self):
        return tuple(getattr(self, f.name) for f in fields(self))

    def as_dict(self):
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "flops": self.flops}

    @classmethod
    def of(cls, ops):
        total = [0] * len(fields(cls))
        for op in ops:
            q = op.quantizable
            for i, v in enumerate((op.params, op.mults, op.adds, op.macs, op.paper_params,
                                   op.params if q else 0, op.mults if q else 0, op.bitops)):
                total[i] += v
        return cls(*total)


COUNT_FIELDS = tuple(f.name for f in fields(Counts))


# ----- the counting rules, one function per kind of op ------------------------------------------
def conv_op(name, c_in, c_out, kernel, stride, groups, in_hw, bias=False, folded_bn=False, bits=(0, 0)):
    """Conv (dense, grouped, depthwise): per output k*k*C_in/g mults and one add fewer; a bias (its
    own or a folded BN's) adds 1 add per output and C_out params. `bits`: (weight, activation)
    bit widths in a mixed-precision network."""
    h, w = in_hw
    outputs = c_out * conv_out_size(h, stride) * conv_out_size(w, stride)
    fan_in = kernel * kernel * c_in // groups
    weights = c_out * fan_in
    has_bias = bias or folded_bn
    return Op(name, "conv", (c_in, h, w), kernel, c_in, c_out,
              params=weights + (c_out if has_bias else 0),
              mults=outputs * fan_in,
              adds=outputs * (fan_in - 1) + (outputs if has_bias else 0),
              macs=outputs * fan_in + (outputs if bias else 0),
              paper_params=weights + (c_out if bias else 0), wbits=bits[0], abits=bits[1])


def fc_op(name, c_in, c_out, bias=True, bits=(0, 0)):
    return Op(name, "fc", (c_in, 1, 1), 0, c_in, c_out,
              params=c_in * c_out + (c_out if bias else 0),
              mults=c_in * c_out, adds=(c_in - 1) * c_out + (c_out if bias else 0),
              macs=c_in * c_out + (c_out if bias else 0),
              paper_params=c_in * c_out + (c_out if bias else 0), wbits=bits[0], abits=bits[1])


def bits_of(precision, space):
    """(weight, activation) bits a layer of `precision` is counted at: (0, 0) in a float space, 32
    for a float layer of a mixed-precision one."""
    if precision is not None:
        return precision.wbits, precision.abits
    return (FLOAT_BITS, FLOAT_BITS) if space.quantized else (0, 0)


def bn_op(name, channels, in_hw, folded):
    """BatchNorm: free when folded into the conv before it, else 1 mult + 1 add per element."""
    elements = channels * in_hw[0] * in_hw[1]
    cost = 0 if folded else elements
    return Op(name, "bn", (channels,) + tuple(in_hw), 0, channels, channels,
              params=0 if folded else 2 * channels, mults=cost, adds=cost, macs=0,
              paper_params=2 * channels)


ACT_COST = {"relu": (1, 0), "hard_sigmoid": (2, 1), "hard_swish": (3, 1),
            "sigmoid": (2, 1), "swish": (3, 1)}  # (mults, adds) per element, as MicroNet counts


def act_op(name, kind, channels, in_hw):
    elements = channels * in_hw[0] * in_hw[1]
    m, a = ACT_COST[kind]
    return Op(name, kind, (channels,) + tuple(in_hw), 0, channels, channels,
              params=0, mults=m * elements, adds=a * elements, macs=0, paper_params=0)


def pool_op(name, channels, in_hw):
    """Global average pool: (H*W - 1)*C adds and C mults; the papers count 1 MAC per input element."""
    hw = in_hw[0] * in_hw[1]
    return Op(name, "pool", (channels,) + tuple(in_hw), 0, channels, channels,
              params=0, mults=channels, adds=(hw - 1) * channels, macs=hw * channels, paper_params=0)


def eltwise_op(name, kind, channels, in_hw):
    """Element-wise 'mul' (1 mult per element) or 'add' (1 add per element)."""
    elements = channels * in_hw[0] * in_hw[1]
    return Op(name, kind, (channels,) + tuple(in_hw), 0, channels, channels, params=0,
              mults=elements if kind == "mul" else 0, adds=elements if kind == "add" else 0,
              macs=0, paper_params=0)


# ----- the analytic count of our networks -------------------------------------------------------
def spec_ops(name, spec, in_hw, bits=(0, 0)):
    """Ops of one ConvSpec (conv, optional BN folded into it, optional activation) at `in_hw`."""
    ops = [conv_op(f"{name}.conv", spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.groups,
                   in_hw, bias=spec.bias, folded_bn=spec.bn, bits=bits)]
    out_hw = tuple(conv_out_size(s, spec.stride) for s in in_hw)
    if spec.bn:
        ops.append(bn_op(f"{name}.bn", spec.c_out, out_hw, folded=True))
    if spec.act:
        ops.append(act_op(f"{name}.{spec.act}", spec.act, spec.c_out, out_hw))
    return ops, out_hw


def _chain(name, specs, in_hw, bits=(0, 0)):
    ops = []
    for i, spec in enumerate(specs):
        more, in_hw = spec_ops(f"{name}.{i}", spec, in_hw, bits)
        ops += more
    return ops, in_hw


def block_ops(space, position, block_id, channel_id, wbits=0, abits=0, se=None):
    """Ops of one candidate at one position and width, in a quantized space at the bit-width ids
    `wbits`, `abits`, and in a space that searches SE with SE gene `se` (channel shuffle, split,
    concat are free)."""
    p, choice = space.position(position, se), space.block_choices[block_id]
    name, hw = f"p{position}", (p.in_size, p.in_size)
    bits = bits_of(recipe.block_precision(space, wbits, abits), space)
    ops, _ = _chain(f"{name}.proj", recipe.projection_branch(choice, p), hw, bits)
    main, out_hw = _chain(f"{name}.main", recipe.main_branch(choice, p, space.mid(position, channel_id)), hw, bits)
    ops += main
    if p.se:
        ops.append(pool_op(f"{name}.se.pool", p.main_out, out_hw))
        se, _ = _chain(f"{name}.se", recipe.se_layers(p.main_out, p.act), (1, 1), bits)
        ops += se
        ops.append(eltwise_op(f"{name}.se.scale", "mul", p.main_out, out_hw))
    return ops


def stem_ops(space):
    return spec_ops("stem", recipe.stem(space), (space.input_size,) * 2,
                    bits_of(recipe.edge_precision(space), space))[0]


def head_ops(space):
    size, c = (space.final_size,) * 2, space.stage_channels[-1]
    spec, bits = recipe.head_conv(space), bits_of(recipe.edge_precision(space), space)
    if space.last_block == "mobilenetv3":
        ops = [pool_op("head.pool", c, size)] + spec_ops("head", spec, (1, 1), bits)[0]
    else:
        ops = spec_ops("head", spec, size, bits)[0] + [pool_op("head.pool", spec.c_out, size)]
    return ops + [fc_op("head.fc", space.last_conv, space.num_classes, bits=bits)]


def count_ops(arch):
    """Every op of `arch`, in network order."""
    space, ops = arch.space, stem_ops(arch.space)
    ids = arch.gene_ids()
    for p in range(space.num_positions):
        ops += block_ops(space, p, **_arguments({name: v[p] for name, v in ids.items()}))
    return ops + head_ops(space)


_ARGUMENTS = {"blocks": "block_id", "channels": "channel_id"}    # block_ops' names of gene groups


def _arguments(genes):
    """block_ops' keyword arguments from one position's genes, {group name: id}."""
    return {_ARGUMENTS.get(name, name): i for name, i in genes.items()}


# ----- the lookup table -------------------------------------------------------------------------
def space_key(space):
    """A short hash of everything in the space definition (cache files are keyed by it)."""
    blob = json.dumps(space.to_dict(), sort_keys=True).encode()
    return f"{space.name}-{hashlib.sha1(blob).hexdigest()[:12]}"


def cache_dir():
    """Where tables are cached: $ONESHOT_NAS_CACHE, else ~/.cache/oneshot-nas."""
    return Path(os.environ.get("ONESHOT_NAS_CACHE", Path.home() / ".cache" / "oneshot-nas"))


class LookupTable:
    """Counts per position and value of its genes (block, channel, and the bit ids of a quantized
    space) plus the fixed stem and head; `count(arch)` sums them.

    `table[p, k]` holds the COUNT_FIELDS of position p with the genes whose flat index (C order over
    the space's gene groups: b * num_scales + c for a float space) is k, so one fancy index and one
    sum give every metric of an architecture.
    """

    def __init__(self, space, table, fixed):
        self.space = space
        self.sizes = tuple(g.size for g in space.gene_groups)
        self.table = np.asarray(table, dtype=np.int64)     # (positions, prod(sizes), fields)
        self.fixed = np.asarray(fixed, dtype=np.int64)     # (fields,)
        if self.table.shape != (space.num_positions, int(np.prod(self.sizes)), len(COUNT_FIELDS)):
            raise ValueError(f"a table of shape {self.table.shape} is not one of space {space.name!r}")
        self._rows = np.arange(space.num_positions)
        self._tuples = [[tuple(int(v) for v in row) for row in position] for position in self.table]
        self._fixed = tuple(int(v) for v in self.fixed)

    @classmethod
    def build(cls, space):
        space = get_space(space)
        cells = list(itertools.product(*(range(g.size) for g in space.gene_groups)))
        names = [g.name for g in space.gene_groups]
        table = [[Counts.of(block_ops(space, p, **_arguments(dict(zip(names, genes))))).as_tuple()
                  for genes in cells]
                 for p in range(space.num_positions)]
        fixed = (Counts.of(stem_ops(space)) + Counts.of(head_ops(space))).as_tuple()
        return cls(space, table, fixed)

    @classmethod
    def load(cls, space, directory=None):
        """The table for `space`, from the on-disk cache if it is there, else built and cached."""
        space = get_space(space)
        path = Path(directory or cache_dir()) / "lookup" / f"{space_key(space)}.npz"
        if path.is_file():
            try:
                data = np.load(path)
                return cls(space, data["table"], data["fixed"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged (or older, with other fields) cache entry is rebuilt below
        table = cls.build(space)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, table=table.table, fixed=table.fixed)
        os.replace(tmp, path)
        return table

    def count(self, arch):
        """Counts of `arch`: 20 table rows summed field by field (plain Python: for one architecture
        at a time that is faster than NumPy's per-call overhead)."""
        picked = [row[k] for row, k in zip(self._tuples, self._flat(arch.gene_ids().values()))]
        return Counts(*(sum(column) + f for column, f in zip(zip(*picked), self._fixed)))

    def _flat(self, ids):
        """The flat cell index of each position, from one id sequence (or array) per gene group."""
        flat = 0
        for group_ids, size in zip(ids, self.sizes):
            flat = flat * size + np.asarray(group_ids)
        return flat

    def count_many(self, blocks, channels, *more):
        """Counts of many architectures at once: `blocks`, `channels` (and the further gene groups
        of the space, in order) are (N, positions) id arrays."""
        if len(more) != len(self.sizes) - 2:
            raise ValueError(f"space {self.space.name!r} has {len(self.sizes)} gene groups; give ids for each")
        idx = self._flat((blocks, channels) + more)
        return self.table[self._rows, idx].sum(axis=1) + self.fixed   # (N, fields)

    def field(self, name):
        return COUNT_FIELDS.index(name)


def micronet_score(counts, bits=32, reference=MOBILENETV2_14):
    """MicroNet score params/6.9M + flops/1170M. At 16 or 8 bits, quantizable params and mults count
    bits/32 of themselves; adds and everything non-quantizable stay 32-bit (32-bit accumulators)."""
    ratio = bits / 32
    params = counts.params - counts.q_params + ratio * counts.q_params
    flops = counts.adds + counts.mults - counts.q_mults + ratio * counts.q_mults
    return params / reference[0] + flops / reference[1]
