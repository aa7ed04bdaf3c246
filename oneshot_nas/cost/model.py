"""What an architecture costs: one record of named metrics, the same for training, search and profiling.

Every metric is linear in the op counts of `counting.py` (or, for latency, a sum of measured parts),
and each of those is a sum over positions of one value per position and value of its genes (block,
channel, and a quantized space's weight and activation bit ids) plus a fixed stem + head part. So
one (positions, blocks, scales[, wbits, abits], metrics) array gives every metric of an
architecture in microseconds, and the exact smallest and largest value over any allowed genes is a
per-position min/max (no sampling needed to tell that a budget is out of reach).

The metrics (a new cost is one registered function here; budgets, records and flags pick it up):
- `macs`: the papers' multiply-accumulates ("FLOPs" in SPOS/OneShot tables), per image;
- `params`: every trainable parameter (BN included), as the papers count them;
- `micronet_params`, `micronet_flops`: the MicroNet challenge's parameters (BN folded) and
  mults + adds;
- `micronet_score`: params/P_ref + (mults + adds)/F_ref against a baseline network, at `bits`;
- `latency_ms`: predicted by a latency table (stem + head + one entry per block), when given;
- `bitops`: of a quantized space only, MACs x weight bits x activation bits summed over the conv
  and FC layers, each at its own widths (counting.py).
No MXNet here.
"""
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import UserError
from .counting import MOBILENETV2_14, Counts, LookupTable, count_ops

BASELINES = ("oneshot", "mobilenetv2-1.4", "mobilenetv3-large")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str            # 'count' (printed in millions), 'ms' or 'score'
    description: str
    fn: object           # fn(counts, costs, part) -> value(s); `part` is 'blocks' or 'fixed'


METRICS = {}


def metric(name, unit, description):
    """Register a cost: `fn(counts, costs, part)` gets the count fields of counting.Counts (arrays
    over (position, block, scale) for part='blocks', scalars for the stem + head, part='fixed')
    and returns the metric for them, or None when this cost model cannot tell it."""
    def register(fn):
        METRICS[name] = Metric(name, unit, description, fn)
        return fn
    return register


@metric("macs", "count", "multiply-accumulates per image (the SPOS/OneShot papers' 'FLOPs')")
def _macs(c, costs, part):
    return c["macs"]


@metric("params", "count", "trainable parameters, BatchNorm included (the papers' count)")
def _params(c, costs, part):
    return c["paper_params"]


@metric("micronet_params", "count", "MicroNet parameters (BatchNorm folded into the conv before it)")
def _micronet_params(c, costs, part):
    return c["params"]


@metric("micronet_flops", "count", "MicroNet FLOPs: mults + adds per image")
def _micronet_flops(c, costs, part):
    return c["mults"] + c["adds"]


@metric("micronet_score", "score", "MicroNet score params/P_ref + FLOPs/F_ref at the given precision")
def _micronet_score(c, costs, part):
    # counting.micronet_score term by term (it is linear in the counts)
    keep = 1 - costs.bits / 32
    return ((c["params"] - keep * c["q_params"]) / costs.reference[0]
            + (c["adds"] + c["mults"] - keep * c["q_mults"]) / costs.reference[1])


@metric("latency_ms", "ms", "latency predicted by a latency table (stem + head + blocks)")
def _latency(c, costs, part):
    if costs.latency is None:
        return None
    table = costs.latency
    if part == "blocks":    # per (position, block, scale[, SE]): the same for every value of further genes
        return table.blocks_ms.reshape(table.blocks_ms.shape + (1,) * (np.ndim(c["macs"]) - table.blocks_ms.ndim))
    return table.stem_ms + table.head_ms


@metric("bitops", "count", "BitOps per image: MACs x weight bits x activation bits of each layer "
                           "(a quantized space only)")
def _bitops(c, costs, part):
    return c["bitops"] if costs.quantized else None


def micronet_reference(name):
    """(params, mults + adds) of a MicroNet baseline, in MicroNet units (folded BN)."""
    if isinstance(name, tuple):
        return name
    if name == "mobilenetv2-1.4":
        return MOBILENETV2_14
    if name == "oneshot":
        from ..space import load_architecture
        counts = Counts.of(count_ops(load_architecture(ROOT / "models" / "oneshot.json")))
        return float(counts.params), float(counts.flops)
    if name == "mobilenetv3-large":
        try:
            from .graph import gluoncv_counts
        except ImportError as err:
            raise UserError(f"the mobilenetv3-large baseline needs MXNet and gluoncv to count it "
                            f"({err}); use the baseline mobilenetv2-1.4 or oneshot") from None
        counts = gluoncv_counts("mobilenetv3_large", 224)
        return float(counts.params), float(counts.flops)
    raise UserError(f"unknown MicroNet baseline {name!r}; choose one of: {', '.join(BASELINES)}")


class CostModel:
    """Every metric of the architectures of one space. `reference` is a MicroNet baseline (a name
    of BASELINES or (params, flops)), `bits` the MicroNet precision, `latency` a
    latency.LatencyTable of this space (for `latency_ms`)."""

    def __init__(self, space, latency=None, reference="mobilenetv2-1.4", bits=32, table=None):
        table = table or LookupTable.load(space)
        self.space, self.latency, self.bits = space, latency, bits
        self.quantized = space.quantized
        self.reference = micronet_reference(reference)
        if latency is not None and latency.space != space:
            raise UserError(f"the latency table was measured for space {latency.space.name!r}, "
                            f"not {space.name!r}")
        shape = (space.num_positions,) + tuple(g.size for g in space.gene_groups)
        entries = {k: table.table[:, :, table.field(k)].reshape(shape).astype(float)
                   for k in Counts.__dataclass_fields__}
        fixed = {k: float(table.fixed[table.field(k)]) for k in entries}
        columns, constants, self.metrics = [], [], []
        for m in METRICS.values():
            column = m.fn(entries, self, "blocks")
            if column is not None:
                self.metrics.append(m.name)
                columns.append(np.broadcast_to(column, shape))
                constants.append(m.fn(fixed, self, "fixed"))
        self.metrics = tuple(self.metrics)
        self.array = np.stack(columns, axis=-1)            # (P, B, S[, W, A], M)
        self.fixed = np.asarray(constants, dtype=float)
        self._rows = np.arange(space.num_positions)

    def index(self, metric):
        if metric not in self.metrics:
            hint = {"latency_ms": " (it needs a latency table)",
                    "bitops": f" (space {self.space.name!r} has no bit-width genes: use a quantized space, "
                              "e.g. tiny4-q or tiny-q, or a space with bit_widths)"}.get(metric, "")
            raise UserError(f"unknown cost {metric!r}{hint}; the costs are {', '.join(self.metrics)}")
        return self.metrics.index(metric)

    def _cells(self, genes):
        """The array's cells of each position for `genes` (one candidate, or an (N, genes) array)."""
        ids = self.space.split(np.asarray(genes))
        return self.array[(self._rows,) + tuple(ids.values())]

    def values(self, genes):
        """Every metric of one candidate (genes, see SearchSpace.encode) as a float array."""
        return self._cells(genes).sum(axis=0) + self.fixed

    def values_many(self, genes):
        """(N, metrics) for an (N, genes) array of candidates."""
        return self._cells(genes).sum(axis=1) + self.fixed

    def measure(self, candidate):
        """{metric: value} of an Architecture or a gene tuple: the one cost record."""
        genes = candidate.genes if hasattr(candidate, "genes") else candidate
        return {k: float(v) for k, v in zip(self.metrics, self.values(genes))}

    def extremes(self, metric, choices=None):
        """Exact (smallest, largest) of `metric` over the genes allowed by `choices` (a
        SearchSpace.gene_choices list; default every gene free)."""
        m = self.index(metric)
        allowed = self.space.allowed_ids(choices or self.space.gene_choices())
        lo = hi = self.fixed[m]
        for p, ids in enumerate(zip(*allowed.values())):
            cell = self.array[p][np.ix_(*ids)][..., m]
            lo, hi = lo + cell.min(), hi + cell.max()
        return float(lo), float(hi)


def costs_of_counts(counts, reference="mobilenetv2-1.4", bits=32):
    """The cost record of any network's totals (a counting.Counts, e.g. from the graph profiler):
    the same metrics and names as CostModel.measure, without latency."""
    context = SimpleNamespace(reference=micronet_reference(reference), bits=bits, latency=None,
                              quantized=counts.bitops > 0)
    fields = {k: getattr(counts, k) for k in Counts.__dataclass_fields__}
    out = {}
    for m in METRICS.values():
        value = m.fn(fields, context, "fixed")
        if value is not None:
            out[m.name] = float(value)
    return out


def format_value(value, metric):
    """A cost for messages: counts in millions, milliseconds and scores as they are."""
    if value is None:
        return "any"
    unit = METRICS[metric].unit if metric in METRICS else "score"
    if unit == "count":
        return f"{value / 1e6:.3g}M"
    return f"{value:.4g}{' ms' if unit == 'ms' else ''}"
