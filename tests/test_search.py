"""Search strategies on made-up tabular benchmarks (no MXNet), and the search objective."""
import numpy as np
import pytest

from oneshot_nas.cost.limits import Limits, Verdict
from oneshot_nas.cost.model import CostModel
from oneshot_nas.errors import UserError
from oneshot_nas.search.objective import Objective
from oneshot_nas.search.strategies import first_feasible, genetic_search, random_search
from oneshot_nas.space import get_space


class Bench:
    """A tabular benchmark: 12 genes of 5 values, an additive score with pairwise interactions,
    and an additive cost that the budget limits."""

    def __init__(self, seed, genes=12, values=5, budget=0.45):
        r = np.random.default_rng(seed)
        self.choices = [values] * genes
        self.gain = r.normal(size=(genes, values))
        self.pair = r.normal(scale=0.5, size=(genes - 1, values, values))
        self.cost = r.random((genes, values))
        self.limit = budget * self.cost.max(axis=1).sum() + (1 - budget) * self.cost.min(axis=1).sum()
        self.calls = []

    def score(self, genes):
        self.calls.append(tuple(genes))
        g = np.asarray(genes)
        return float(self.gain[np.arange(len(g)), g].sum()
                     + sum(self.pair[i, g[i], g[i + 1]] for i in range(len(g) - 1)))

    def spend(self, genes):
        return float(self.cost[np.arange(len(genes)), np.asarray(genes)].sum())

    def feasible(self, genes):
        c = self.spend(genes)
        return Verdict(c <= self.limit, {"cost": c}, max(0.0, c - self.limit), ("cost <= limit",))


GA = dict(population=20, generations=10, topk=5, crossover_num=8, mutation_num=8, mutation_prob=0.15)


def test_genetic_beats_random_at_equal_budget():
    ga, rs = [], []
    for seed in range(8):
        bench = Bench(seed)
        h = genetic_search(bench.choices, np.random.default_rng(seed), score_fn=bench.score,
                           constraint_fn=bench.feasible, **GA)
        ga.append(h.best["score"])
        n_ga = len(bench.calls)
        bench.calls.clear()
        h = random_search(bench.choices, np.random.default_rng(seed), score_fn=bench.score,
                          constraint_fn=bench.feasible, population=20, generations=10)
        rs.append(h.best["score"])
        assert len(bench.calls) == n_ga == 200           # equal budgets
    assert np.mean(ga) > np.mean(rs) + 0.5, (ga, rs)
    assert sum(g > r for g, r in zip(ga, rs)) >= 6


@pytest.mark.parametrize("strategy", ["genetic", "random"])
def test_constraints_hold_and_each_candidate_is_scored_once(strategy):
    bench = Bench(1, budget=0.35)
    kwargs = GA if strategy == "genetic" else dict(population=20, generations=10)
    search = genetic_search if strategy == "genetic" else random_search
    h = search(bench.choices, np.random.default_rng(3), score_fn=bench.score,
               constraint_fn=bench.feasible, **kwargs)
    assert all(bench.spend(r["genes"]) <= bench.limit for r in h.records)
    keys = [r["key"] for r in h.records]
    assert len(set(keys)) == len(keys) == len(bench.calls) == 200
    assert sorted(bench.calls) == sorted(tuple(r["genes"]) for r in h.records)
    assert [len(g) for g in h.generations] == [20] * 10
    summary = h.summary()
    assert summary[-1]["best_so_far"] == h.best["score"] == max(r["score"] for r in h.records)
    assert all(a["best_so_far"] <= b["best_so_far"] for a, b in zip(summary, summary[1:]))


def test_genetic_children_come_from_the_best_parents():
    """With mutation only, at low probability, every later candidate is one or two genes away from
    a candidate scored before it (random fill disabled by population == mutation count)."""
    bench = Bench(2)
    h = genetic_search(bench.choices, np.random.default_rng(0), score_fn=bench.score, population=10,
                       generations=4, topk=3, crossover_num=0, mutation_num=10, mutation_prob=0.1)
    for g in range(1, len(h.generations)):
        before = [np.array(r["genes"]) for gen in h.generations[:g] for r in gen]
        top = sorted(before, key=lambda x: -bench.score(tuple(x)))[:3]
        for r in h.generations[g]:
            assert min(np.sum(np.array(r["genes"]) != t) for t in top) <= 4


def test_resume_replays_the_stopped_search_without_rescoring():
    full = Bench(4)
    reference = genetic_search(full.choices, np.random.default_rng(7), score_fn=full.score,
                               constraint_fn=full.feasible, **GA)

    bench, saved = Bench(4), []

    class Stop(Exception):
        pass

    def flaky(batch):                      # dies in the middle of generation 4
        if len(saved) + len(batch) > 75:
            raise Stop
        return [bench.score(g) for g in batch]
    with pytest.raises(Stop):
        genetic_search(bench.choices, np.random.default_rng(7), score_many=flaky,
                       constraint_fn=bench.feasible, on_scored=saved.extend, **GA)
    assert len(saved) == 60
    cache = {r["key"]: {"score": r["score"]} for r in saved}
    bench.calls.clear()
    resumed = genetic_search(bench.choices, np.random.default_rng(7), score_fn=bench.score,
                             constraint_fn=bench.feasible, cache=cache, **GA)
    assert [(r["key"], r["score"], r["generation"]) for r in resumed.records] == \
           [(r["key"], r["score"], r["generation"]) for r in reference.records]
    assert len(bench.calls) == 200 - 60
    assert not set(bench.calls) & {tuple(r["genes"]) for r in saved}


def test_infeasible_budget_fails_with_the_nearest_values():
    bench = Bench(5)
    impossible = lambda genes: Verdict(False, {"cost": bench.spend(genes)},  # noqa: E731
                                       bench.spend(genes), ("cost <= 0",))
    with pytest.raises(UserError, match=r"gave up after 300 random candidates: none met cost <= 0\. "
                                        r"The nearest seen had cost \d"):
        genetic_search(bench.choices, np.random.default_rng(0), score_fn=bench.score,
                       constraint_fn=impossible, max_tries=300, **GA)
    with pytest.raises(UserError, match="gave up after 50"):
        random_search(bench.choices, np.random.default_rng(0), score_fn=bench.score,
                      constraint_fn=lambda g: False, max_tries=50)
    with pytest.raises(UserError, match="gave up after 70 random candidates: none met cost <= 0"):
        first_feasible(bench.choices, np.random.default_rng(0), impossible, max_tries=70)
    assert not bench.calls
    assert bench.feasible(first_feasible(bench.choices, np.random.default_rng(0), bench.feasible)).ok


def test_frozen_genes_never_change():
    bench = Bench(6)
    choices = [(3,) if i % 3 == 0 else 5 for i in range(12)]     # every third gene frozen at 3
    h = genetic_search(choices, np.random.default_rng(1), score_fn=bench.score, **GA)
    genes = np.array([r["genes"] for r in h.records])
    assert (genes[:, ::3] == 3).all()
    assert len({tuple(g) for g in genes[:, 1::3]}) > 50          # the free genes do move
    allowed = [(1, 4)] * 12                                        # a subset of values per gene
    h = random_search(allowed, np.random.default_rng(1), score_fn=bench.score, population=10,
                      generations=2)
    assert set(np.unique([r["genes"] for r in h.records])) == {1, 4}


def test_an_exhausted_space_ends_the_search_early():
    h = genetic_search([2, 2], np.random.default_rng(0), score_fn=lambda g: float(sum(g)),
                       population=3, generations=5, topk=2, crossover_num=2, mutation_num=2,
                       max_tries=50)
    assert sorted(tuple(r["genes"]) for r in h.records) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert h.stopped and len(h.generations) == 2
    assert h.best["score"] == 2.0


# ----- the objective ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def costs():
    return CostModel(get_space("tiny"))


def test_balanced_objective(costs):
    choices = costs.space.gene_choices()
    lo, hi = costs.extremes("macs", choices)
    cons = Limits(costs, {"macs": (None, (lo + hi) / 2)})
    obj = Objective.make("balanced", cons, choices, weight=0.2)
    assert (obj.lo, obj.hi) == (lo, (lo + hi) / 2)
    assert obj(0.5, {"macs": lo}) == 0.5 and obj(0.5, {"macs": obj.hi}) == pytest.approx(0.3)
    assert Objective.make("acc", cons, choices)(0.7, {"macs": hi}) == 0.7
    with pytest.raises(UserError, match="unknown objective"):
        Objective.make("fast", cons, choices)


def test_pareto_front_keeps_only_undominated_candidates():
    from oneshot_nas.search.plots import pareto_front
    costs, values = [3, 1, 2, 2, 4, 5], [0.5, 0.1, 0.4, 0.3, 0.45, 0.7]
    assert pareto_front(costs, values) == [1, 2, 0, 5]
