"""The PyTorch module computes what the MXNet SubNet computes, and thop counts what we count.

thop conventions (thop 0.1.1): a convolution costs output elements x (C_in / groups) x k x k
multiply-accumulates, a Linear layer in_features x out_features; neither counts a bias. Our `macs`
(counting.conv_op / fc_op) add one per output for an EXPLICIT bias (SE convs, the MobileNetV3 head
conv, the classifier) and nothing for a BatchNorm, which is folded into its conv. So, layer by layer:
thop + (outputs if the layer has its own bias) == our macs. thop runs at batch 1 (it counts per batch).
"""
import numpy as np
import pytest

from oneshot_nas.compat import import_torch
from oneshot_nas.cost.counting import count_ops
from oneshot_nas.nn.merge_bn import merge_bn
from oneshot_nas.errors import UserError
from oneshot_nas.space import Architecture, conv_out_size
from tests.test_merge_bn import SPACES, inputs, randomised_subnet
from tests.test_space import random_arch

torch = import_torch()
from oneshot_nas.export import torch_model  # noqa: E402  (after torch, through compat)


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("merged", [False, True])
def test_outputs_equal_mxnet(space, merged):
    arch = random_arch(SPACES[space], np.random.default_rng(10))
    net = randomised_subnet(arch, 10)
    if merged:
        net = merge_bn(net)
    model = torch_model.from_mxnet(net)
    x = inputs(arch.space, 3, seed=11)
    expected = net(x).asnumpy()
    with torch.no_grad():
        got = model(torch.from_numpy(x.asnumpy())).numpy()
    assert np.abs(expected).max() > 0.1
    assert np.abs(got - expected).max() < 1e-4


def test_every_block_choice_and_width():
    """All four block choices at both strides and the extreme widths, in one network each."""
    space = SPACES["tiny"]
    for block in range(space.num_blocks):
        for channel in (0, space.num_scales - 1):
            arch = Architecture(space, [block] * 20, [channel] * 20)
            net = randomised_subnet(arch, block)
            x = inputs(space, 2, seed=block)
            with torch.no_grad():
                got = torch_model.from_mxnet(net)(torch.from_numpy(x.asnumpy())).numpy()
            assert np.abs(got - net(x).asnumpy()).max() < 1e-4, (block, channel)


def test_state_dict_round_trip(tmp_path):
    arch = random_arch(SPACES["tiny-plain"], np.random.default_rng(12))
    net = randomised_subnet(arch, 12)
    model = torch_model.from_mxnet(net)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = torch_model.load(tmp_path / "m.pt", arch)
    x = torch.from_numpy(inputs(arch.space, 2).asnumpy())
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    other = random_arch(SPACES["tiny-plain"], np.random.default_rng(13))
    with pytest.raises(UserError, match="does not fit architecture"):
        torch_model.load(tmp_path / "m.pt", other)


def _thop_layers(model, space):
    """(module, thop MACs) of every Conv2d and Linear, in network order, at batch 1."""
    thop = pytest.importorskip("thop")
    x = torch.zeros(1, 3, space.input_size, space.input_size)
    _, _, tree = thop.profile(model, inputs=(x,), verbose=False, ret_layer_info=True)
    found = []

    def walk(module, info):
        for name, child in module.named_children():
            ops, _, sub = info[name]
            if isinstance(child, (torch.nn.Conv2d, torch.nn.Linear)):
                found.append((child, ops))
            else:
                walk(child, sub)
    walk(model, tree)
    return found


@pytest.mark.parametrize("space", list(SPACES))
def test_thop_agrees_with_our_counts_layer_by_layer(space):
    arch = random_arch(SPACES[space], np.random.default_rng(14))
    model = torch_model.TorchSubNet(arch).eval()
    layers = _thop_layers(model, arch.space)
    ours = [op for op in count_ops(arch) if op.kind in ("conv", "fc")]
    assert len(layers) == len(ours)
    for (module, thop_macs), op in zip(layers, ours):
        if isinstance(module, torch.nn.Linear):
            assert op.kind == "fc" and (module.in_features, module.out_features) == (op.c_in, op.c_out)
            outputs = op.c_out
        else:
            assert op.kind == "conv", op.name
            assert (module.in_channels, module.out_channels, module.kernel_size[0]) == \
                (op.c_in, op.c_out, op.kernel), op.name
            outputs = op.c_out * conv_out_size(op.in_shape[1], module.stride[0]) * \
                conv_out_size(op.in_shape[2], module.stride[0])
        bias = outputs if module.bias is not None else 0
        assert int(thop_macs) + bias == op.macs, op.name
