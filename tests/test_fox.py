"""FOX-NAS: the explainable linear predictor, simulated annealing over it, and the search strategy."""
import math

import numpy as np
import pytest

from oneshot_nas.errors import UserError
from oneshot_nas.search.predictor import LinearPredictor
from oneshot_nas.search.settings import SearchSettings
from oneshot_nas.search.strategies import accept, fox_search, random_search, temperature


def test_the_acceptance_rule_takes_better_moves_and_worse_ones_by_their_boltzmann_odds():
    assert accept(0.0, 1.0, 0.999) and accept(0.3, 1e-9, 0.999)
    odds = math.exp(-0.1 / 0.1)
    assert accept(-0.1, 0.1, odds - 1e-6) and not accept(-0.1, 0.1, odds + 1e-6)
    assert not accept(-1e-9, 0.0, 0.0)                # frozen: never downhill


def test_the_temperature_cools_geometrically_from_start_to_end():
    temps = [temperature(k, 5, 2.0, 0.02) for k in range(5)]
    assert temps[0] == 2.0 and temps[-1] == pytest.approx(0.02)
    ratios = np.array(temps[1:]) / np.array(temps[:-1])
    np.testing.assert_allclose(ratios, ratios[0]) and ratios[0] < 1


def test_the_regression_recovers_a_toy_table_and_explains_it(rng):
    choices = [3, 4, (1, 2), 1]                        # the last gene is frozen: no feature
    truth = {(0, 1): 0.5, (1, 3): -0.8, (2, 2): 0.2}   # what (gene, value) adds
    genes = [tuple(int(rng.integers(c)) if isinstance(c, int) else int(rng.choice(c)) for c in choices)
             for _ in range(300)]

    def score(g):
        return 1.0 + sum(w for (i, v), w in truth.items() if g[i] == v) + 0.05 * g[1]
    model = LinearPredictor(choices, extra=lambda g: {"gene 1 as a number": g[1]},
                            names=["a", "b", "c", "d"], alpha=1e-6).fit(genes, [score(g) for g in genes])
    np.testing.assert_allclose(model.predict(genes), [score(g) for g in genes], atol=1e-6)
    fresh = [(2, 3, 2, 0), (0, 0, 1, 0)]
    np.testing.assert_allclose(model.predict(fresh), [score(g) for g in fresh], atol=1e-6)
    names = [name for name, _ in model.coefficients()]
    assert names[0] == "b = 3" and len(names) == 3 + 4 + 2 + 1   # largest effect first; d has no column
    weights = dict(model.coefficients())
    # an indicator's weight is what the choice adds against the others of its gene
    assert weights["a = 1"] - weights["a = 0"] == pytest.approx(0.5, abs=1e-4)


def test_fox_search_finds_the_best_of_an_additive_space_sooner_than_random(rng):
    choices = [4] * 8
    gains = np.random.default_rng(5).normal(size=(8, 4))
    best = tuple(int(v) for v in gains.argmax(axis=1))

    def score(g):
        return float(gains[np.arange(8), g].sum())

    def queries(history):
        keys = [tuple(r["genes"]) for r in history.records]
        return keys.index(best) + 1 if best in keys else None
    fox = fox_search(choices, np.random.default_rng(0), score_fn=score, population=16, generations=8,
                     anneal_steps=100)
    assert queries(fox) is not None and queries(fox) <= 48   # 65,536 members: found in the first 3 batches
    assert {r["origin"] for r in fox.records[16:]} == {"predicted"}
    assert fox.notes[1]["predicted"] == 16       # and it ranks what it proposes (candidates it was not fitted on)
    assert np.mean([note["predictor_tau"] for g, note in fox.notes.items() if g > 0]) > 0.5
    rand = random_search(choices, np.random.default_rng(0), score_fn=score, population=16, generations=8)
    assert queries(rand) is None
    constrained = fox_search(choices, np.random.default_rng(0), score_fn=score, population=8, generations=4,
                             anneal_steps=50, constraint_fn=lambda g: g[0] == 0)
    assert all(r["genes"][0] == 0 for r in constrained.records)     # only feasible moves


def test_anneal_steps_belong_to_fox():
    with pytest.raises(UserError, match="anneal_steps belongs to the fox strategy"):
        SearchSettings(supernet="x", strategy="regularized", anneal_steps=10)
    with pytest.raises(UserError, match="anneal_steps 0 must be at least 1"):
        SearchSettings(supernet="x", strategy="fox", anneal_steps=0)
