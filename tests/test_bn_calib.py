"""BN recalibration re-estimates exact statistics of the path, and only of the path."""
import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.nn.bn_calib import path_batchnorms, recalibrate_bn
from oneshot_nas.space import get_space
from oneshot_nas.nn.subnet import extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from tests.test_space import random_arch


@pytest.mark.parametrize("contexts", [[mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]])
def test_recalibration_sets_the_true_statistics_of_the_data(contexts, rng):
    space = get_space("tiny")
    net = SuperNet(space)
    net.initialize(mx.init.MSRAPrelu(), ctx=contexts)
    net.hybridize()
    arch = random_arch(space, rng)
    data = [mx.nd.array(rng.normal(1.0, 2.0, (n, 3, 32, 32))) for n in (16, 16, 6)]
    def stats(bn):
        return np.concatenate([bn.running_mean.data(contexts[0]).asnumpy(),
                               bn.running_var.data(contexts[0]).asnumpy()])
    before = {bn: stats(bn) for row in net.candidates for cand in row for bn in path_batchnorms(cand)}
    assert recalibrate_bn(net, data, arch) == 38
    # the stem BN now holds the mean and (biased) variance of its input over all 38 images
    stem = net.stem.conv
    y = stem.conv(mx.nd.concat(*data, dim=0).as_in_context(contexts[0])).asnumpy()
    for ctx in contexts:
        np.testing.assert_allclose(stem.bn.running_mean.data(ctx).asnumpy(), y.mean(axis=(0, 2, 3)),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stem.bn.running_var.data(ctx).asnumpy(), y.var(axis=(0, 2, 3)),
                                   rtol=1e-4, atol=1e-5)
    # path BNs changed within their active width only; every other candidate is untouched
    on_path = set(path_batchnorms(net, arch))
    for bn, old in before.items():
        new, c, a = stats(bn), bn.channels, bn.active
        if bn in on_path:   # (a BN after a depthwise conv of BN output keeps mean 0: check var too)
            assert not np.allclose(np.r_[new[:a], new[c:c + a]], np.r_[old[:a], old[c:c + a]])
            np.testing.assert_array_equal(np.r_[new[a:c], new[c + a:]], np.r_[old[a:c], old[c + a:]])
        else:
            np.testing.assert_array_equal(new, old)


def test_recalibrated_supernet_and_subnet_agree(rng):
    """Recalibrating the supernet path or its extracted subnet gives the same statistics."""
    space = get_space("tiny")
    net = SuperNet(space)
    net.initialize(mx.init.MSRAPrelu())
    arch = random_arch(space, rng)
    data = [mx.nd.array(rng.normal(size=(12, 3, 32, 32))) for _ in range(2)]
    sub = extract_subnet(net, arch)
    sub.hybridize()
    recalibrate_bn(net, data, arch)
    recalibrate_bn(sub, data)
    x = data[0][:4]
    np.testing.assert_allclose(net(x, arch).asnumpy(), sub(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_empty_slice_is_refused():
    net = SuperNet("tiny")
    net.initialize()
    with pytest.raises(ValueError, match="no data"):
        recalibrate_bn(net, [], None)
