"""What a candidate costs, what it may cost, and how accuracy is traded against cost.

Every metric of an architecture is a sum of one value per (position, block, channel) plus a fixed
stem + head part, so all of them come from one lookup array in microseconds, and the exact smallest
and largest value over the allowed genes is a per-position min/max (no sampling needed to tell that
a budget is out of reach). Metrics, each with a named unit:
- `macs`: the papers' multiply-accumulates ("FLOPs" in SPOS/OneShot tables), per image;
- `params`: every trainable parameter (BN included), as the papers count them;
- `score`: the MicroNet score params/P_ref + (mults + adds)/F_ref against a baseline network;
- `latency_ms`: predicted by a latency table (stem + head + one entry per block), when given.
No MXNet here: constraints run on genes alone.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .counting import MOBILENETV2_14, Counts, LookupTable, count_ops
from ..errors import UserError
from ..search.strategies import Verdict

METRICS = ("macs", "params", "score", "latency_ms")
BASELINES = ("oneshot", "mobilenetv2-1.4", "mobilenetv3-large")
ROOT = Path(__file__).resolve().parents[2]


# ----- MicroNet baselines -------------------------------------------------------------------------
def micronet_reference(name):
    """(params, mults + adds) of a MicroNet baseline, in MicroNet units (folded BN)."""
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
            raise UserError(f"--baseline mobilenetv3-large needs oneshot_nas/profile.py (the graph "
                            f"profiler), which cannot be imported here ({err}); use --baseline "
                            "mobilenetv2-1.4 or oneshot") from None
        counts = gluoncv_counts("mobilenetv3_large", 224)
        return float(counts.params), float(counts.flops)
    raise UserError(f"unknown --baseline {name!r}; choose one of: {', '.join(BASELINES)}")


# ----- latency tables -----------------------------------------------------------------------------
@dataclass
class LatencyModel:
    """Predicted latency in ms: stem_ms + head_ms + sum of blocks_ms[position][block][channel]."""
    blocks_ms: np.ndarray          # (positions, blocks, scales)
    fixed_ms: float
    device: str = ""

    @classmethod
    def load(cls, path, space):
        """Read a latency table (latency.LatencyTable's file, format oneshot-nas-latency-v1) and
        check that it was measured for `space`. (latency.py imports MXNet, hence the late import.)"""
        from .latency import LatencyTable
        table = LatencyTable.load(path, space)
        return cls(table.blocks_ms, table.stem_ms + table.head_ms, str(table.device))


# ----- costs --------------------------------------------------------------------------------------
class CostModel:
    """All metrics of architectures of one space, from one (positions, blocks, scales, metrics)
    array. `reference` is the MicroNet baseline (params, flops) and `bits` the MicroNet precision."""

    def __init__(self, space, table=None, reference=MOBILENETV2_14, bits=32, latency=None):
        table = table or LookupTable.load(space)
        self.space, self.n = space, space.num_positions
        shape = (space.num_positions, space.num_blocks, space.num_scales)
        f = {k: table.table[:, :, table.field(k)].reshape(shape).astype(float) for k in
             ("macs", "paper_params", "params", "mults", "adds", "q_params", "q_mults")}
        fixed = {k: float(table.fixed[table.field(k)]) for k in f}
        ratio = bits / 32

        def score(t):   # counting.micronet_score, term by term (it is linear in the counts)
            return ((t["params"] - (1 - ratio) * t["q_params"]) / reference[0]
                    + (t["adds"] + t["mults"] - (1 - ratio) * t["q_mults"]) / reference[1])
        columns = [f["macs"], f["paper_params"], score(f)]
        constants = [fixed["macs"], fixed["paper_params"], score(fixed)]
        self.metrics = list(METRICS[:3])
        if latency is not None:
            columns.append(latency.blocks_ms)
            constants.append(latency.fixed_ms)
            self.metrics.append("latency_ms")
        self.array = np.stack(columns, axis=-1)            # (P, B, S, M)
        self.fixed = np.asarray(constants)
        self._rows = np.arange(self.n)

    def values(self, genes):
        """Every metric of one candidate (genes = block ids then channel ids) as a float array."""
        g = np.asarray(genes)
        return self.array[self._rows, g[:self.n], g[self.n:]].sum(axis=0) + self.fixed

    def measure(self, genes):
        return {k: float(v) for k, v in zip(self.metrics, self.values(genes))}

    def extremes(self, metric, choices):
        """Exact (smallest, largest) of `metric` over genes allowed by `choices`."""
        m, lo, hi = self.metrics.index(metric), 0.0, 0.0
        for p in range(self.n):
            blocks, channels = _allowed(choices[p]), _allowed(choices[self.n + p])
            cell = self.array[p][np.ix_(blocks, channels)][..., m]
            lo, hi = lo + cell.min(), hi + cell.max()
        return lo + self.fixed[m], hi + self.fixed[m]


def _allowed(choice):
    return np.arange(choice) if isinstance(choice, (int, np.integer)) else np.asarray(choice)


class Constraints:
    """Inclusive limits {metric: (lo, hi)} (None for an open end); called on genes -> Verdict."""

    def __init__(self, costs, limits):
        unknown = sorted(set(limits) - set(costs.metrics))
        if unknown:
            hint = " (give --latency-table for latency limits)" if "latency_ms" in unknown else ""
            raise UserError(f"cannot limit {unknown}: the metrics are {', '.join(costs.metrics)}{hint}")
        self.costs = costs
        self.limits = {k: v for k, v in limits.items() if v is not None and v != (None, None)}
        for k, (lo, hi) in self.limits.items():
            if lo is not None and hi is not None and lo > hi:
                raise UserError(f"the {k} limits are crossed: minimum {lo} > maximum {hi}")
        self._index = [(costs.metrics.index(k), k, lo, hi) for k, (lo, hi) in self.limits.items()]

    def __call__(self, genes):
        values = self.costs.values(genes)
        violation, reasons, seen = 0.0, [], {}
        for i, k, lo, hi in self._index:
            v = float(values[i])
            seen[k] = v
            if hi is not None and v > hi:
                violation += (v - hi) / max(abs(hi), 1e-12)
                reasons.append(f"{k} <= {_num(hi, k)}")
            elif lo is not None and v < lo:
                violation += (lo - v) / max(abs(lo), 1e-12)
                reasons.append(f"{k} >= {_num(lo, k)}")
        return Verdict(not reasons, seen, violation, tuple(reasons))

    def check_feasible(self, choices):
        """Fail, with the attainable range, when one limit alone cannot be met by any candidate."""
        for _, k, lo, hi in self._index:
            smallest, largest = self.costs.extremes(k, choices)
            if (hi is not None and hi < smallest) or (lo is not None and lo > largest):
                raise UserError(f"no architecture of space {self.costs.space.name!r} (with the genes "
                                f"left free) has {k} in [{_num(lo, k)}, {_num(hi, k)}]: they range from "
                                f"{_num(smallest, k)} to {_num(largest, k)}; widen the budget")

    def describe(self):
        parts = [f"{k} in [{_num(lo, k)}, {_num(hi, k)}]" for _, k, lo, hi in self._index]
        return " and ".join(parts) or "none"


def _num(v, metric="score"):
    """A limit or value for messages: counts in millions, scores and milliseconds as they are."""
    if v is None:
        return "any"
    return f"{v / 1e6:.4g}M" if metric in ("macs", "params") else f"{v:.4g}"


# ----- objectives ---------------------------------------------------------------------------------
OBJECTIVES = ("acc", "balanced")


@dataclass(frozen=True)
class Objective:
    """The search score of a candidate from its accuracy and costs.

    'acc': top-1 accuracy on the search split (a fraction in [0, 1]).
    'balanced': accuracy - weight * normalised cost, where the normalised cost is
    (metric - lo) / (hi - lo) in [0, 1] over the range [lo, hi] the budget allows for that metric
    (the exact extremes over the free genes where the budget leaves it open). With the default
    weight 0.1, the most expensive candidate must be 10 accuracy points better than the cheapest
    to win.
    """
    kind: str = "acc"
    metric: str = "macs"
    weight: float = 0.1
    lo: float = 0.0
    hi: float = 1.0

    @classmethod
    def make(cls, kind, constraints, choices, metric="macs", weight=0.1):
        if kind not in OBJECTIVES:
            raise UserError(f"unknown --objective {kind!r}; choose one of: {', '.join(OBJECTIVES)}")
        if metric not in constraints.costs.metrics:
            raise UserError(f"--cost-metric {metric!r}: choose one of {', '.join(constraints.costs.metrics)}")
        if kind == "acc":
            return cls("acc", metric, 0.0)
        lo, hi = constraints.costs.extremes(metric, choices)
        limit = constraints.limits.get(metric, (None, None))
        lo = lo if limit[0] is None else max(lo, limit[0])
        hi = hi if limit[1] is None else min(hi, limit[1])
        return cls("balanced", metric, float(weight), float(lo), float(hi))

    def normalised_cost(self, values):
        return (values[self.metric] - self.lo) / max(self.hi - self.lo, 1e-12)

    def __call__(self, accuracy, values):
        if self.kind == "acc":
            return float(accuracy)
        return float(accuracy) - self.weight * self.normalised_cost(values)

    def describe(self):
        if self.kind == "acc":
            return "top-1 accuracy"
        lo, hi = _num(self.lo, self.metric), _num(self.hi, self.metric)
        return f"accuracy - {self.weight:g} x ({self.metric} - {lo}) / ({hi} - {lo})"
