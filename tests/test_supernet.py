"""The supernet runs only the sampled path, narrowed by slicing, and equals the extracted subnet."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from oneshot_nas.errors import ArchitectureError
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.nn.subnet import SubNet, extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from tests.test_space import random_arch

SPACES = {"tiny": get_space("tiny"),
          # the same topology without SE / hard-swish and with the original last block
          "tiny-plain": get_space("tiny").derive("tiny-plain", se=False, last_block="original",
                                                 dropout=0.1)}


@pytest.fixture(scope="module", params=list(SPACES))
def supernet(request):
    mx.random.seed(0)
    net = SuperNet(SPACES[request.param])
    net.initialize(mx.init.MSRAPrelu())
    net.hybridize()
    return net


def batch(space, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return (mx.nd.array(rng.normal(size=(n, 3, space.input_size, space.input_size))),
            mx.nd.array(rng.integers(0, space.num_classes, n)))


def train_steps(net, archs, seed=0):
    """A few SGD steps on the given paths (moves weights and BN statistics off their init)."""
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05, "momentum": 0.9})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    x, y = batch(net.space, 8, seed)
    for arch in archs:
        with autograd.record():
            loss = loss_fn(net(x, arch), y)
        loss.backward()
        trainer.step(8, ignore_stale_grad=True)
    mx.nd.waitall()


@pytest.mark.parametrize("block", range(4))
@pytest.mark.parametrize("channel", [0, 4, 9])
def test_only_the_sampled_path_gets_gradients(supernet, block, channel):
    """Every block choice at every stride (each arch has 4 stride-2 and 16 stride-1 positions) and
    several widths: output shape; every parameter on the path gets a gradient, the channels beyond
    the active width get exactly zero, and the other candidates get none at all."""
    space = supernet.space
    arch = Architecture(space, [block] * 20, [channel] * 20)
    params = supernet.collect_params()
    params.zero_grad()
    x, y = batch(space)
    with autograd.record():
        out = supernet(x, arch)
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(out, y)
    loss.backward()
    assert out.shape == (4, space.num_classes)
    for p, row in enumerate(supernet.candidates):
        for b, candidate in enumerate(row):
            for name, param in candidate.collect_params().items():
                if param.grad_req == "null":
                    continue
                grad = param.grad().asnumpy()
                if b != block:
                    assert not grad.any(), f"unused candidate {name} received a gradient"
                    continue
                mid = space.mid(p, channel)
                assert np.abs(grad).sum() > 0, f"{name} on the path got no gradient"
                conv = _elastic_conv_of(candidate.width_view(mid), name)
                if conv is not None and conv.active_out < grad.shape[0]:
                    assert not grad[conv.active_out:].any(), f"{name} beyond width {mid} got a gradient"
    for param in list(supernet.stem.collect_params().values()) + list(supernet.head.collect_params().values()):
        if param.grad_req != "null":
            assert np.abs(param.grad().asnumpy()).sum() > 0


def _elastic_conv_of(block, param_name):
    for unit in list(block.main) + list(block.proj):
        if param_name.startswith(unit.conv.prefix):
            return unit.conv
    return None


def test_changing_a_choice_changes_the_output(supernet, rng):
    x, _ = batch(supernet.space)
    arch = random_arch(supernet.space, rng)
    base = supernet(x, arch).asnumpy()
    blocks, channels = list(arch.blocks), list(arch.channels)
    blocks[5] = (blocks[5] + 1) % 4
    assert not np.allclose(supernet(x, Architecture(arch.space, blocks, arch.channels)).asnumpy(), base)
    channels[12] = (channels[12] + 3) % 10
    assert not np.allclose(supernet(x, Architecture(arch.space, arch.blocks, channels)).asnumpy(), base)
    np.testing.assert_array_equal(supernet(x, arch).asnumpy(), base)   # and back again


def paths_equal_their_subnets(supernet, archs, x, rtol=1e-4, atol=1e-5):
    """Check that the supernet on each path computes what the path's extracted, hybridized subnet
    computes (training mode: BatchNorm on batch statistics, as the supernet trains); the subnets."""
    subs = []
    for arch in archs:
        with autograd.train_mode():
            expected = supernet(x, arch).asnumpy()
        sub = extract_subnet(supernet, arch)
        sub.hybridize(static_alloc=True)
        with autograd.train_mode():
            np.testing.assert_allclose(sub(x).asnumpy(), expected, rtol=rtol, atol=atol)
        subs.append(sub)
    return subs


def test_extracted_subnet_equals_the_supernet_path(rng):
    """After training on changing paths, the supernet on a path computes what the hybridized
    extracted subnet computes (in training mode: BatchNorm on batch statistics, as the supernet
    trains and as paths are recalibrated; dropout off), for random architectures including every
    block (SXB among them) and both strides."""
    for space in SPACES.values():
        space = space.derive(f"{space.name}-nodrop", dropout=0.0)
        mx.random.seed(0)
        supernet = SuperNet(space)
        supernet.initialize(mx.init.MSRAPrelu())
        supernet.hybridize()
        archs = [random_arch(space, rng) for _ in range(4)]
        archs.append(Architecture(space, [3] * 20, [0] * 20))        # all SXB at the narrowest width
        archs.append(Architecture.largest(space))
        train_steps(supernet, archs + [random_arch(space, rng) for _ in range(3)])
        x, _ = batch(space, 6, seed=3)
        for arch, sub in zip(archs, paths_equal_their_subnets(supernet, archs, x)):
            # the subnet is a plain network of the right widths
            assert [b.mid for b in sub.features] == list(arch.mids)


def test_subnet_trains_hybridized_and_changes_output(rng):
    """A fixed subnet is hybridizable and its backward works at every width (regression: oneDNN's
    4-D concat backward crashed on channel splits that cut its blocked layout)."""
    space = SPACES["tiny"]
    for _ in range(3):
        arch = random_arch(space, rng)
        net = SubNet(arch)
        net.initialize(mx.init.MSRAPrelu())
        net.hybridize(static_alloc=True, static_shape=True)
        x, y = batch(space, 8)
        before = net(x).asnumpy()
        trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
        with autograd.record():
            loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y)
        loss.backward()
        trainer.step(8)
        assert not np.allclose(net(x).asnumpy(), before)


def test_supernet_rejects_an_architecture_of_another_space():
    net = SuperNet("tiny")
    net.initialize()
    other = Architecture.largest(SPACES["tiny-plain"])
    with pytest.raises(ArchitectureError, match="this supernet is 'tiny'"):
        net(batch(SPACES["tiny"])[0], other)


@pytest.mark.parametrize("name", ["oneshot", "oneshot+"])
def test_supernet_holds_every_candidate_at_full_width(name):
    """The MXNet parameters of the paper supernets equal the analytic count of stem + head + every
    candidate at its widest (the OneShot supernet: 15.94M trainable parameters)."""
    from oneshot_nas.cost.counting import Counts, block_ops, head_ops, stem_ops
    space = get_space(name)
    net = SuperNet(space)
    net.initialize()
    total = sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
    expected = Counts.of(stem_ops(space) + head_ops(space)).paper_params + sum(
        Counts.of(block_ops(space, p, b, space.num_scales - 1)).paper_params
        for p in range(space.num_positions) for b in range(space.num_blocks))
    assert total == expected
    if name == "oneshot":
        assert total == 15_939_672
