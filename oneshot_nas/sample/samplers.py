"""Architecture samplers: uniform over the allowed genes, and under a budget by capped rejection.

A sampler is called with an explicit `numpy.random.Generator` and returns an Architecture. The
strolling sampler (even coverage of a budget) is in strolling.py; which sampler supernet training
uses at each epoch is decided in training.py.
"""
import numpy as np

from ..cost.model import format_value
from ..errors import UserError
from ..space import Architecture
from .stages import hold


class UniformSampler:
    """Uniform over block ids and an allowed set of channel ids (all by default), and over the
    space's further gene groups (a quantized space's bit widths).

    `channel_ids` narrows the channel genes: `(space.num_scales - 1,)` is block-only training at full
    width; the channel warm-up widens it epoch by epoch. `block_ids` (a tuple per position) narrows
    the block genes, e.g. to the blocks fastest on one device (HURRICANE); `fixed` ({position: one
    id per gene group}, stages.fixed_positions) holds positions at one choice of every gene group,
    e.g. the stage HURRICANE does not train.
    """

    def __init__(self, space, channel_ids=None, block_ids=None, fixed=None):
        self.space, self.block_ids, self.fixed = space, block_ids, dict(fixed or {})
        self.set_channel_ids(channel_ids)

    def set_channel_ids(self, channel_ids=None):
        ids = tuple(range(self.space.num_scales)) if channel_ids is None else tuple(channel_ids)
        if not ids or any(not 0 <= i < self.space.num_scales for i in ids):
            raise UserError(f"channel ids {ids} are not within 0..{self.space.num_scales - 1}")
        self.channel_ids = ids
        blocks = {} if self.block_ids is None else {"blocks": list(self.block_ids)}
        self.choices = hold(self.space, self.space.gene_choices(channels=ids, **blocks), self.fixed)   # for mutate()

    def __call__(self, rng):
        n, ids = self.space.num_positions, np.asarray(self.channel_ids)
        if self.block_ids is None:
            blocks = rng.integers(self.space.num_blocks, size=n)
        else:
            picks = rng.integers(np.array([len(allowed) for allowed in self.block_ids]))
            blocks = np.array([allowed[i] for allowed, i in zip(self.block_ids, picks)])
        channels = ids[rng.integers(len(ids), size=n)]
        # the space's further gene groups (bit widths), uniform, drawn after: a space without them
        # draws exactly what it always did
        more = {g.name: rng.integers(g.size, size=n) for g in self.space.gene_groups[2:]}
        drawn = {"blocks": blocks, "channels": channels, **more}
        for p, held in self.fixed.items():       # drawn, then held: the other positions' draws stay the same
            for group, i in zip(self.space.gene_groups, held, strict=True):
                drawn[group.name][p] = i
        return Architecture(self.space, **{k: v.tolist() for k, v in drawn.items()})


class RejectionSampler:
    """Draws from `base` until `limits` (cost.limits.Limits) accepts, giving up after `max_tries`
    with the range of costs it saw."""

    def __init__(self, base, limits, max_tries=10000):
        self.base, self.limits, self.max_tries = base, limits, max_tries
        limits.check_feasible(base.choices)

    def __call__(self, rng):
        seen = {k: [np.inf, -np.inf] for k in self.limits.limits}
        for _ in range(self.max_tries):
            arch = self.base(rng)
            verdict = self.limits(arch.genes)
            if verdict.ok:
                return arch
            for k, v in verdict.values.items():
                seen[k] = [min(seen[k][0], v), max(seen[k][1], v)]
        ranges = ", ".join(f"{k} from {format_value(lo, k)} to {format_value(hi, k)}"
                           for k, (lo, hi) in seen.items())
        raise UserError(f"gave up after {self.max_tries} samples: none had {self.limits.describe()} "
                        f"(seen: {ranges}); widen the budget")
