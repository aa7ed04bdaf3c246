"""The graph profiler: equal to the analytic count on our networks, right by hand on any graph."""
import json
import logging
import math
from dataclasses import astuple, replace

import mxnet as mx
import pytest

from oneshot_nas.cost.counting import Counts, LookupTable, count_ops
from oneshot_nas.errors import UserError
from oneshot_nas.cost.graph import (arch_symbol, block_name, gluoncv_counts, profile_arch,
                                 profile_symbol, profile_symbol_file)
from oneshot_nas.space import PRESETS, Architecture, get_space
from oneshot_nas.nn.subnet import SubNet
from tests.test_space import random_arch


def _without_name(op):
    return astuple(op)[1:]


# the float presets (the quantized ones: test_quantized_graph_count_... below)
@pytest.mark.parametrize("name", [n for n in PRESETS if not get_space(n).quantized])
def test_graph_count_equals_the_analytic_count_and_the_lookup_table(name, rng):
    """100 random architectures per preset: the graph walk of the real SubNet gives exactly the
    analytic ops (op by op: kind, shapes, kernel, every metric) and the lookup table's totals."""
    space, table = get_space(name), LookupTable.load(name)
    seen = set()
    for _ in range(100):
        arch = random_arch(space, rng)
        profile = profile_arch(arch)
        expected = count_ops(arch)
        assert [_without_name(op) for op in profile.ops] == [_without_name(op) for op in expected]
        assert profile.counts == Counts.of(expected) == table.count(arch)
        assert profile.unsupported == {} and not profile.quantized and profile.counts.bitops == 0
        seen |= {(b, p.stride) for b, p in zip(arch.blocks, space.positions)}
    # every block choice was counted at every stride of the space (tiny4 has stride-2 positions only)
    assert seen == {(b, p.stride) for b in range(space.num_blocks) for p in space.positions}


# bit ids per position of tiny4-q (values 2, 3, 4, 8): uniform, mixed, one position apart
BIT_ASSIGNMENTS = {"uniform2": ((0,) * 4, (0,) * 4), "uniform8": ((3,) * 4, (3,) * 4),
                   "mixed": ((1, 2, 2, 0), (2, 0, 2, 3)), "crossed": ((0, 1, 2, 3), (3, 2, 1, 0)),
                   "one-apart": ((2, 2, 0, 2), (2, 2, 2, 2))}


def quantized_space(edge_bits):
    space = get_space("tiny4-q")
    return space if edge_bits == space.edge_bits else space.derive(f"tiny4-q-e{edge_bits}", edge_bits=edge_bits)


@pytest.mark.parametrize("edge_bits", [8, 32])
@pytest.mark.parametrize("bits", BIT_ASSIGNMENTS, ids=str)
def test_quantized_graph_bitops_equal_the_analytic_count(bits, edge_bits, rng):
    """A fake-quantized SubNet's graph gives exactly the analytic ops, each conv and FC with the bit
    widths read from the graph's fake-quantization ops (stem and head at edge_bits, 32 = float and
    then counted 32 x 32), and none of the fake-quantization arithmetic as an op of the network."""
    space = quantized_space(edge_bits)
    table = LookupTable.load(space)
    wbits, abits = BIT_ASSIGNMENTS[bits]
    for _ in range(3):
        arch = random_arch(space, rng).replace(wbits=wbits, abits=abits)
        profile = profile_arch(arch)
        expected = count_ops(arch)
        assert [_without_name(op) for op in profile.ops] == [_without_name(op) for op in expected]
        assert profile.counts == Counts.of(expected) == table.count(arch)
        assert profile.unsupported == {} and profile.quantized
        layers = [op for op in profile.ops if op.kind in ("conv", "fc")]
        edge = {space.edge_bits}
        assert {op.wbits for op in layers[:1] + layers[-2:]} == {op.abits for op in layers[-2:]} == edge
        widths = {space.bit_widths[i] for i in wbits + abits}
        assert {b for op in layers[1:-2] for b in (op.wbits, op.abits)} == widths
        assert profile.counts.bitops == sum(op.macs * op.wbits * op.abits for op in layers) > 0


def test_quantized_graph_count_on_random_architectures(rng):
    """Random architectures of both quantized presets (every gene group drawn): op by op equal."""
    for name in ("tiny-q", "tiny4-q"):
        table = LookupTable.load(name)
        for _ in range(8):
            arch = random_arch(name, rng)
            profile = profile_arch(arch)
            expected = count_ops(arch)
            assert [_without_name(op) for op in profile.ops] == [_without_name(op) for op in expected]
            assert profile.counts == table.count(arch) and profile.unsupported == {}


def test_the_fake_quantization_arithmetic_is_not_counted_and_bits_are_read_through_layout_ops():
    """By hand: one fake-quantized conv (weights 3 bits, input 5 bits, the quantized weight
    reshaped on its way), a float FC after it, in an otherwise float graph. The conv counts its
    MACs alone, at 3 x 5 bits; the float FC at 32 x 32; the rounding ops are not ops of the net."""
    from oneshot_nas.nn.quant import quantize_act, quantize_weight
    from oneshot_nas.recipe import Precision
    data, weight, ranges = mx.sym.var("data"), mx.sym.var("w", shape=(4, 2, 3, 3)), mx.sym.var("r", shape=(1,))
    x = quantize_act(mx.sym, data, ranges, Precision(3, 5, (5,)), None)
    w = mx.sym.reshape(quantize_weight(mx.sym, weight, 3), shape=(4, 2, 3, 3))
    y = mx.sym.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=4, no_bias=True, name="c")
    y = mx.sym.FullyConnected(mx.sym.relu(y, name="r1"), num_hidden=6, name="fc")
    profile = profile_symbol(y, {"data": (1, 2, 5, 5)})
    assert [op.name for op in profile.ops] == ["c", "r1", "fc"] and profile.unsupported == {}
    conv, _, fc = profile.ops
    assert (conv.wbits, conv.abits, conv.macs) == (3, 5, 4 * 25 * 18)
    assert (fc.wbits, fc.abits, fc.macs) == (32, 32, 100 * 6 + 6)
    assert profile.counts.bitops == 4 * 25 * 18 * 15 + 606 * 32 * 32
    assert profile.counts.mults == 4 * 25 * 18 + 100 + 600 and profile.fake_quant_ops > 10
    # the same graph without fake quantization: no BitOps
    plain = mx.sym.Convolution(data, weight, kernel=(3, 3), pad=(1, 1), num_filter=4, no_bias=True, name="c")
    plain = mx.sym.FullyConnected(mx.sym.relu(plain, name="r1"), num_hidden=6, name="fc")
    float_profile = profile_symbol(plain, {"data": (1, 2, 5, 5)})
    assert float_profile.counts == replace(profile.counts, bitops=0) and not float_profile.quantized


@pytest.mark.parametrize("edge_bits", [8, 32])
def test_an_exported_fake_quantized_symbol_profiles_to_the_same_bitops(tmp_path, edge_bits, rng):
    """export/formats.py's symbol of a mixed-precision SubNet (written by HybridBlock.export,
    reloaded, checked against the net) keeps the tags: profile_symbol_file gives its counts."""
    from oneshot_nas.export.formats import export_symbol
    space = quantized_space(edge_bits)
    arch = random_arch(space, rng).replace(wbits=(0, 1, 2, 3), abits=(3, 2, 1, 0))
    net = SubNet(arch)
    net.initialize(mx.init.MSRAPrelu())
    x = mx.nd.random.uniform(-1, 1, shape=(2, 3, space.input_size, space.input_size))
    (symbol_file, _), record = export_symbol(net, tmp_path / "q", x, net(x).asnumpy())
    assert record["ok"]
    profile = profile_symbol_file(symbol_file, input_size=space.input_size)
    expected = count_ops(arch)
    assert [_without_name(op) for op in profile.ops] == [_without_name(op) for op in expected]
    assert profile.counts.bitops == Counts.of(expected).bitops > 0


@pytest.mark.parametrize("name,size", [("tiny", 48), ("oneshot", 160), ("oneshot+", 256)])
def test_graph_count_at_another_input_size(name, size, rng):
    """At another input size the graph count equals the analytic count of the same network in a
    space derived at that size (odd sizes included: 'same' padding rounds up)."""
    space = get_space(name)
    for input_size in (size, size + 7):
        resized = space.derive(space.name, input_size=input_size)
        for _ in range(5):
            arch = random_arch(space, rng)
            profile = profile_arch(arch, input_size)
            expected = count_ops(Architecture(resized, arch.blocks, arch.channels))
            assert [_without_name(op) for op in profile.ops] == [_without_name(op) for op in expected]
            assert profile.input_shape == (1, 3, input_size, input_size)


def test_bn_free_twin_has_the_same_micronet_counts(rng):
    """SubNet(fold_bn=True) replaces each conv+BN by a conv with a bias: MicroNet counts do not
    change, while the papers' MACs gain one per output of each such conv and paper params lose
    BN gamma/beta."""
    arch = random_arch("oneshot+", rng)
    ref = Counts.of(count_ops(arch))
    folded_outputs = sum(math.prod(op.in_shape) for op in count_ops(arch) if op.kind == "bn")
    twin = profile_symbol(SubNet(arch, fold_bn=True)(mx.sym.var("data")), {"data": (1, 3, 224, 224)})
    counts = twin.counts
    assert (counts.params, counts.mults, counts.adds) == (ref.params, ref.mults, ref.adds)
    assert counts.macs == ref.macs + folded_outputs
    assert counts.paper_params == counts.params
    assert not any(op.kind == "bn" for op in twin.ops)


def _export(net, path, size):
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size)))
    net.export(str(path))
    return path.parent / f"{path.name}-symbol.json", path.parent / f"{path.name}-0000.params"


@pytest.mark.parametrize("seed", [0, 1])
def test_per_conv_mults_equal_a_hand_computation(tmp_path, seed):
    """From the exported files alone: mults of each conv = output elements x weight elements per
    filter (C_in/groups x k x k); params = weights (+ C_out biases when a BN or a bias follows)."""
    import numpy as np
    arch = random_arch("tiny", np.random.default_rng(seed))
    symbol_file, params_file = _export(SubNet(arch), tmp_path / "net", 32)
    weights = {k.split(":", 1)[1]: v.shape for k, v in mx.nd.load(str(params_file)).items()}
    sym = mx.sym.load(str(symbol_file))
    internals = sym.get_internals()
    nodes = json.loads(sym.tojson())["nodes"]
    ops = {op.name: op for op in profile_symbol_file(symbol_file, input_size=32).ops}
    convs = 0
    for node in nodes:
        if node["op"] != "Convolution":
            continue
        w = weights[nodes[node["inputs"][1][0]]["name"]]          # (C_out, C_in/g, k, k)
        _, out_shapes, _ = internals[node["name"] + "_output"].infer_shape(data=(1, 3, 32, 32))
        outputs = math.prod(out_shapes[0][1:])
        op = ops[node["name"]]
        assert op.mults == outputs * w[1] * w[2] * w[3]
        assert op.adds == outputs * (w[1] * w[2] * w[3] - 1) + outputs   # bias or folded BN
        assert op.params == math.prod(w) + w[0]
        convs += 1
    assert convs == sum(op.kind == "conv" for op in count_ops(arch))


def test_gluoncv_mobilenetv2_against_the_paper(tmp_path):
    """gluoncv's mobilenetv2_1.0 (random init, exported to a symbol), profiled, against the
    MobileNetV2 paper's Table: 300M multiply-adds, 3.4M parameters.

    - MACs: ours are 300.84M = 300.77M conv multiply-accumulates (classifier included) + 0.06M for
      the global pool (1 per input element, 7x7x1280). The paper's "300M" is this number rounded.
    - params: the paper counts weights only (TF-slim lists the same model as 3.47M): ours are
      3,469,760 weights (gluoncv's classifier is a 1x1 conv without bias), which the paper
      rounds to 3.4M; "paper params" add BN gamma/beta (34,112) = 3.50M, and MicroNet params
      add the folded BN biases instead (17,056) = 3.49M.
    """
    from oneshot_nas.compat import import_gluoncv
    net = import_gluoncv().model_zoo.get_model("mobilenetv2_1.0", pretrained=False)
    symbol_file, _ = _export(net, tmp_path / "mobilenetv2", 224)
    profile = profile_symbol_file(symbol_file, input_size=224)
    counts = profile.counts
    assert profile.unsupported == {}
    conv_macs = sum(op.macs for op in profile.ops if op.kind in ("conv", "fc"))
    pool_macs = sum(op.macs for op in profile.ops if op.kind == "pool")
    assert conv_macs == 300_774_272 and pool_macs == 7 * 7 * 1280
    assert abs(counts.macs - 300e6) / 300e6 < 0.003
    weights = sum(op.paper_params for op in profile.ops if op.kind in ("conv", "fc"))
    bn_params = sum(op.paper_params for op in profile.ops if op.kind == "bn")
    assert weights == 3_469_760 and int(weights / 1e5) / 10 == 3.4
    assert counts.paper_params == weights + bn_params
    assert counts.params == weights + bn_params // 2
    # ReLU6 (clip) counts as a ReLU: 35 of them, quantizable
    assert sum(op.kind == "relu" for op in profile.ops) == 35
    # the exported file and the in-memory symbol give the same counts
    assert gluoncv_counts("mobilenetv2_1.0") == counts


def test_gluoncv_mobilenetv3_hard_swish_is_recognised():
    """gluoncv writes hard-swish as x * relu6(x + 3) / 6: one 'hard_swish' row per use, and its SE
    gate relu6(x + 3) / 6 as one 'hard_sigmoid' row; no scalar arithmetic is left over."""
    from oneshot_nas.cost.graph import gluoncv_symbol
    profile = profile_symbol(gluoncv_symbol("mobilenetv3_large"), {"data": (1, 3, 224, 224)})
    kinds = [op.kind for op in profile.ops]
    assert kinds.count("hard_swish") == 21 and kinds.count("hard_sigmoid") == 8
    assert profile.unsupported == {}
    assert abs(profile.counts.macs - 219e6) / 219e6 < 0.01   # the paper's 219M MAdds


def _small_net(data):
    """conv(+bias) -> BN -> hard-swish, a BN alone, SE-style scale, windowed pools, FC."""
    x = mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=8, name="c1")
    x = mx.sym.BatchNorm(x, name="bn1")
    x = x * mx.sym.hard_sigmoid(x, alpha=1 / 6, beta=0.5, name="hs")
    branch = mx.sym.BatchNorm(x, name="bn_alone")                 # not after a conv
    y = mx.sym.Convolution(x, kernel=(1, 1), num_filter=8, no_bias=True, name="c2")
    z = mx.sym.BatchNorm(y, name="bn2") + y                        # conv output used twice
    gate = mx.sym.sigmoid(mx.sym.Pooling(z, global_pool=True, pool_type="avg", kernel=(1, 1),
                                         name="gp"), name="sig")
    z = mx.sym.broadcast_mul(z, gate, name="scale") + branch
    z = mx.sym.Pooling(z, kernel=(2, 2), stride=(2, 2), pool_type="max", name="mp")
    z = mx.sym.Pooling(z, kernel=(3, 3), stride=(1, 1), pool_type="avg", name="ap")
    z = mx.sym.relu(mx.sym.clip(z, 0, 6, name="relu6"), name="r")
    return mx.sym.FullyConnected(mx.sym.flatten(z), num_hidden=5, name="fc")


def test_graph_rules_by_hand():
    profile = profile_symbol(_small_net(mx.sym.var("data")), {"data": (1, 3, 10, 10)})
    ops = {op.name: op for op in profile.ops}
    e = 8 * 10 * 10                                                  # elements of an 8x10x10 map
    assert (ops["c1"].mults, ops["c1"].adds, ops["c1"].params) == (e * 27, e * 26 + e, 8 * 27 + 8)
    assert ops["c1"].macs == e * 27 + e                              # its own bias is a MAC
    assert (ops["bn1"].mults, ops["bn1"].params, ops["bn1"].paper_params) == (0, 0, 16)
    hswish = [op for op in profile.ops if op.kind == "hard_swish"]
    assert len(hswish) == 1 and (hswish[0].mults, hswish[0].adds) == (3 * e, e)
    assert "hs" not in ops
    assert (ops["bn_alone"].mults, ops["bn_alone"].adds, ops["bn_alone"].params) == (e, e, 16)
    # c2's output also feeds the add, so bn2 cannot fold into it: BN counts on its own
    assert ops["c2"].params == 64 and (ops["bn2"].mults, ops["bn2"].params) == (e, 16)
    assert (ops["gp"].mults, ops["gp"].adds, ops["gp"].macs) == (8, 99 * 8, e)
    assert (ops["sig"].mults, ops["sig"].adds) == (2 * 8, 8)
    assert (ops["scale"].mults, ops["scale"].adds) == (e, 0)
    assert (ops["mp"].mults, ops["mp"].adds, ops["mp"].macs) == (0, 8 * 25 * 3, 0)
    assert (ops["ap"].mults, ops["ap"].adds, ops["ap"].macs) == (8 * 9, 8 * 9 * 8, 8 * 9 * 9)
    assert ops["relu6"].kind == "relu" and ops["relu6"].quantizable
    assert (ops["fc"].mults, ops["fc"].params) == (72 * 5, 72 * 5 + 5)
    adds = [op for op in profile.ops if op.kind == "add"]
    assert len(adds) == 2 and all(op.adds == e for op in adds)
    assert profile.unsupported == {}


def test_unsupported_op_is_reported_by_name_and_counted_zero(caplog):
    data = mx.sym.var("data")
    x = mx.sym.Convolution(data, kernel=(1, 1), num_filter=4, no_bias=True, name="c")
    x = mx.sym.tanh(mx.sym.tanh(x, name="t1"), name="t2")
    x = mx.sym.Activation(x, act_type="softrelu", name="sr")
    x = mx.sym.softmax(mx.sym.flatten(x), name="sm")
    with caplog.at_level(logging.WARNING):
        profile = profile_symbol(x, {"data": (1, 2, 3, 3)})
    assert profile.unsupported == {"tanh": 2, "softmax": 1, "Activation(softrelu)": 1}
    assert "tanh x2" in caplog.text and "softmax x1" in caplog.text and "ZERO" in caplog.text
    assert [op.name for op in profile.ops] == ["c"] and profile.counts.mults == 36 * 2


def test_block_names():
    assert block_name("subnet3_features_p12_main_convunit0_relu0", "subnet3_") == "p12"
    assert block_name("subnet3_stem_convunit0__mul0", "subnet3_") == "stem"
    assert block_name("mobilenetv20_features_linearbottleneck3_conv0_fwd", "mobilenetv20_") \
        == "features_linearbottleneck3"
    assert block_name("resnetv10_stage2_conv1_fwd", "resnetv10_") == "stage2"
    assert block_name("resnetv10_dense0_fwd", "resnetv10_") == "dense0"
    profile = profile_arch(Architecture.largest("tiny"))
    assert [b for b, _, _ in profile.block_summaries()] == ["stem"] + [f"p{i}" for i in range(20)] \
        + ["head"]


def test_symbol_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        profile_symbol_file(tmp_path / "x-symbol.json")
    with pytest.raises(UserError, match="NAME-symbol.json"):
        profile_symbol_file(tmp_path / "x.json")
    (tmp_path / "bad-symbol.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid MXNet symbol"):
        profile_symbol_file(tmp_path / "bad-symbol.json")
    # parameters of another network beside the symbol
    arch = Architecture.largest("tiny")
    net = SubNet(arch)
    symbol_file, params_file = _export(net, tmp_path / "a", 32)
    mx.nd.save(str(params_file), {"arg:unrelated_weight": mx.nd.zeros((2, 2))})
    with pytest.raises(UserError, match="does not belong"):
        profile_symbol_file(symbol_file, input_size=32)
    # parameters of the right names but the wrong shapes
    narrow = Architecture("tiny", arch.blocks, [0] * 20)
    _, narrow_params = _export(SubNet(narrow, prefix=net.prefix), tmp_path / "n", 32)
    params_file.write_bytes(narrow_params.read_bytes())
    with pytest.raises(UserError, match="cannot infer the shapes"):
        profile_symbol_file(symbol_file, input_size=32)
    params_file.write_bytes(b"damaged")
    with pytest.raises(UserError, match="damaged"):
        profile_symbol_file(symbol_file, input_size=32)


def test_arch_symbol_needs_no_parameters():
    sym = arch_symbol(Architecture.largest("tiny"))
    assert sym.list_outputs()[0].endswith("_output") and "data" in sym.list_arguments()
