"""The search score of a candidate: its accuracy, or accuracy traded against one of its costs."""
from dataclasses import dataclass

from ..cost.model import format_value
from ..errors import UserError

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
    def make(cls, kind, limits, choices, metric="macs", weight=0.1):
        """The objective `kind` under `limits` (cost.limits.Limits) over the genes `choices`."""
        if kind not in OBJECTIVES:
            raise UserError(f"unknown objective {kind!r}; choose one of: {', '.join(OBJECTIVES)}",
                            settings="objective")
        limits.costs.index(metric)                 # an unknown cost fails here
        if kind == "acc":
            return cls("acc", metric, 0.0)
        lo, hi = limits.bounds(metric, choices)
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
        lo, hi = format_value(self.lo, self.metric), format_value(self.hi, self.metric)
        return f"accuracy - {self.weight:g} x ({self.metric} - {lo}) / ({hi} - {lo})"
