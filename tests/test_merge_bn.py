"""Folding BatchNorm into the convolutions leaves a network that computes the same outputs."""
import json

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.nn.layers import ElasticBatchNorm
from oneshot_nas.nn.merge_bn import merge_bn, units
from oneshot_nas.space import get_space
from oneshot_nas.nn.subnet import SubNet
from tests.test_space import random_arch

TINY = get_space("tiny")
# SE + hard-swish on and off, both last blocks (the tiny preset is SE + MobileNetV3 head), and SE
# searched (an SE gene per position)
SPACES = {"tiny": TINY,
          "tiny-plain": TINY.derive("tiny-plain", se=False, last_block="original", dropout=0.1),
          "tiny-se-orig": TINY.derive("tiny-se-orig", last_block="original"),
          "tiny-mv3": TINY.derive("tiny-mv3", se=False),
          "tiny-sesearch": TINY.derive("tiny-sesearch", se_search=True)}


def inputs(space, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return mx.nd.array(rng.normal(size=(n, 3, space.input_size, space.input_size)))


def randomised_subnet(arch, seed=0):
    """A SubNet whose every parameter is off its initial value: random weights, and random BN
    affine parameters, statistics and biases, so that no BatchNorm is an identity. The statistics
    are drawn in a well-conditioned range (variance 0.5..1.5): statistics estimated from a few
    random images leave near-constant channels whose tiny variance amplifies float32 rounding a
    hundredfold, in the original network as much as in any converted one."""
    rng = np.random.default_rng(seed)
    mx.random.seed(seed)
    net = SubNet(arch)
    net.initialize(mx.init.MSRAPrelu())
    for name, param in net.collect_params().items():
        if name.endswith(("gamma", "running_var")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif name.endswith(("beta", "bias", "running_mean")):
            param.set_data(mx.nd.array(rng.normal(0, 0.2, param.shape)))
    return net


def max_error(a, b):
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("seed", [0, 1])
def test_merged_network_equals_the_original(space, seed):
    arch = random_arch(SPACES[space], np.random.default_rng(seed))
    net = randomised_subnet(arch, seed)
    bns = [b for u in units(net) for b in [getattr(u, "bn", None)] if b is not None]
    means = np.concatenate([b.running_mean.data().asnumpy() for b in bns])
    assert bns and np.abs(means).max() > 0.01          # the statistics are not the initial identity
    merged = merge_bn(net)
    x = inputs(arch.space, seed=seed + 7)
    expected = net(x).asnumpy()
    assert np.abs(expected).max() > 0.1
    assert max_error(merged(x).asnumpy(), expected) < 1e-4
    merged.hybridize()                                  # and as a static graph
    assert max_error(merged(x).asnumpy(), expected) < 1e-4


def test_merged_network_has_no_batchnorm_and_a_bias_per_folded_conv(tmp_path):
    arch = random_arch(TINY, np.random.default_rng(3))
    net = randomised_subnet(arch)
    merged = merge_bn(net)
    assert not any(isinstance(b, ElasticBatchNorm) for b in _all_blocks(merged))
    merged.hybridize()
    merged(inputs(TINY, 1))
    merged.export(str(tmp_path / "m"))
    ops = {n["op"] for n in json.loads((tmp_path / "m-symbol.json").read_text())["nodes"]}
    assert "BatchNorm" not in ops and "Convolution" in ops
    folded = sum(1 for u in units(net) if getattr(u, "bn", None) is not None)
    biased = sum(1 for u in units(merged) if getattr(u, "conv", None) is not None
                 and u.conv.bias is not None)
    already = sum(1 for u in units(net) if getattr(u, "conv", None) is not None and u.conv.bias is not None)
    assert biased == folded + already


def test_merging_twice_is_refused():
    net = randomised_subnet(random_arch(TINY, np.random.default_rng(4)))
    with pytest.raises(ValueError, match="no BatchNorm"):
        merge_bn(merge_bn(net))


def _all_blocks(block):
    yield block
    for child in block._children.values():
        yield from _all_blocks(child)
