"""Budgets: inclusive limits on the costs of cost/model.py, and the one parser of '300M' and 'LO:HI'.

`Limits(costs, {"macs": (lo, hi), ...})` is the one constraint type: supernet training samples paths
under it, the search keeps candidates under it, and both fail early, with the attainable range,
when a limit cannot be met by any architecture the genes allow. No MXNet here.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from .model import format_value

SUFFIXES = {"K": 1e3, "M": 1e6, "G": 1e9}


def parse_number(text, what="value"):
    """'330M', '3.5e6', '1.2G', '800K', '0.45M' -> float; anything else (NaN and infinities
    included) is a UserError naming `what`."""
    text = str(text).strip()
    scale = SUFFIXES.get(text[-1:].upper(), 1)
    try:
        value = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise UserError(f"{what} {text!r} is not a number (write e.g. 330M, 3.5M, 1.2G or 800K)") from None
    if not math.isfinite(value):
        raise UserError(f"{what} {text!r} is not a finite number")
    return value


def parse_range(text, what="range"):
    """'LO:HI' (either side may be empty) -> (lo, hi), with None for an open end."""
    if text is None:
        return None
    if ":" not in str(text):
        raise UserError(f"{what} {text!r} needs the form LO:HI, e.g. 250M:330M (one side may be empty)")
    lo, hi = (parse_number(p, what) if p.strip() else None for p in str(text).split(":", 1))
    if lo is not None and hi is not None and lo > hi:
        raise UserError(f"{what} {text!r}: the low end is above the high end")
    return lo, hi


@dataclass(frozen=True)
class Verdict:
    """Whether a candidate meets the limits. `violation` >= 0 measures how far outside it is (0 when
    `ok`); `values` are its measured costs and `reasons` the limits it breaks."""
    ok: bool
    values: dict = field(default_factory=dict)
    violation: float = 0.0
    reasons: tuple = ()


class Limits:
    """Inclusive limits {metric: (lo, hi)} (None for an open end) on the costs of `costs`;
    `limits(genes)` -> Verdict. An empty Limits accepts everything and is false."""

    def __init__(self, costs, limits=None):
        self.costs = costs
        self.limits = {}
        for k, bounds in (limits or {}).items():
            if bounds is None or tuple(bounds) == (None, None):
                continue
            lo, hi = bounds
            costs.index(k)                                   # an unknown cost fails here
            for v in (lo, hi):
                if v is not None and not math.isfinite(v):
                    raise UserError(f"the {k} limit {v} is not a finite number")
            if lo is not None and hi is not None and lo > hi:
                raise UserError(f"the {k} limits are crossed: minimum {format_value(lo, k)} > "
                                f"maximum {format_value(hi, k)}")
            self.limits[k] = (lo, hi)
        self._index = [(costs.index(k), k, lo, hi) for k, (lo, hi) in self.limits.items()]

    def __bool__(self):
        return bool(self.limits)

    def __call__(self, genes):
        values = self.costs.values(genes)
        violation, reasons, seen = 0.0, [], {}
        for i, k, lo, hi in self._index:
            v = float(values[i])
            seen[k] = v
            if hi is not None and v > hi:
                violation += (v - hi) / max(abs(hi), 1e-12)
                reasons.append(f"{k} <= {format_value(hi, k)}")
            elif lo is not None and v < lo:
                violation += (lo - v) / max(abs(lo), 1e-12)
                reasons.append(f"{k} >= {format_value(lo, k)}")
        return Verdict(not reasons, seen, violation, tuple(reasons))

    def accepts_values(self, values):
        """Verdicts (bool array) for an (N, metrics) array from CostModel.values_many."""
        ok = np.ones(len(values), dtype=bool)
        for i, _, lo, hi in self._index:
            if lo is not None:
                ok &= values[:, i] >= lo
            if hi is not None:
                ok &= values[:, i] <= hi
        return ok

    def unreachable(self, choices=None):
        """The first limit that no candidate allowed by `choices` can meet, as a message, or None."""
        for _, k, lo, hi in self._index:
            smallest, largest = self.costs.extremes(k, choices)
            if (hi is not None and hi < smallest) or (lo is not None and lo > largest):
                return (f"no architecture of space {self.costs.space.name!r} (with the genes left "
                        f"free) has {k} in [{format_value(lo, k)}, {format_value(hi, k)}]: they "
                        f"range from {format_value(smallest, k)} to {format_value(largest, k)}; "
                        "widen the budget")
        return None

    def check_feasible(self, choices=None):
        """Fail, with the attainable range, when one limit alone cannot be met by any candidate."""
        message = self.unreachable(choices)
        if message:
            raise UserError(message)

    def bounds(self, metric, choices=None):
        """The range a metric may take: its limits, open ends closed at the attainable extremes."""
        smallest, largest = self.costs.extremes(metric, choices)
        lo, hi = self.limits.get(metric, (None, None))
        return (smallest if lo is None else max(lo, smallest)), (largest if hi is None else min(hi, largest))

    def describe(self):
        parts = [f"{k} in [{format_value(lo, k)}, {format_value(hi, k)}]" for _, k, lo, hi in self._index]
        return " and ".join(parts) or "none"

    def to_dict(self):
        return {k: list(v) for k, v in self.limits.items()}
