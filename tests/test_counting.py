"""Analytic counts: the papers' published numbers, the lookup table's exactness, the score rules."""
import numpy as np
import pytest

from oneshot_nas.cost.counting import (COUNT_FIELDS, Counts, LookupTable, MOBILENETV2_14, block_ops,
                                  conv_op, count_ops, micronet_score, pool_op, space_key)
from oneshot_nas.space import PRESETS, Architecture, SearchSpace, get_space, load_architecture
from tests.conftest import ROOT
from tests.test_space import random_arch


@pytest.mark.parametrize("file,macs,params", [
    ("oneshot.json", 328e6, 3.4e6),      # SPOS block + channel search: 328M FLOPs, 3.4M params
    ("oneshot+.json", 297e6, 3.7e6),     # OneShot+: 297M, 3.7M
    ("oneshot-s+.json", 291e6, 3.5e6),   # OneShot-S+: 291M, 3.5M
])
def test_published_macs_and_params(file, macs, params):
    """The papers' "FLOPs" are multiply-accumulates: ours agree to 0.2% (MACs) and to the 0.1M
    rounding of their tables (params)."""
    counts = Counts.of(count_ops(load_architecture(ROOT / "models" / file)))
    assert abs(counts.macs - macs) / macs < 0.002
    assert abs(counts.paper_params - params) <= 0.05e6
    # MicroNet flops count a mult and an add per MAC, so they are about twice the MACs
    assert 1.9 < counts.flops / counts.macs < 2.1


def test_supernet_maximum_path_is_the_published_841_9M():
    space = get_space("oneshot")
    largest = max(Counts.of(count_ops(Architecture(space, [b] * 20, [9] * 20))).macs for b in range(4))
    assert round(largest / 1e5) == 8419


def test_conv_rules_by_hand():
    # 3x3 conv 16 -> 32 at 10x10, stride 1, BN folded: 3200 outputs x 144 mults
    op = conv_op("c", 16, 32, 3, 1, 1, (10, 10), folded_bn=True)
    assert (op.mults, op.adds, op.params) == (3200 * 144, 3200 * 143 + 3200, 32 * 144 + 32)
    assert (op.macs, op.paper_params) == (3200 * 144, 32 * 144)
    # depthwise 5x5 stride 2 on 8 channels at 9x9 -> 5x5 outputs, explicit bias
    op = conv_op("d", 8, 8, 5, 2, 8, (9, 9), bias=True)
    assert (op.mults, op.adds, op.params, op.macs) == (200 * 25, 200 * 24 + 200, 8 * 25 + 8, 200 * 26)
    pool = pool_op("p", 640, (7, 7))
    assert (pool.mults, pool.adds, pool.macs) == (640, 48 * 640, 49 * 640)


@pytest.mark.parametrize("name", list(PRESETS))
def test_lookup_table_equals_the_op_count(name, rng):
    table = LookupTable.load(name)
    for _ in range(100):
        arch = random_arch(name, rng)
        assert table.count(arch) == Counts.of(count_ops(arch))
    archs = [random_arch(name, rng) for _ in range(10)]
    groups = [[getattr(a, g.name) for a in archs] for g in get_space(name).gene_groups]
    many = table.count_many(*groups)
    assert [Counts(*row) for row in many.tolist()] == [table.count(a) for a in archs]
    if len(groups) > 2:
        with pytest.raises(ValueError, match="give ids for each"):
            table.count_many(*groups[:2])


def test_lookup_table_is_cached_per_space(tmp_path):
    space = get_space("tiny")
    LookupTable.load(space, tmp_path)
    files = list((tmp_path / "lookup").iterdir())
    assert [f.name for f in files] == [f"{space_key(space)}.npz"]
    other = space.derive("tiny", num_classes=100)       # same name, different definition
    assert space_key(other) != space_key(space)
    again = LookupTable.load(space, tmp_path)
    np.testing.assert_array_equal(again.table, LookupTable.build(space).table)
    files[0].write_bytes(b"damaged")                    # a broken cache entry is rebuilt
    np.testing.assert_array_equal(LookupTable.load(space, tmp_path).table, again.table)


def test_micronet_score_rules():
    counts = Counts(params=6.9e6, mults=600e6, adds=570e6, q_params=6.9e6, q_mults=600e6)
    assert micronet_score(counts) == pytest.approx(2.0)
    # at 8 bits quantizable params/mults count a quarter; adds stay 32-bit
    assert micronet_score(counts, 8) == pytest.approx(0.25 + (150e6 + 570e6) / 1170e6)
    assert MOBILENETV2_14 == (6.9e6, 1170e6)


def test_block_counts_grow_with_width():
    space = get_space("oneshot+")
    for p in (0, 7, 19):
        macs = [Counts.of(block_ops(space, p, 0, c)).macs for c in range(10)]
        assert macs == sorted(macs) and macs[0] < macs[-1]
    assert COUNT_FIELDS[0] == "params"


@pytest.mark.parametrize("edge_bits", [8, 32])
def test_bitops_of_a_hand_computed_network(edge_bits):
    """One SNB-3 block at stride 2 on a 4x4 map, an 8x8 input, the original head; every conv and
    the classifier counted by hand: MACs x weight bits x activation bits per layer."""
    space = SearchSpace("hand", stage_repeats=(1,), stage_channels=(16,), first_conv=8, last_conv=32,
                        blocks=("SNB-3",), channel_scales=(1.0,), input_size=8, num_classes=10,
                        bit_widths=(2, 4), edge_bits=edge_bits)
    arch = Architecture(space, [0], [0], wbits=[0], abits=[1])       # weights 2 bits, activations 4
    stem = 4 * 4 * 8 * 27                       # 3x3 stride 2, 3 -> 8, on 8x8: 16 outputs x 8 x 27
    proj = 2 * 2 * 8 * 9 + 2 * 2 * 8 * 8        # depthwise 3x3 stride 2 (4x4 -> 2x2), 1x1 8 -> 8
    main = 4 * 4 * 8 * 8 + 2 * 2 * 8 * 9 + 2 * 2 * 8 * 8    # 1x1 8 -> 8, depthwise stride 2, 1x1 8 -> 8
    head = 2 * 2 * 32 * 16 + (32 * 10 + 10)     # 1x1 16 -> 32 on 2x2; classifier with its bias
    expected = (stem + head) * edge_bits ** 2 + (proj + main) * 2 * 4
    ops = count_ops(arch)
    assert Counts.of(ops).bitops == expected == LookupTable.build(space).count(arch).bitops
    assert Counts.of(ops).macs == stem + proj + main + head + 2 * 2 * 32   # (+ the pool's MACs)
    assert {(op.wbits, op.abits) for op in ops if op.kind == "conv" and op.name.startswith("p0")} == {(2, 4)}
    # a float network has no BitOps
    assert Counts.of(count_ops(Architecture(space.derive("hand-f", bit_widths=(), edge_bits=8), [0], [0]))).bitops == 0
