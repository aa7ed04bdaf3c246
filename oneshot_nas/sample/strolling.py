"""Strolling evolution: a constrained sampler whose samples cover the MACs x params budget evenly.

Uniform sampling plus rejection piles samples into the centre of the budget rectangle (a sum of 20
independent genes is nearly Gaussian), so the supernet's extreme paths are rarely trained. This
sampler cuts the rectangle into a grid and strolls through its cells in a shuffled cycle, one cell per
sample. For each target cell it evolves an architecture into it: parents are archive members nearest
the cell's centre, children are their mutations; every child inside the rectangle joins the archive of
its own cell (stepping stones for later targets). A cell that stays out of reach for `patience` visits
is dropped from the cycle.
"""
import numpy as np

from ..errors import UserError


class StrollingSampler:
    """Budget-constrained sampler over two costs (MACs x params) with even coverage. `base` supplies
    the allowed genes (a UniformSampler: its channel ids follow the warm-up schedule); `limits` is a
    cost.limits.Limits whose cost model gives the axes."""

    def __init__(self, base, limits, grid=(7, 8), mutation_prob=0.1, brood=8, tries=12,
                 archive_size=8, patience=3, warmup_samples=2000, axes=("macs", "params")):
        self.base, self.limits, self.costs = base, limits, limits.costs
        self.space = base.space
        self.grid, self.mutation_prob, self.brood, self.tries = tuple(grid), mutation_prob, brood, tries
        self.archive_size, self.patience, self.warmup_samples = archive_size, patience, warmup_samples
        self.axes = axes
        limits.check_feasible(base.choices)
        self.bounds = self._bounds()
        self.fields = [self.costs.index(a) for a in axes]
        self.archive = {}          # cell -> list of genes tuples
        self.failures = {}         # cell -> consecutive failed visits
        self.dead = set()
        self.cycle = []

    # ----- geometry ----------------------------------------------------------------------------
    def _bounds(self):
        """The rectangle: the budget's ranges, open ends closed at the attainable extremes."""
        bounds = []
        for axis in self.axes:
            lo, hi = self.limits.limits.get(axis, (None, None))
            smallest, largest = self.costs.extremes(axis, self.base.choices)
            bounds.append((smallest if lo is None else lo, largest if hi is None else hi))
        return bounds

    def _position(self, values):
        """Normalised coordinates in grid units (cell (i, j) spans [i, i+1) x [j, j+1)); `values`
        is (..., 2) in the units of `axes`."""
        lo = np.array([b[0] for b in self.bounds], dtype=float)
        span = np.array([max(b[1] - b[0], 1) for b in self.bounds], dtype=float)
        return (np.asarray(values, dtype=float) - lo) / span * np.array(self.grid)

    def _cell(self, pos):
        if any(p < 0 or p > n for p, n in zip(pos, self.grid)):
            return None
        return tuple(min(int(p), n - 1) for p, n in zip(pos, self.grid))

    def _measure(self, genes):
        """(costs on `axes`, budget verdict) of an (N, genes) array of candidates."""
        values = self.costs.values_many(genes)
        return values[:, self.fields], self.limits.accepts_values(values)

    # ----- the archive -------------------------------------------------------------------------
    def _add(self, genes, cell, rng):
        members = self.archive.setdefault(cell, [])
        if genes in members:
            return
        if len(members) >= self.archive_size:
            members.pop(int(rng.integers(len(members))))
        members.append(genes)

    def _seed(self, rng):
        """Fill the archive from uniform samples until something lies inside the rectangle."""
        for start in range(0, self.warmup_samples, 200):
            genes = np.array([a.genes for a in (self.base(rng) for _ in range(200))])
            values, ok = self._measure(genes)
            for g, pos, good in zip(genes, self._position(values), ok):
                cell = self._cell(pos)
                if cell is not None and good:
                    self._add(tuple(int(v) for v in g), cell, rng)
            if self.archive:
                return
        raise UserError(f"strolling sampler: none of {self.warmup_samples} uniform samples met "
                        f"{self.limits.describe()}; widen the budget")

    def _next_target(self, rng):
        if not self.cycle:
            cells = [(i, j) for i in range(self.grid[0]) for j in range(self.grid[1])
                     if (i, j) not in self.dead]
            self.cycle = [cells[k] for k in rng.permutation(len(cells))]
        return self.cycle.pop()

    # ----- sampling ----------------------------------------------------------------------------
    def __call__(self, rng):
        if not self.archive:
            self._seed(rng)
        target = self._next_target(rng)
        centre = np.array(target) + 0.5
        members = [g for cell in self.archive.values() for g in cell]
        # the values each group of genes may take (the base allows the same ids at every position)
        allowed = {k: np.asarray(ids[0]) for k, ids in self.space.allowed_ids(self.base.choices).items()}
        for _ in range(self.tries):
            parents = np.array(members)
            dist = np.abs(self._position(self._measure(parents)[0]) - centre).sum(axis=1)
            # tournament: the nearest of a few random members, so the search keeps some variety
            picks = rng.integers(len(parents), size=(self.brood, 3))
            chosen = parents[picks[np.arange(self.brood), dist[picks].argmin(axis=1)]]
            children = chosen.copy()
            mask = self.space.split(rng.random(children.shape) < self.mutation_prob)
            for name, genes in self.space.split(children).items():     # views: written in place
                values = allowed[name]
                genes[:] = np.where(mask[name], values[rng.integers(len(values), size=genes.shape)], genes)
            hit = None
            values, ok = self._measure(children)
            for genes, pos, good in zip(children, self._position(values), ok):
                cell = self._cell(pos)
                genes = tuple(int(g) for g in genes)
                if cell is None or not good:
                    continue
                self._add(genes, cell, rng)
                members.append(genes)
                if cell == target and hit is None:
                    hit = genes
            if hit is not None:
                self.failures[target] = 0
                return self.space.decode(hit)
        self.failures[target] = self.failures.get(target, 0) + 1
        if self.failures[target] >= self.patience and target not in self.archive:
            self.dead.add(target)
        return self._fallback(target, rng)

    def _fallback(self, target, rng):
        """A member of the target cell if it has one, else of the nearest cell that has."""
        cells = list(self.archive)
        near = min(cells, key=lambda c: (abs(c[0] - target[0]) + abs(c[1] - target[1]), rng.random()))
        members = self.archive[near]
        return self.space.decode(members[int(rng.integers(len(members)))])

    def set_channel_ids(self, channel_ids):
        """Follow the channel warm-up: members with channels no longer allowed leave the archive."""
        self.base.set_channel_ids(channel_ids)
        allowed = set(self.base.channel_ids)
        for cell in list(self.archive):
            kept = [g for g in self.archive[cell] if set(self.space.split(g)["channels"]) <= allowed]
            if kept:
                self.archive[cell] = kept
            else:
                del self.archive[cell]
        self.dead.clear()
        self.failures.clear()
        self.cycle = []
        self.bounds = self._bounds()

    # ----- resumability ------------------------------------------------------------------------
    def state_dict(self):
        return {"archive": [[list(c), [list(g) for g in m]] for c, m in self.archive.items()],
                "failures": [[list(c), f] for c, f in self.failures.items()],
                "dead": [list(c) for c in self.dead], "cycle": [list(c) for c in self.cycle]}

    def load_state_dict(self, state):
        self.archive = {tuple(c): [tuple(g) for g in m] for c, m in state["archive"]}
        self.failures = {tuple(c): f for c, f in state["failures"]}
        self.dead = {tuple(c) for c in state["dead"]}
        self.cycle = [tuple(c) for c in state["cycle"]]
