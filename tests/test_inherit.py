"""Inheritance: after it, every SNB path computes exactly what the reference path computes."""
import mxnet as mx
import numpy as np

from oneshot_nas.nn.inherit import inherit_from_path
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.nn.supernet import SuperNet
from tests.test_supernet import batch, train_steps


def test_inherited_candidates_match_the_reference_path():
    space = get_space("tiny")
    mx.random.seed(1)
    net = SuperNet(space)
    net.initialize(mx.init.MSRAPrelu())
    reference = Architecture.largest(space)                  # SNB-3 everywhere, full width
    train_steps(net, [reference] * 3)                        # non-trivial weights and BN statistics
    x, _ = batch(space, 6, seed=5)
    snb5 = Architecture(space, [1] * 20, reference.channels)
    before = net(x, snb5).asnumpy()
    assert inherit_from_path(net, reference) == 60
    expected = net(x, reference).asnumpy()
    assert not np.allclose(before, expected)
    rng = np.random.default_rng(0)
    for _ in range(3):   # any mix of SNB-3/5/7 now equals the reference (kernels zero-padded)
        mixed = Architecture(space, rng.integers(0, 3, 20).tolist(), reference.channels)
        np.testing.assert_allclose(net(x, mixed).asnumpy(), expected, rtol=1e-4, atol=1e-5)


def test_other_families_start_as_no_ops():
    space = get_space("tiny")
    net = SuperNet(space)
    net.initialize(mx.init.MSRAPrelu())
    inherit_from_path(net, Architecture.largest(space))
    sxb = net.candidates[5][3]                               # a stride-1 SXB block
    x = mx.nd.array(np.random.default_rng(0).normal(size=(4, 32, 4, 4)))
    with mx.autograd.train_mode():
        out = sxb(x).asnumpy()
    assert not out[:, 16:].any()                             # main half silent
    assert out[:, :16].any()
    # stride-2 SXB took the SNB-3 projection branch
    np.testing.assert_array_equal(net.candidates[4][3].proj[1].conv.weight.data().asnumpy(),
                                  net.candidates[4][0].proj[1].conv.weight.data().asnumpy())
