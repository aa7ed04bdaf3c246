"""Fake quantization (nn/quant.py): the straight-through gradient, 8 bits close to float, a
supernet path's quantization equal to the extracted subnet's, and a quantized search space end to
end through the supernet, path graphs and subnets."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from oneshot_nas.nn.pathgraph import PathGraph
from oneshot_nas.nn.quant import initial_range, quantize_act, quantize_weight
from oneshot_nas.nn.subnet import SubNet
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.recipe import Precision
from oneshot_nas.space import Architecture, get_space
from tests.test_space import random_arch
from tests.test_supernet import batch, paths_equal_their_subnets, train_steps


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weights_take_2_to_the_bits_minus_1_levels_and_pass_the_gradient_straight_through(bits, rng):
    w = mx.nd.array(rng.normal(size=(6, 5, 3, 3)))
    g = mx.nd.array(rng.normal(size=w.shape))
    w.attach_grad()
    with autograd.record():
        q = quantize_weight(mx.nd, w, bits)
        loss = (q * g).sum()
    loss.backward()
    np.testing.assert_array_equal(w.grad.asnumpy(), g.asnumpy())          # STE: identity
    levels = 2 ** (bits - 1) - 1
    scale = np.abs(w.asnumpy()).reshape(6, -1).max(axis=1) / levels
    steps = q.asnumpy().reshape(6, -1) / scale[:, None]
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)        # on the grid
    assert np.abs(steps).max() <= levels + 1e-4
    assert np.abs(q.asnumpy() - w.asnumpy()).reshape(6, -1).max(axis=1).max() <= scale.max() / 2 + 1e-6


@pytest.mark.parametrize("in_act,low", [(None, -2.0), ("relu", 0.0), ("hard_swish", -0.375)])
@pytest.mark.parametrize("bits", [2, 4])
def test_activations_clip_to_their_range_and_the_gradient_is_straight_through_and_pact(in_act, low, bits, rng):
    x = mx.nd.array(rng.normal(scale=2.0, size=(4, 3, 5, 5)))
    g = mx.nd.array(rng.normal(size=x.shape))
    ranges = mx.nd.array([9.0, 2.0])                  # widths (8, bits): this layer runs at `bits`
    precision = Precision(bits, bits, (8, bits))
    for a in (x, ranges):
        a.attach_grad()
    with autograd.record():
        q = quantize_act(mx.nd, x, ranges, precision, in_act)
        loss = (q * g).sum()
    loss.backward()
    xs, gs, alpha = x.asnumpy(), g.asnumpy(), 2.0
    inside = (xs > low) & (xs < alpha)
    np.testing.assert_array_equal(x.grad.asnumpy(), np.where(inside, gs, 0.0))
    expected_alpha = gs[xs >= alpha].sum() - (gs[xs <= -alpha].sum() if in_act is None else 0.0)
    np.testing.assert_allclose(ranges.grad.asnumpy(), [0.0, expected_alpha], rtol=1e-4, atol=1e-4)
    step = (alpha - low) / (2 ** bits - 1)
    values = np.unique(np.round((q.asnumpy() - low) / step, 3))
    assert set(values) <= set(range(2 ** bits)) and len(values) == 2 ** bits
    assert initial_range(2) < initial_range(8)


def float_twin(space):
    return space.derive(space.name + "-float", bit_widths=(), edge_bits=8)


def test_8_bits_compute_within_tolerance_of_the_float_network(rng):
    """A quantized subnet at 8 bits everywhere, with the float network's weights, gives its logits
    to within 5% of their spread (and mostly the same top-1 on 32 images), while 2 bits do not."""
    space = get_space("tiny4-q").derive("tiny4-q-nodrop", dropout=0.0)
    arch = random_arch(space, rng)
    n = space.num_positions
    eight = arch.replace(wbits=(3,) * n, abits=(3,) * n)
    ref = SubNet(Architecture(float_twin(space), arch.blocks, arch.channels))
    mx.random.seed(1)
    ref.initialize(mx.init.MSRAPrelu())
    x = mx.nd.array(rng.normal(size=(32, 3, 32, 32)))
    with autograd.train_mode():          # BatchNorm on batch statistics: activations of a trained net's scale
        expected = ref(x).asnumpy()
    outs = {}
    for bits, a in ((8, eight), (2, arch.replace(wbits=(0,) * n, abits=(0,) * n))):
        net = SubNet(a)
        net.initialize(mx.init.Zero())
        weights = {k: v for k, v in ref._collect_params_with_prefix().items()}
        for name, p in net._collect_params_with_prefix().items():
            if name in weights:
                p.set_data(weights[name].data())
        with autograd.train_mode():
            outs[bits] = net(x).asnumpy()
    spread = expected.max() - expected.min()
    assert np.abs(outs[8] - expected).max() < 0.05 * spread        # measured: 3.4%
    assert (outs[8].argmax(1) == expected.argmax(1)).mean() >= 0.9  # measured: 31 of 32
    assert np.abs(outs[2] - expected).max() > 5 * np.abs(outs[8] - expected).max()   # 2 bits: 47%


def test_a_quantized_supernet_path_equals_its_extracted_subnet_and_its_path_graph(rng):
    """After training on changing paths (and bit widths), the supernet on a path computes what the
    extracted subnet computes to 1e-5 (train mode: batch statistics), and its path graph agrees
    in inference mode; a change of one bit gene changes the output."""
    space = get_space("tiny4-q").derive("tiny4-q-nodrop", dropout=0.0)
    mx.random.seed(0)
    supernet = SuperNet(space)
    supernet.initialize(mx.init.MSRAPrelu())
    supernet.hybridize()
    archs = [random_arch(space, rng) for _ in range(5)] + [Architecture.largest(space)]
    train_steps(supernet, archs + [random_arch(space, rng) for _ in range(3)])
    x, _ = batch(space, 6, seed=3)
    for arch, sub in zip(archs, paths_equal_their_subnets(supernet, archs, x, rtol=1e-5)):
        graph, sub_graph = PathGraph(supernet, arch), PathGraph(sub)
        graph.calibrate([x]), sub_graph.calibrate([x])
        np.testing.assert_allclose(graph.predict(x).asnumpy(), sub_graph.predict(x).asnumpy(), rtol=1e-5, atol=1e-5)
    arch = archs[0]
    flipped = list(arch.abits)
    flipped[1] = (flipped[1] + 1) % 4
    with autograd.train_mode():
        assert not np.allclose(supernet(x, arch.replace(abits=flipped)).asnumpy(), supernet(x, arch).asnumpy())
    # every conv of the path owns a range per width; the path trained the ranges of its own widths
    ranges = [p for name, p in supernet.collect_params().items() if name.endswith("act_range")]
    assert ranges and all(p.shape == (4,) or p.shape == (1,) for p in ranges)


def test_a_fake_quantized_subnet_exports_as_a_symbol_and_int8_only_at_8_bits(tmp_path, rng):
    """The symbol of a mixed-precision subnet reproduces it (its rounding included); int8, ONNX
    and PyTorch are refused with the fix, int8 only while some width is below 8."""
    from oneshot_nas.errors import UserError
    from oneshot_nas.export.formats import check_quantized, export
    space = get_space("tiny4-q")
    arch = random_arch(space, rng).replace(wbits=(0, 1, 2, 3), abits=(3, 2, 1, 0))
    net = SubNet(arch)
    mx.random.seed(0)
    net.initialize(mx.init.MSRAPrelu())
    summary = export(net, name="q", out_dir=tmp_path, targets=["symbol"])
    assert summary["ok"] and summary["checks"]["symbol"]["max_abs_error"] < 1e-4
    assert (tmp_path / "q-symbol.json").exists()
    with pytest.raises(UserError, match=r"int8 export needs every bit width at 8, but .* uses \[2, 3, 4, 8\] bits"):
        export(net, name="q", out_dir=tmp_path, targets=["symbol", "int8"])
    with pytest.raises(UserError, match="onnx, pytorch cannot carry its bit widths"):
        export(net, name="q", out_dir=tmp_path, targets=["onnx", "pytorch"])
    # at 8 bits everywhere the int8 model is oneDNN's of the float twin with the same weights
    eight = SubNet(arch.replace(wbits=(3,) * 4, abits=(3,) * 4))
    eight.initialize(mx.init.MSRAPrelu())
    twin = check_quantized(eight, ["int8"], merge_bn=False)
    assert not twin.arch.space.quantized and twin.arch.blocks == arch.blocks
    x, _ = batch(space, 4)
    np.testing.assert_allclose(twin.head.classifier.weight.data().asnumpy(),
                               eight.head.classifier.weight.data().asnumpy())
