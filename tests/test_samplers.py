"""Samplers: uniform within the allowed genes, capped rejection under a budget, strolling coverage."""
import numpy as np
import pytest

from oneshot_nas.cost.counting import Counts, LookupTable, count_ops
from oneshot_nas.cost.limits import Limits
from oneshot_nas.cost.model import CostModel
from oneshot_nas.errors import UserError
from oneshot_nas.sample.genes import crossover, mutate, random_genes
from oneshot_nas.sample.samplers import RejectionSampler, UniformSampler
from oneshot_nas.sample.strolling import StrollingSampler
from oneshot_nas.space import get_space


@pytest.fixture(scope="module")
def table():
    return LookupTable.build("oneshot+")


@pytest.fixture(scope="module")
def costs(table):
    return CostModel(table.space, table=table)


def budget(costs, **limits):
    return Limits(costs, limits)


def test_uniform_respects_allowed_channels(rng):
    sampler = UniformSampler(get_space("oneshot"), channel_ids=(7, 8, 9))
    archs = [sampler(rng) for _ in range(200)]
    assert {c for a in archs for c in a.channels} == {7, 8, 9}
    assert {b for a in archs for b in a.blocks} == {0, 1, 2, 3}
    sampler.set_channel_ids((9,))
    assert all(set(sampler(rng).channels) == {9} for _ in range(10))
    with pytest.raises(UserError, match="not within 0..9"):
        sampler.set_channel_ids((10,))


def test_gene_operators(rng):
    choices = (4, 4, (2, 3))
    for _ in range(50):
        genes = random_genes(choices, rng)
        assert 0 <= genes[0] < 4 and genes[2] in (2, 3)
        assert mutate(genes, choices, rng, 0.0) == genes
        assert mutate(genes, choices, rng, 1.0)[2] in (2, 3)
    a, b = (0,) * 40, (1,) * 40
    child = crossover(a, b, rng)
    assert set(child) == {0, 1}


def test_rejection_sampler_meets_the_budget(table, costs, rng):
    sampler = RejectionSampler(UniformSampler(table.space), budget(costs, macs=(250e6, 330e6),
                                                                   params=(None, 4e6)))
    for _ in range(50):
        counts = Counts.of(count_ops(sampler(rng)))
        assert 250e6 <= counts.macs <= 330e6 and counts.paper_params <= 4e6


def test_infeasible_budget_fails_at_once_with_the_attainable_range(table, costs):
    lo, hi = costs.extremes("macs")
    with pytest.raises(UserError, match=f"they range from {lo / 1e6:.3g}M to {hi / 1e6:.3g}M"):
        RejectionSampler(UniformSampler(table.space), budget(costs, macs=(None, 10e6)))


def test_rejection_gives_up_with_what_it_saw(table, costs, rng):
    # feasible in principle (just above the minimum) but practically never drawn
    lo, _ = costs.extremes("macs")
    sampler = RejectionSampler(UniformSampler(table.space), budget(costs, macs=(None, lo + 1)),
                               max_tries=200)
    with pytest.raises(UserError, match=r"gave up after 200 samples: none had macs in .*\(seen: macs from"):
        sampler(rng)


def evenness(table, sampler, rng, n, limits):
    """Normalised entropy of the 7 x 8 grid histogram, and the number of occupied cells."""
    (mlo, mhi), (plo, phi) = limits.limits["macs"], limits.limits["params"]
    hist = np.zeros((7, 8))
    for _ in range(n):
        c = table.count(sampler(rng))
        assert mlo <= c.macs <= mhi and plo <= c.paper_params <= phi
        hist[min(int((c.macs - mlo) / (mhi - mlo) * 7), 6), min(int((c.paper_params - plo) / (phi - plo) * 8), 7)] += 1
    p = hist[hist > 0] / n
    return -(p * np.log(p)).sum() / np.log(56), int((hist > 0).sum())


def test_strolling_covers_the_budget_more_evenly_than_rejection(table, costs):
    limits = budget(costs, macs=(200e6, 400e6), params=(2.5e6, 5e6))
    uniform = RejectionSampler(UniformSampler(table.space), limits)
    strolling = StrollingSampler(UniformSampler(table.space), limits)
    even_u, cells_u = evenness(table, uniform, np.random.default_rng(1), 600, limits)
    even_s, cells_s = evenness(table, strolling, np.random.default_rng(1), 600, limits)
    assert cells_s > cells_u and even_s > even_u + 0.05


def test_strolling_state_round_trips(table, costs):
    limits = budget(costs, macs=(250e6, 350e6))
    a = StrollingSampler(UniformSampler(table.space), limits)
    rng = np.random.default_rng(2)
    for _ in range(30):
        a(rng)
    b = StrollingSampler(UniformSampler(table.space), limits)
    b.load_state_dict(a.state_dict())
    state = rng.bit_generator.state
    first = [a(rng) for _ in range(10)]
    rng.bit_generator.state = state
    assert [b(rng) for _ in range(10)] == first


def test_strolling_follows_the_channel_warm_up(table, costs, rng):
    sampler = StrollingSampler(UniformSampler(table.space), budget(costs, macs=(None, 600e6)))
    for _ in range(20):
        sampler(rng)
    sampler.set_channel_ids((8, 9))
    assert all(set(sampler(rng).channels) <= {8, 9} for _ in range(20))
