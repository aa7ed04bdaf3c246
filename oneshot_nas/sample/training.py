"""Which path the supernet trains at each step, epoch by epoch.

Uniform over blocks and the channel ids the schedule allows this epoch; optionally under a MACs /
params budget, by capped rejection or by the strolling sampler (even coverage of the budget); or
from a learned distribution (PARSEC / FP-NAS, learned.py), by rejection under a budget. A
budget that no architecture can meet with every scale allowed fails at start. During block search
and the early channel warm-up the allowed widths may make a budget unreachable (e.g. at scale 2.0
every path is far above 330M MACs): those epochs train unconstrained, and the schedule printed at
start says so.
"""
import numpy as np

from ..errors import UserError
from .samplers import RejectionSampler, UniformSampler
from .strolling import StrollingSampler

SAMPLERS = ("uniform", "strolling")


class PathSampler:
    """`sampler(rng)` -> Architecture; `start_epoch(channel_ids)` follows the channel schedule.
    `limits` (cost.limits.Limits, may be empty) is the budget of the sampled paths."""

    def __init__(self, space, limits=None, kind="uniform", learned=None, block_ids=None, fixed=None):
        if kind not in SAMPLERS:
            raise UserError(f"constraint sampler {kind!r} is unknown; choose one of {', '.join(SAMPLERS)}")
        if learned is not None and kind == "strolling":
            raise UserError("a learned distribution draws the paths itself: it cannot also stroll over the "
                            "budget; leave out --constraint-sampler strolling", settings="constraint_sampler")
        if (block_ids is not None or fixed) and kind == "strolling":
            raise UserError("the strolling sampler mutates every position within the same choices; with "
                            "--device-blocks or --free-positions (other choices at other positions) leave out "
                            "--constraint-sampler strolling", settings="constraint_sampler")
        self.learned = learned      # a LearnedDistribution: the paths come from it (PARSEC / FP-NAS)
        self.space, self.limits, self.kind = space, limits, kind
        # every scale allowed: the budget must fit here; blocks per position and held positions stay
        self.base = UniformSampler(space, block_ids=block_ids, fixed=fixed)
        self.rejection = self.strolling = self.from_learned = self.learned_rejection = None
        if learned is not None:
            self.from_learned = _FromDistribution(self.base, learned)
        if limits:
            self.rejection = RejectionSampler(self.base, limits)
            if learned is not None:
                self.learned_rejection = RejectionSampler(self.from_learned, limits)
            if kind == "strolling":
                self.strolling = StrollingSampler(self.base, limits)
        self.constrained = False

    def budget_reachable(self, channel_ids):
        return bool(self.limits) and self.limits.unreachable(self.space.gene_choices(channels=channel_ids)) is None

    def start_epoch(self, channel_ids):
        """Allow `channel_ids` from now on; returns whether the budget applies to them."""
        self.constrained = self.budget_reachable(channel_ids)
        if self.constrained and self.strolling is not None:
            self.strolling.set_channel_ids(channel_ids)   # also narrows self.base
        else:
            self.base.set_channel_ids(channel_ids)
        if self.learned is not None:
            self.learned.allow(self.base.choices)
        return self.constrained

    @property
    def block_ids(self):
        """Per position, the blocks allowed (None: all)."""
        return self.base.block_ids

    @property
    def fixed(self):
        """{position: (block, channel)} held (HURRICANE's stages)."""
        return self.base.fixed

    def __call__(self, rng):
        if self.learned is not None:
            return (self.learned_rejection if self.constrained else self.from_learned)(rng)
        if not self.constrained:
            return self.base(rng)
        return (self.strolling or self.rejection)(rng)

    def validation_paths(self, count, rng):
        """`count` paths for validation, drawn without touching the training sampler's state."""
        draw = self.rejection if self.constrained else self.base
        return [draw(rng) for _ in range(count)]

    def describe(self, plan):
        """Whether the budget applies in each distinct stage of the channel schedule."""
        if self.learned is not None:
            text = "paths from a learned distribution (PARSEC / FP-NAS)"
            return text + (f" under {self.limits.describe()} by rejection" if self.limits else "")
        if not self.limits:
            return "constraint: none (uniform paths)"
        off = sorted({e for e, ids in enumerate(plan) if not self.budget_reachable(ids)})
        text = f"constraint: {self.limits.describe()} by {self.kind} sampling"
        if off:
            text += (f"; unreachable with the widths allowed in epochs {_spans(off)}, "
                     "which train unconstrained")
        return text

    def state_dict(self):
        return {"strolling": self.strolling.state_dict() if self.strolling else None,
                **({"learned": self.learned.state_dict()} if self.learned is not None else {})}

    def load_state_dict(self, state):
        if self.strolling is not None and state.get("strolling") is not None:
            self.strolling.load_state_dict(state["strolling"])
        if self.learned is not None:
            self.learned.load_state_dict(state["learned"])


class _FromDistribution:
    """Draws from a LearnedDistribution, as a sampler (its allowed genes are the base sampler's)."""

    def __init__(self, base, learned):
        self.base, self.learned = base, learned

    @property
    def choices(self):
        return self.base.choices

    def __call__(self, rng):
        return self.base.space.decode(self.learned.sample(rng))


def _spans(epochs):
    """[0, 1, 2, 5] -> '0-2, 5'."""
    spans, start = [], epochs[0]
    for a, b in zip(epochs, epochs[1:] + [None]):
        if b != a + 1:
            spans.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(spans)


def fixed_paths(sampler, count, seed, channel_ids):
    """Validation paths that stay the same while the allowed channels do, so accuracy curves
    compare like with like from epoch to epoch."""
    rng = np.random.default_rng([seed, 7919] + list(channel_ids))
    return sampler.validation_paths(count, rng)
