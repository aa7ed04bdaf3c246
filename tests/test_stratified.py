"""Stratified architectures: every bin of the budget's cost range gives its share, uniformly within
the bin, reproducibly from the seed; an impossible request says why."""
import numpy as np
import pytest

from oneshot_nas.cost.limits import Limits
from oneshot_nas.cost.model import CostModel
from oneshot_nas.errors import UserError
from oneshot_nas.sample.stratified import stratified_sample
from oneshot_nas.space import get_space

TINY = CostModel(get_space("tiny"))


@pytest.mark.parametrize("budget, metric", [({"macs": (0.4e6, 0.6e6)}, "macs"),
                                            ({"macs": (0.35e6, 0.6e6), "params": (None, 0.2e6)}, "params")])
def test_every_bin_gives_its_share_within_the_budget(budget, metric):
    limits = Limits(TINY, budget)
    result = stratified_sample(limits, 30, 5, np.random.default_rng(0), metric, pool=50_000)
    assert len(result.archs) == 30 and len(set(result.archs)) == 30
    values = [TINY.measure(a)[metric] for a in result.archs]
    assert values == sorted(values)
    assert all(limits(a.genes).ok for a in result.archs)
    edges = result.edges
    for a, b, v in zip(result.archs, result.bins, values):
        assert edges[b] - 1e-6 <= v <= edges[b + 1] + 1e-6
    assert result.shortfall == () and np.bincount(result.bins).tolist() == [6] * 5


def test_the_spread_is_wider_than_uniform_sampling_gives():
    limits = Limits(TINY, {"macs": (None, 0.45e6)})
    rng = np.random.default_rng(0)
    result = stratified_sample(limits, 20, 10, rng)
    macs = np.array([TINY.measure(a)["macs"] for a in result.archs])
    assert macs.min() < 0.33e6 and macs.max() > 0.44e6        # uniform draws rarely go below 0.39M
    # a sparse bottom bin gives what it has; the bins giving fewest make up the difference
    counts = np.bincount(result.bins, minlength=10)
    assert counts.sum() == 20 and counts.max() - counts[counts > 0].min() <= 2


def test_the_draw_replays_from_its_seed_and_leaves_out_the_excluded():
    limits = Limits(TINY, {"macs": (None, 0.5e6)})
    draw = lambda seed, exclude=(): stratified_sample(limits, 8, 4, np.random.default_rng(seed),  # noqa: E731
                                                      exclude=exclude, pool=20_000)
    first = draw(3)
    assert draw(3).archs == first.archs and draw(4).archs != first.archs
    again = draw(3, first.archs[:2])
    assert not set(first.archs[:2]) & set(again.archs)
    # excluding an architecture the draw never took (an --include) changes none of the draws
    other = draw(4).archs[0]
    assert other not in first.archs and draw(3, (other,)).archs == first.archs


def test_impossible_requests_say_why():
    with pytest.raises(UserError, match="they range from 0.171M to 1.14M"):
        stratified_sample(Limits(TINY, {"macs": (None, 0.1e6)}), 5, 5, np.random.default_rng(0))
    with pytest.raises(UserError, match="fewer than the 50 asked for"):
        stratified_sample(Limits(TINY, {"macs": (None, 0.2e6)}), 50, 5, np.random.default_rng(0), pool=20_000)
    with pytest.raises(UserError, match="between 1 and that many bins"):
        stratified_sample(Limits(TINY, {}), 5, 6, np.random.default_rng(0))
