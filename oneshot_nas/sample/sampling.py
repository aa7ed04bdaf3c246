"""Samplers of architectures: uniform, budget-constrained (capped rejection) and strolling evolution.

Every function takes an explicit `numpy.random.Generator`, so a run replays from its seed. Gene-level
operators (`random_genes`, `mutate`, `crossover`) work on any discrete gene space, given as the number
of choices per gene; an Architecture's genes are its 20 block ids followed by its 20 channel ids.
"""
from dataclasses import dataclass

import numpy as np

from ..cost.counting import COUNT_FIELDS
from ..errors import UserError
from ..space import Architecture


# ----- genes ------------------------------------------------------------------------------------
def _draw(choice, rng):
    """A uniform value of one gene: `choice` is a count (values 0..n-1) or a sequence of values."""
    if isinstance(choice, (int, np.integer)):
        return int(rng.integers(choice))
    return int(choice[rng.integers(len(choice))])


def random_genes(choices, rng):
    """One uniformly random value per gene; `choices[i]` is the number of values gene i can take,
    or a sequence of the values allowed."""
    return tuple(_draw(c, rng) for c in choices)


def mutate(genes, choices, rng, prob):
    """Each gene is redrawn uniformly from its allowed values with probability `prob`."""
    return tuple(_draw(c, rng) if rng.random() < prob else g for g, c in zip(genes, choices))


def crossover(a, b, rng):
    """Uniform crossover: each gene from either parent with equal probability."""
    return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))


def arch_genes(arch):
    return tuple(arch.blocks) + tuple(arch.channels)


def genes_arch(space, genes):
    n = space.num_positions
    return Architecture(space, genes[:n], genes[n:])


# ----- uniform ----------------------------------------------------------------------------------
class UniformSampler:
    """Uniform over block ids and an allowed set of channel ids (all by default).

    `channel_ids` narrows the channel genes: `(space.num_scales - 1,)` is block-only training at full
    width; the channel warm-up widens it epoch by epoch.
    """

    def __init__(self, space, channel_ids=None):
        self.space = space
        self.set_channel_ids(channel_ids)

    def set_channel_ids(self, channel_ids=None):
        ids = tuple(range(self.space.num_scales)) if channel_ids is None else tuple(channel_ids)
        if not ids or any(not 0 <= i < self.space.num_scales for i in ids):
            raise UserError(f"channel ids {ids} are not within 0..{self.space.num_scales - 1}")
        self.channel_ids = ids
        n = self.space.num_positions
        self.choices = (self.space.num_blocks,) * n + (ids,) * n   # per gene, for mutate()

    def __call__(self, rng):
        n, ids = self.space.num_positions, np.asarray(self.channel_ids)
        blocks = rng.integers(self.space.num_blocks, size=n)
        channels = ids[rng.integers(len(ids), size=n)]
        return Architecture(self.space, blocks.tolist(), channels.tolist())


# ----- budgets ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """Inclusive ranges on lookup-table counts, e.g. {'macs': (lo, hi), 'paper_params': (lo, hi)}.
    `None` for an open end."""
    ranges: tuple = ()

    @classmethod
    def of(cls, **ranges):
        unknown = sorted(set(ranges) - set(COUNT_FIELDS))
        if unknown:
            raise UserError(f"cannot budget {unknown}: budgets apply to {', '.join(COUNT_FIELDS)}")
        return cls(tuple((k, v) for k, v in ranges.items() if v is not None))

    def __bool__(self):
        return bool(self.ranges)

    def accepts(self, counts):
        return all((lo is None or getattr(counts, k) >= lo) and (hi is None or getattr(counts, k) <= hi)
                   for k, (lo, hi) in self.ranges)

    def accepts_array(self, counts, table):
        """Verdicts for an (N, fields) array of lookup-table counts."""
        ok = np.ones(len(counts), dtype=bool)
        for k, (lo, hi) in self.ranges:
            column = counts[:, table.field(k)]
            if lo is not None:
                ok &= column >= lo
            if hi is not None:
                ok &= column <= hi
        return ok

    def describe(self):
        return " and ".join(f"{k} in [{_fmt(lo)}, {_fmt(hi)}]" for k, (lo, hi) in self.ranges)


def _fmt(v):
    return "-inf" if v is None else f"{v / 1e6:.2f}M"


def parse_range(text, name):
    """'LO:HI' (either side may be empty; numbers may end in K, M or G) -> (lo, hi)."""
    def number(part):
        part = part.strip()
        if not part:
            return None
        scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(part[-1].upper(), 1)
        try:
            return float(part[:-1] if scale != 1 else part) * scale
        except ValueError:
            raise UserError(f"{name} {text!r}: {part!r} is not a number; write LO:HI, "
                            "e.g. 250M:330M") from None
    if text is None:
        return None
    if ":" not in text:
        raise UserError(f"{name} {text!r} needs the form LO:HI, e.g. 250M:330M (one side may be empty)")
    lo, hi = (number(p) for p in text.split(":", 1))
    if lo is not None and hi is not None and lo > hi:
        raise UserError(f"{name} {text!r}: the low end is above the high end")
    return lo, hi


def extremes(table, field, channel_ids=None):
    """Exact smallest and largest value of `field` over all architectures (with allowed channel ids):
    counts are sums over positions, so each position's min/max can be taken on its own."""
    space = table.space
    ids = np.arange(space.num_scales) if channel_ids is None else np.asarray(channel_ids)
    cols = (np.arange(space.num_blocks)[:, None] * space.num_scales + ids[None, :]).ravel()
    values = table.table[:, cols, table.field(field)]
    fixed = table.fixed[table.field(field)]
    return int(values.min(axis=1).sum() + fixed), int(values.max(axis=1).sum() + fixed)


def check_feasible(table, budget, channel_ids=None):
    """Fail early, with the attainable range, if a budget range cannot be met at all."""
    for field, (lo, hi) in budget.ranges:
        smallest, largest = extremes(table, field, channel_ids)
        if (hi is not None and hi < smallest) or (lo is not None and lo > largest):
            raise UserError(
                f"no architecture of space {table.space.name!r} has {field} in [{_fmt(lo)}, {_fmt(hi)}]: "
                f"the smallest has {_fmt(smallest)} and the largest {_fmt(largest)}; widen the range")


class RejectionSampler:
    """Draws from `base` until the budget accepts, giving up after `max_tries` with what it saw."""

    def __init__(self, base, table, budget, max_tries=10000):
        self.base, self.table, self.budget, self.max_tries = base, table, budget, max_tries
        check_feasible(table, budget, getattr(base, "channel_ids", None))

    def __call__(self, rng):
        seen = {k: [np.inf, -np.inf] for k, _ in self.budget.ranges}
        for _ in range(self.max_tries):
            arch = self.base(rng)
            counts = self.table.count(arch)
            if self.budget.accepts(counts):
                return arch
            for k in seen:
                v = getattr(counts, k)
                seen[k] = [min(seen[k][0], v), max(seen[k][1], v)]
        ranges = ", ".join(f"{k} from {_fmt(lo)} to {_fmt(hi)}" for k, (lo, hi) in seen.items())
        raise UserError(f"gave up after {self.max_tries} samples: none had {self.budget.describe()} "
                        f"(seen: {ranges}); widen the budget")
