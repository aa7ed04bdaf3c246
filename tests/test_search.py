"""Search strategies on made-up tabular benchmarks (no MXNet), and the search objective."""
import itertools
import logging

import numpy as np
import pytest

from oneshot_nas.cost.limits import Limits, Verdict
from oneshot_nas.cost.model import CostModel
from oneshot_nas.errors import UserError
from oneshot_nas.search.objective import Objective
from oneshot_nas.search.strategies import (first_feasible, fox_search, genetic_search, random_search, staged_search,
                                           regularized_search)
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
RE = dict(population=20, generations=10, sample_size=5)
STRATEGIES = {"genetic": (genetic_search, GA), "regularized": (regularized_search, RE),
              "random": (random_search, dict(population=20, generations=10)),
              "fox": (fox_search, dict(population=20, generations=10, anneal_steps=40)),
              "hurricane": (staged_search, dict(RE, stages=[list(range(6, 12)), list(range(6))]))}


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


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_constraints_hold_and_each_candidate_is_scored_once(strategy):
    bench = Bench(1, budget=0.35)
    search, kwargs = STRATEGIES[strategy]
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


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_replays_the_stopped_search_without_rescoring(strategy):
    search, kwargs = STRATEGIES[strategy]
    full = Bench(4)
    reference = search(full.choices, np.random.default_rng(7), score_fn=full.score,
                       constraint_fn=full.feasible, **kwargs)

    bench, saved = Bench(4), []

    class Stop(Exception):
        pass

    def flaky(batch):                      # dies in the middle of generation 4
        if len(saved) + len(batch) > 75:
            raise Stop
        return [bench.score(g) for g in batch]
    with pytest.raises(Stop):
        search(bench.choices, np.random.default_rng(7), score_many=flaky, constraint_fn=bench.feasible,
               on_scored=saved.extend, **kwargs)
    assert len(saved) == (75 if strategy in ("regularized", "hurricane") else 60)  # one child at a time
    cache = {r["key"]: {"score": r["score"]} for r in saved}
    bench.calls.clear()
    resumed = search(bench.choices, np.random.default_rng(7), score_fn=bench.score,
                     constraint_fn=bench.feasible, cache=cache, **kwargs)
    fields = ("key", "score", "generation", "origin")
    assert [[r[k] for k in fields] for r in resumed.records] == [[r[k] for k in fields] for r in reference.records]
    assert resumed.notes == reference.notes
    assert len(bench.calls) == 200 - len(saved)
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


def test_regularized_evolution_ages_out_the_oldest():
    """With the whole queue as the sample, each child's parent is the best of the last `population`
    candidates scored (the queue: the oldest left as each child came), one gene away; a candidate
    scored far better by luck is a parent only while it is in the queue."""
    bench, lucky = Bench(8), {}

    def score(genes):
        value = bench.score(genes)
        if not lucky:                          # the first candidate scores far above everyone
            lucky[genes] = value = 100.0
        return value
    h = regularized_search(bench.choices, np.random.default_rng(2), score_fn=score, population=10,
                           generations=4, sample_size=10)
    records = h.records
    assert [len(g) for g in h.generations] == [10] * 4 and all(r["origin"] == "mutation" for r in records[10:])
    for t, child in enumerate(records[10:]):
        queue = records[t:t + 10]
        parent = max(queue, key=lambda r: r["score"])
        assert np.sum(np.array(child["genes"]) != parent["genes"]) == 1
    assert np.sum(np.array(records[10]["genes"]) != records[0]["genes"]) == 1     # lucky's child
    assert h.best["score"] == 100.0 and h.notes[1]["seen_draws"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_regularized_evolution_finds_the_optimum_of_an_easy_table(seed):
    r = np.random.default_rng(seed)
    gain = r.normal(size=(6, 4))                             # additive: 4,096 members, one optimum
    h = regularized_search([4] * 6, np.random.default_rng(seed), population=20, generations=15, sample_size=5,
                           score_fn=lambda g: float(gain[np.arange(6), list(g)].sum()))
    assert tuple(h.best["genes"]) == tuple(gain.argmax(axis=1))
    assert len(h.records) == 300 and len({r["key"] for r in h.records}) == 300


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_budget_of_candidates_is_respected_exactly(strategy):
    search, kwargs = STRATEGIES[strategy]
    bench = Bench(3)
    cache = {}
    first = search(bench.choices, np.random.default_rng(1), score_fn=bench.score, max_candidates=37,
                   constraint_fn=bench.feasible, **kwargs)
    assert len(first.records) == len(bench.calls) == 37
    assert first.stopped == "the budget of 37 scored candidates is spent"
    cache = {r["key"]: {"score": r["score"]} for r in first.records[:30]}   # cached ones count too
    bench.calls.clear()
    again = search(bench.choices, np.random.default_rng(1), score_fn=bench.score, max_candidates=37,
                   constraint_fn=bench.feasible, cache=cache, **kwargs)
    assert [r["key"] for r in again.records] == [r["key"] for r in first.records] and len(bench.calls) == 7


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_patience_stops_a_search_that_stopped_improving(strategy):
    search, kwargs = STRATEGIES[strategy]
    bench = Bench(5)
    flat = search(bench.choices, np.random.default_rng(0), score_fn=lambda g: 1.0, patience=3, **kwargs)
    assert len(flat.generations) == 4 and len(flat.records) == 80
    assert flat.stopped == "no better candidate in 3 generations (the best, 1, came in generation 0)"
    count = itertools.count()
    improving = search(bench.choices, np.random.default_rng(0), score_fn=lambda g: float(next(count)),
                       patience=1, **kwargs)              # every candidate beats the last
    assert len(improving.generations) == 10 and not improving.stopped
    with pytest.raises(UserError, match="max_candidates and patience must be at least 1"):
        search(bench.choices, np.random.default_rng(0), score_fn=bench.score, patience=0, **kwargs)


def test_a_genetic_search_that_runs_dry_says_so_and_widens_the_mutation(caplog):
    """81 candidates; the parents converge on the best corner within a few generations. Each dry
    generation is noted (summary and log), its children are still mutants and crossovers of the
    parents, not random candidates, and the mutation probability rises."""
    gain = np.array([[0, 1, 3]] * 4, dtype=float)
    with caplog.at_level(logging.INFO, logger="oneshot_nas.search"):
        h = genetic_search([3] * 4, np.random.default_rng(0), score_fn=lambda g: float(gain[range(4), g].sum()),
                           population=6, generations=8, topk=2, crossover_num=3, mutation_num=3,
                           mutation_prob=0.1)
    dry = [g for g, note in h.notes.items() if "dry" in note]
    assert dry and all(h.notes[g]["seen_draws"] >= 100 for g in dry)
    assert max(h.notes[g]["mutation_prob"] for g in dry) > 0.1
    for g in dry:
        assert all(r["origin"] in ("mutation", "crossover") for r in h.generations[g])
    rows = {row["generation"]: row for row in h.summary()}
    assert all("dry" in rows[g] and "mutation probability" in rows[g]["response"] for g in dry)
    assert f"generation {dry[0]}: crossovers ran dry, the parents' unseen neighbourhood is exhausted" in caplog.text
    assert tuple(h.best["genes"]) == (2, 2, 2, 2) and len(h.records) == 6 * 8


def test_settings_of_another_strategy_are_refused_not_ignored():
    from oneshot_nas.search.settings import SearchSettings
    assert SearchSettings("x").strategy == "regularized"
    with pytest.raises(UserError, match="topk, mutation belong to the genetic strategy, but the strategy is "
                                        "regularized: choose genetic or leave them at the default"):
        SearchSettings("x", topk=5, mutation=10)
    with pytest.raises(UserError, match="sample_size belongs to the regularized and hurricane strategies, but the "
                                        "strategy is random: choose one of them"):
        SearchSettings("x", strategy="random", sample_size=3)
    assert SearchSettings("x", strategy="genetic", topk=5).topk == 5


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


def test_hurricane_searches_the_later_genes_then_the_earlier():
    bench = Bench(2)
    history = staged_search(bench.choices, np.random.default_rng(0), score_fn=bench.score,
                            constraint_fn=bench.feasible, stages=[list(range(6, 12)), list(range(6))], **RE)
    by_generation = history.generations
    stage_one, stage_two = by_generation[1:5], by_generation[5:]        # 9 generations after the first: 4 + 5
    assert history.notes[1]["stage"] == 1 and history.notes[5]["stage"] == 2
    held = by_generation[1][0]["genes"][:6]
    assert all(r["genes"][:6] == held for g in stage_one for r in g)        # earlier genes held in stage 1
    best_one = max((r for g in by_generation[:5] for r in g), key=lambda r: r["score"])["genes"]
    assert all(r["genes"][6:] == best_one[6:] for g in stage_two for r in g)  # later genes held in stage 2
    assert len({tuple(r["genes"][6:]) for g in stage_one for r in g}) > 20
