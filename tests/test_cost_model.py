"""The one cost model (every metric of an architecture from lookup tables), budgets and their parser."""
import json

import numpy as np
import pytest

from oneshot_nas.cost.counting import MOBILENETV2_14, Counts, LookupTable, count_ops, micronet_score, space_key
from oneshot_nas.cost.latency import LatencyTable
from oneshot_nas.cost.limits import Limits, parse_number, parse_range
from oneshot_nas.cost.model import METRICS, CostModel, costs_of_counts, micronet_reference
from oneshot_nas.errors import UserError
from oneshot_nas.space import Architecture, get_space
from tests.test_space import random_arch


@pytest.fixture(scope="module")
def costs():
    return CostModel(get_space("tiny"))


def test_every_cost_matches_the_analytic_counts(costs, rng):
    for _ in range(10):
        arch = random_arch(costs.space, rng)
        c = Counts.of(count_ops(arch))
        record = costs.measure(arch)
        assert record == pytest.approx(costs.measure(arch.genes))
        assert record["macs"] == c.macs and record["params"] == c.paper_params
        assert record["micronet_params"] == c.params and record["micronet_flops"] == c.flops
        assert record["micronet_score"] == pytest.approx(micronet_score(c, 32, MOBILENETV2_14), rel=1e-12)
        # the profiler's record of any network's totals uses the same definitions
        assert costs_of_counts(c) == pytest.approx(record, rel=1e-12)
    c8 = CostModel(costs.space, reference=(1e6, 1e8), bits=8)
    arch = random_arch(costs.space, rng)
    assert c8.measure(arch)["micronet_score"] == pytest.approx(
        micronet_score(Counts.of(count_ops(arch)), 8, (1e6, 1e8)), rel=1e-12)
    many = costs.values_many(np.array([a.genes for a in [arch, Architecture.largest(costs.space)]]))
    assert many[0] == pytest.approx(costs.values(arch.genes))
    # no latency without a table, no BitOps in a float space
    assert set(costs.metrics) == set(METRICS) - {"latency_ms", "bitops"}


def test_extremes_are_exact_and_attained():
    table = LookupTable.build("oneshot+")
    costs = CostModel(table.space, table=table)
    lo, hi = costs.extremes("macs")
    space, r = table.space, np.random.default_rng(0)
    seen = [table.count(random_arch(space, r)).macs for _ in range(500)]
    assert lo < min(seen) and max(seen) < hi
    # attained: every position at its own cheapest candidate
    macs = table.table[:, :, table.field("macs")]
    best = macs.argmin(axis=1)
    assert table.count(Architecture(space, (best // 10).tolist(), (best % 10).tolist())).macs == lo
    # frozen genes narrow the range
    wide = space.gene_choices(channels=(9,))
    assert costs.extremes("macs", wide)[0] > lo


def test_limits_verdicts_and_exact_feasibility(costs, rng):
    space = costs.space
    choices = space.gene_choices()
    lo, hi = costs.extremes("macs", choices)
    archs = [random_arch(space, rng) for _ in range(200)]
    macs = [Counts.of(count_ops(a)).macs for a in archs]
    assert lo <= min(macs) and max(macs) <= hi
    limit = float(np.median(macs))
    limits = Limits(costs, {"macs": (None, limit)})
    verdicts = [limits(a.genes) for a in archs]
    for v, m in zip(verdicts, macs):
        assert v.ok == (m <= limit) and v.values["macs"] == pytest.approx(m)
        assert (v.violation > 0) != v.ok
    values = costs.values_many(np.array([a.genes for a in archs]))
    assert list(limits.accepts_values(values)) == [v.ok for v in verdicts]
    with pytest.raises(UserError, match=r"has macs in \[any, .*\]: they range from"):
        Limits(costs, {"macs": (None, lo - 1)}).check_feasible(choices)
    Limits(costs, {"macs": (None, lo)}).check_feasible(choices)       # the smallest is fine
    # freezing every channel at the widest makes small budgets infeasible
    with pytest.raises(UserError, match="genes left free"):
        Limits(costs, {"macs": (None, limit)}).check_feasible(space.gene_choices(channels=(9,)))
    with pytest.raises(UserError, match="needs a latency table"):
        Limits(costs, {"latency_ms": (None, 3.0)})
    with pytest.raises(UserError, match="unknown cost 'gflops'"):
        Limits(costs, {"gflops": (1, 2)})
    with pytest.raises(UserError, match="crossed"):
        Limits(costs, {"macs": (2e6, 1e6)})
    assert not Limits(costs, {}) and Limits(costs, {"macs": (None, None)}).describe() == "none"


def test_numbers_and_ranges_are_parsed_one_way():
    assert parse_number("330M") == 330e6 and parse_number("3.5e6") == 3.5e6
    assert parse_number("1.2G") == 1.2e9 and parse_number("800k") == 800e3 and parse_number("0.45M") == 450e3
    assert parse_range("250M:330M") == (250e6, 330e6)
    assert parse_range(":3.5M") == (None, 3.5e6)
    with pytest.raises(UserError, match="needs the form LO:HI"):
        parse_range("300M", "--macs-range")
    with pytest.raises(UserError, match="'abc' is not a number"):
        parse_range("abc:1")
    with pytest.raises(UserError, match="low end is above"):
        parse_range("2:1")
    for bad in ("nan", "inf", "-infM"):
        with pytest.raises(UserError, match="not a finite number"):
            parse_number(bad, "--max-macs")


def test_latency_costs_and_micronet_baselines(costs, tmp_path, rng):
    space = costs.space
    blocks = rng.random((space.num_positions, space.num_blocks, space.num_scales))
    table = {"format": "oneshot-nas-latency-v1", "space": space.name, "space_key": space_key(space),
             "space_config": space.to_dict(), "device": "cpu", "batch_size": 1, "dtype": "float32",
             "unit": "ms", "stem_ms": 0.5, "head_ms": 0.25, "blocks_ms": blocks.tolist()}
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(table))
    latency = LatencyTable.load(path, space)
    lat = CostModel(space, latency=latency)
    arch = random_arch(space, rng)
    expected = 0.75 + sum(blocks[p, b, c] for p, (b, c) in enumerate(zip(arch.blocks, arch.channels)))
    assert lat.measure(arch)["latency_ms"] == pytest.approx(expected)
    assert latency.predict_ms(arch) == pytest.approx(expected)
    assert Limits(lat, {"latency_ms": (None, expected)})(arch.genes).ok
    other = space.derive("tiny-plain", se=False, last_block="original", dropout=0.1)
    table.update(space=other.name, space_key=space_key(other), space_config=other.to_dict())
    path.write_text(json.dumps(table))
    with pytest.raises(UserError, match="measured for space"):
        LatencyTable.load(path, space)
    with pytest.raises(UserError, match="does not exist"):
        LatencyTable.load(tmp_path / "none.json", space)
    p, f = micronet_reference("oneshot")
    assert 3.3e6 < p < 3.6e6 and 5e8 < f < 8e8      # OneShot: 3.4M params, 328M MACs ~ 2x in mults+adds
    assert micronet_reference("mobilenetv2-1.4") == MOBILENETV2_14
    p, f = micronet_reference("mobilenetv3-large")   # published: 5.4M params, 219M MACs
    assert 5.3e6 < p < 5.6e6 and 4.2e8 < f < 4.6e8
    with pytest.raises(UserError, match="choose one of"):
        micronet_reference("resnet")


# ----- BitOps: a quantized space's budget (docs/quantization.md) -------------------------------------
@pytest.mark.parametrize("name", ["tiny4-q", "tiny-q"])
def test_bitops_is_a_cost_and_a_budget_of_a_quantized_space(name, rng):
    costs = CostModel(get_space(name))
    for _ in range(10):
        arch = random_arch(costs.space, rng)
        assert costs.measure(arch)["bitops"] == Counts.of(count_ops(arch)).bitops > 0
        assert costs_of_counts(Counts.of(count_ops(arch))) == pytest.approx(costs.measure(arch), rel=1e-12)
    lo, hi = costs.extremes("bitops")
    n = costs.space.num_positions
    low = Architecture(costs.space, [0] * n, [0] * n, [0] * n, [0] * n)   # narrowest, 2 bits
    widest = [Architecture(costs.space, [b] * n, [9] * n, [3] * n, [3] * n) for b in range(4)]
    assert lo <= costs.measure(low)["bitops"] and hi >= max(costs.measure(a)["bitops"] for a in widest)
    # the same architecture at fewer bits costs less, its MACs the same
    arch = random_arch(costs.space, rng)
    by_bits = [costs.measure(arch.replace(wbits=(k,) * n, abits=(k,) * n)) for k in range(4)]
    assert len({r["macs"] for r in by_bits}) == 1
    assert [r["bitops"] for r in by_bits] == sorted(r["bitops"] for r in by_bits)
    limits = Limits(costs, {"bitops": (None, by_bits[0]["bitops"])})
    assert limits(arch.replace(wbits=(0,) * n, abits=(0,) * n).genes).ok
    assert not limits(arch.replace(wbits=(3,) * n, abits=(3,) * n).genes).ok


def test_a_bitops_budget_on_a_float_space_or_out_of_reach_says_what_to_do():
    with pytest.raises(UserError, match="space 'tiny4' has no bit-width genes: use a quantized space, e.g. tiny4-q"):
        Limits(CostModel(get_space("tiny4")), {"bitops": (None, 1e9)})
    limits = Limits(CostModel(get_space("tiny4-q")), {"bitops": (None, 1e3)})
    with pytest.raises(UserError, match="no architecture of space 'tiny4-q' .* has bitops in .* they range from"):
        limits.check_feasible()
