"""Samplers: uniform within the allowed genes, capped rejection under a budget, strolling coverage."""
import numpy as np
import pytest

from oneshot_nas.cost.counting import LookupTable
from oneshot_nas.errors import UserError
from oneshot_nas.sample.sampling import (Budget, RejectionSampler, UniformSampler, crossover, extremes,
                                  mutate, parse_range, random_genes)
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.sample.strolling import StrollingSampler


@pytest.fixture(scope="module")
def table():
    return LookupTable.build("oneshot+")


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


def test_parse_range():
    assert parse_range("250M:330M", "--flops-range") == (250e6, 330e6)
    assert parse_range(":3.5M", "--params-range") == (None, 3.5e6)
    with pytest.raises(UserError, match="needs the form LO:HI"):
        parse_range("300M", "--flops-range")
    with pytest.raises(UserError, match="'abc' is not a number"):
        parse_range("abc:1", "--flops-range")
    with pytest.raises(UserError, match="low end is above"):
        parse_range("2:1", "--flops-range")
    with pytest.raises(UserError, match="cannot budget"):
        Budget.of(gflops=(1, 2))


def test_extremes_are_exact(table, rng):
    lo, hi = extremes(table, "macs")
    space = table.space
    seen = [table.count(Architecture(space, rng.integers(0, 4, 20).tolist(),
                                     rng.integers(0, 10, 20).tolist())).macs for _ in range(500)]
    assert lo < min(seen) and max(seen) < hi
    # the extremes are attained: every position at its own cheapest / dearest candidate
    macs = table.table[:, :, table.field("macs")]
    best = macs.argmin(axis=1)
    arch = Architecture(space, (best // 10).tolist(), (best % 10).tolist())
    assert table.count(arch).macs == lo


def test_rejection_sampler_meets_the_budget(table, rng):
    budget = Budget.of(macs=(250e6, 330e6), paper_params=(None, 4e6))
    sampler = RejectionSampler(UniformSampler(table.space), table, budget)
    for _ in range(50):
        counts = table.count(sampler(rng))
        assert 250e6 <= counts.macs <= 330e6 and counts.paper_params <= 4e6


def test_infeasible_budget_fails_at_once_with_the_attainable_range(table):
    lo, hi = extremes(table, "macs")
    with pytest.raises(UserError, match=f"the smallest has {lo / 1e6:.2f}M and the largest {hi / 1e6:.2f}M"):
        RejectionSampler(UniformSampler(table.space), table, Budget.of(macs=(None, 10e6)))


def test_rejection_gives_up_with_what_it_saw(table, rng):
    # feasible in principle (just above the minimum) but practically never drawn
    lo, _ = extremes(table, "macs")
    sampler = RejectionSampler(UniformSampler(table.space), table, Budget.of(macs=(None, lo + 1)),
                               max_tries=200)
    with pytest.raises(UserError, match=r"gave up after 200 samples: none had macs in .*\(seen: macs from"):
        sampler(rng)


def evenness(table, sampler, rng, n, budget):
    """Normalised entropy of the 7 x 8 grid histogram, and the number of occupied cells."""
    (mlo, mhi), (plo, phi) = dict(budget.ranges)["macs"], dict(budget.ranges)["paper_params"]
    hist = np.zeros((7, 8))
    for _ in range(n):
        c = table.count(sampler(rng))
        assert mlo <= c.macs <= mhi and plo <= c.paper_params <= phi
        hist[min(int((c.macs - mlo) / (mhi - mlo) * 7), 6), min(int((c.paper_params - plo) / (phi - plo) * 8), 7)] += 1
    p = hist[hist > 0] / n
    return -(p * np.log(p)).sum() / np.log(56), int((hist > 0).sum())


def test_strolling_covers_the_budget_more_evenly_than_rejection(table):
    budget = Budget.of(macs=(200e6, 400e6), paper_params=(2.5e6, 5e6))
    uniform = RejectionSampler(UniformSampler(table.space), table, budget)
    strolling = StrollingSampler(UniformSampler(table.space), table, budget)
    even_u, cells_u = evenness(table, uniform, np.random.default_rng(1), 600, budget)
    even_s, cells_s = evenness(table, strolling, np.random.default_rng(1), 600, budget)
    assert cells_s > cells_u and even_s > even_u + 0.05


def test_strolling_state_round_trips(table):
    budget = Budget.of(macs=(250e6, 350e6))
    a = StrollingSampler(UniformSampler(table.space), table, budget)
    rng = np.random.default_rng(2)
    for _ in range(30):
        a(rng)
    b = StrollingSampler(UniformSampler(table.space), table, budget)
    b.load_state_dict(a.state_dict())
    state = rng.bit_generator.state
    first = [a(rng) for _ in range(10)]
    rng.bit_generator.state = state
    assert [b(rng) for _ in range(10)] == first


def test_strolling_follows_the_channel_warm_up(table, rng):
    sampler = StrollingSampler(UniformSampler(table.space), table, Budget.of(macs=(None, 600e6)))
    for _ in range(20):
        sampler(rng)
    sampler.set_channel_ids((8, 9))
    assert all(set(sampler(rng).channels) <= {8, 9} for _ in range(20))
