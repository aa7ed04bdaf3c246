"""Architectures spread evenly over a cost range: equal-width bins, drawn uniformly within each bin.

A ranking study needs architectures from the whole range of a budget, not the crowd that uniform
sampling gives (of the uniform `tiny` draws under 0.45M MACs, 68% lie above 0.42M, 7% below 0.39M). So
a pool of uniform draws that meet the budget is binned by one cost into equal-width bins between
the smallest and largest value the pool reached, and each bin gives its share, drawn uniformly
among the distinct pool architectures in it (uniform genes conditioned on the bin). A bin with
fewer architectures than its share gives all it has; the bins giving fewest make up the difference. The
exact extremes of a cost (every block at its narrowest) are left out unless the pool reaches them:
a search meets them no more than the pool does. Every draw comes from the caller's Generator; no
MXNet here.
"""
from dataclasses import dataclass

import numpy as np

from ..cost.model import format_value
from ..errors import UserError

POOL = 200_000        # uniform draws the bins are filled from
CHUNK = 20_000        # draws costed at once


@dataclass(frozen=True)
class Stratified:
    """The chosen architectures (by cost, ascending) with their bin, and the bins' edges."""
    archs: tuple
    bins: tuple               # bin index of each architecture
    edges: tuple              # bins + 1 values of the cost
    metric: str
    pool: int                 # distinct pool architectures that met the budget
    shortfall: tuple          # bins that had fewer architectures than their share


def draw_genes(choices, rng, count):
    """(count, genes) uniform genes: `choices[i]` is a count of values or a sequence of them."""
    columns = []
    for c in choices:
        if isinstance(c, (int, np.integer)):
            columns.append(rng.integers(c, size=count))
        else:
            values = np.asarray(c)
            columns.append(values[rng.integers(len(values), size=count)])
    return np.stack(columns, axis=1).astype(np.int16)


def stratified_sample(limits, count, bins, rng, metric="macs", exclude=(), pool=POOL):
    """`count` distinct architectures that meet `limits` (cost.limits.Limits; its cost model says
    the space), stratified by `metric` over `bins` equal-width bins; none of `exclude`
    (architectures). Returns a Stratified."""
    costs = limits.costs
    space = costs.space
    if count < 1 or not 1 <= bins <= count:
        raise UserError(f"{count} architectures in {bins} bins: ask for at least one architecture and "
                        "between 1 and that many bins")
    limits.check_feasible()
    column = costs.index(metric)
    genes, values = [], []
    for start in range(0, pool, CHUNK):
        block = draw_genes(space.gene_choices(), rng, min(CHUNK, pool - start))
        v = costs.values_many(block)
        ok = limits.accepts_values(v)
        genes.append(block[ok])
        values.append(v[ok, column])
    genes, values = np.concatenate(genes), np.concatenate(values)
    genes, first = np.unique(genes, axis=0, return_index=True)
    values = values[first]
    # excluded architectures stay in the pool and are swapped out after the draw, so that adding an
    # --include to a table changes none of its other draws (and its cached units stay valid)
    skip = {tuple(a.genes) for a in exclude}
    skipped = np.array([tuple(g) in skip for g in genes.tolist()], dtype=bool)
    if len(genes) - skipped.sum() < count:
        raise UserError(f"only {len(genes) - skipped.sum()} distinct architectures of {pool:,} uniform draws meet the budget "
                        f"({limits.describe()}), fewer than the {count} asked for; widen the budget or ask "
                        "for fewer architectures")
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, bins + 1)
    where = np.clip(((values - lo) / (hi - lo) * bins).astype(int) if hi > lo else np.zeros(len(values), int),
                    0, bins - 1)
    members = [np.flatnonzero(where == b) for b in range(bins)]
    share = np.full(bins, count // bins)
    share[rng.choice(bins, count % bins, replace=False)] += 1
    have = np.array([int((~skipped[m]).sum()) for m in members])
    short = tuple(int(b) for b in np.flatnonzero(have < share))
    take = np.minimum(share, have)
    while take.sum() < count:               # one more from the bin that gives fewest (and can spare one)
        spare = have - take
        open_bins = np.flatnonzero(spare > 0)
        take[min(open_bins, key=lambda b: (take[b], -spare[b]))] += 1
    chosen = np.concatenate([_draw(m, t, skipped, rng) for m, t in zip(members, take) if t])
    chosen = chosen[np.argsort(values[chosen], kind="stable")]
    archs = tuple(space.decode(tuple(int(g) for g in genes[i])) for i in chosen)
    return Stratified(archs, tuple(int(where[i]) for i in chosen), tuple(float(e) for e in edges), metric,
                      int(len(genes) - skipped.sum()), short)


def _draw(members, take, skipped, rng):
    """`take` of `members` (indices into the pool) drawn uniformly, none of them `skipped`: drawn
    among all members, then each skipped one replaced by a member not yet taken."""
    chosen = rng.choice(members, take, replace=False)
    bad = skipped[chosen]
    if bad.any():
        rest = np.setdiff1d(members[~skipped[members]], chosen[~bad])
        chosen[bad] = rng.choice(rest, int(bad.sum()), replace=False)
    return chosen


def describe(result):
    """One line: the bins, their range and how many each gave."""
    counts = np.bincount(result.bins, minlength=len(result.edges) - 1)
    text = (f"{len(result.archs)} architectures in {len(counts)} equal-width {result.metric} bins from "
            f"{format_value(result.edges[0], result.metric)} to {format_value(result.edges[-1], result.metric)} "
            f"(per bin: {', '.join(map(str, counts))}; pool of {result.pool:,} distinct architectures in budget)")
    if result.shortfall:
        text += f"; bins {', '.join(map(str, result.shortfall))} held fewer than their share"
    return text
