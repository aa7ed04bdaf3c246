"""A path as one static graph: exact BN recalibration over a whole slice, the predictions of the
extracted subnet, traced parts shared between paths, and the source network never touched."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from oneshot_nas.errors import UserError
from oneshot_nas.nn.layers import ElasticBatchNorm
from oneshot_nas.nn.pathgraph import PathGraph, PathPieces
from oneshot_nas.nn.subnet import SubNet, extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from tests.test_space import random_arch

CONTEXTS = [[mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]]


@pytest.fixture(scope="module")
def supernet():
    """A tiny supernet whose BN affine parameters and running statistics are not at their init."""
    mx.random.seed(0)
    net = SuperNet("tiny")
    net.initialize(mx.init.MSRAPrelu())
    r = np.random.default_rng(0)
    for name, p in net.collect_params().items():
        if name.endswith(("gamma", "running_var")):
            p.set_data(mx.nd.array(r.uniform(0.5, 1.5, p.shape)))
        elif name.endswith(("beta", "running_mean")):
            p.set_data(mx.nd.array(r.normal(0, 0.2, p.shape)))
    return net


def exact_moments(subnet, parts):
    """Per BN of `subnet`, in order: the mean and biased variance of its inputs over every part,
    with each part run imperatively in training mode (BN normalising with that part's statistics,
    as the path graph does on each device)."""
    sums = {}
    def hook(block, inputs):
        x = inputs[0].asnumpy().astype(np.float64)
        n = x.shape[0] * x.shape[2] * x.shape[3]
        s, q, c = sums.get(block, (0.0, 0.0, 0))
        sums[block] = (s + x.sum(axis=(0, 2, 3)), q + (x * x).sum(axis=(0, 2, 3)), c + n)
    bns = []
    def walk(b):
        if isinstance(b, ElasticBatchNorm):
            bns.append(b)
            b.register_forward_pre_hook(hook)
        for child in b._children.values():
            walk(child)
    walk(subnet)
    with autograd.train_mode():
        for part in parts:
            subnet(part)
    out = []
    for bn in bns:
        s, q, c = sums[bn]
        out.append((s / c, q / c - (s / c) ** 2))
    return out


@pytest.mark.parametrize("contexts", CONTEXTS, ids=["1ctx", "2ctx"])
def test_recalibration_sets_the_exact_statistics_of_the_whole_slice(supernet, contexts, rng):
    arch = random_arch(supernet.space, rng)
    before = {k: v.data().asnumpy().copy() for k, v in supernet.collect_params().items()}
    data = [mx.nd.array(rng.normal(0.5, 2.0, (n, 3, 32, 32))) for n in (16, 16, 6)]
    graph = PathGraph(supernet, arch, contexts)
    assert graph.calibrate(data) == 38
    stats = graph.running_stats()
    # the stem BN holds the mean and biased variance of its input over all 38 images, not the last batch
    stem_conv = supernet.stem.conv.conv
    y = stem_conv(mx.nd.concat(*data, dim=0)).asnumpy()
    (mean, var), = [v for k, v in stats.items() if "stem" in k[0]]
    np.testing.assert_allclose(mean, y.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, y.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not np.allclose(mean, stem_conv(data[-1]).asnumpy().mean(axis=(0, 2, 3)), rtol=1e-3)
    # every BN of the path holds the exact moments of its inputs (computed here independently, on
    # the extracted subnet with each device's part of each batch)
    sub = extract_subnet(supernet, arch)
    parts = [p.as_in_context(mx.cpu()) for x in data for p in mx.gluon.utils.split_and_load(x, contexts, even_split=False)]
    expected = exact_moments(sub, parts)
    ours = list(stats.values())
    assert len(ours) == len(expected) > 30
    for (got_mean, got_var), (want_mean, want_var) in zip(ours, expected):
        np.testing.assert_allclose(got_mean, want_mean, rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(got_var, want_var, rtol=2e-3, atol=1e-4)
    # the supernet itself was left alone
    for k, v in supernet.collect_params().items():
        np.testing.assert_array_equal(v.data().asnumpy(), before[k])
    # stored into the extracted subnet, the statistics make it predict what the graph predicts
    sub_graph = PathGraph(sub, contexts=contexts)
    sub_graph.calibrate(data)
    sub_graph.store_statistics()
    x = mx.nd.array(rng.normal(size=(10, 3, 32, 32)))
    np.testing.assert_allclose(graph.predict(x).asnumpy(), sub(x).asnumpy(), rtol=1e-3, atol=1e-4)
    with pytest.raises(TypeError, match="SubNet only"):
        graph.store_statistics()
    with pytest.raises(UserError, match="no images"):
        PathGraph(supernet, arch).calibrate([])


def test_paths_share_traced_parts_and_still_differ(supernet, rng):
    a = random_arch(supernet.space, rng)
    b = type(a)(a.space, a.blocks, a.channels[:10] + tuple((c + 3) % 10 for c in a.channels[10:]))
    x = mx.nd.array(rng.normal(size=(8, 3, 32, 32)))
    pieces, outs = PathPieces(supernet), []
    for arch in (a, b, a):
        graph = PathGraph(supernet, arch, [mx.cpu()], pieces)
        graph.calibrate([x])
        outs.append(graph.predict(x).asnumpy())
    assert len(pieces._cache) == 2 + 20 + 10          # stem, head, a's blocks, b's 10 others
    assert not np.allclose(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    fresh = PathGraph(supernet, b, [mx.cpu()])
    fresh.calibrate([x])
    np.testing.assert_array_equal(fresh.predict(x).asnumpy(), outs[1])


@pytest.mark.parametrize("contexts", CONTEXTS, ids=["1-ctx", "2-ctx"])
def test_a_search_shares_weight_copies_and_computes_what_fresh_graphs_compute(supernet, contexts, rng):
    """Frozen pieces (a search) keep their weight copies for every later path; each path still
    calibrates its own statistics, and the supernet is never written."""
    before = {k: p.data().asnumpy() for k, p in supernet.collect_params().items()}
    a = random_arch(supernet.space, rng)
    b = a.replace(channels=a.channels[:10] + tuple((c + 3) % 10 for c in a.channels[10:]))
    x, y = (mx.nd.array(rng.normal(size=(8, 3, 32, 32))) for _ in range(2))
    frozen = PathPieces(supernet, frozen=True)
    for arch, data in ((a, x), (b, y), (a, y), (b, x)):
        shared = PathGraph(supernet, arch, contexts, frozen)
        shared.calibrate([data])
        fresh = PathGraph(supernet, arch, contexts)
        fresh.calibrate([data])
        np.testing.assert_array_equal(shared.predict(x).asnumpy(), fresh.predict(x).asnumpy())
    first, second = (PathGraph(supernet, a, contexts, frozen) for _ in range(2))
    weight = next(name for name in first.inputs if name.endswith("weight"))
    assert all(first.arrays[c][weight] is second.arrays[c][weight] for c in contexts)
    mean = first.bns[0][0]
    assert all(first.arrays[c][mean] is not second.arrays[c][mean] for c in contexts)
    for k, p in supernet.collect_params().items():
        np.testing.assert_array_equal(p.data().asnumpy(), before[k], err_msg=k)


def test_a_subnet_is_its_own_path_and_counts_top_k(rng):
    arch = random_arch("tiny", rng)
    net = SubNet(arch)
    net.initialize(mx.init.MSRAPrelu())
    x = mx.nd.array(rng.normal(size=(12, 3, 32, 32)))
    graph = PathGraph(net)
    np.testing.assert_allclose(graph.predict(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
    logits = net(x).asnumpy()
    labels = rng.integers(0, 10, 12)
    ranks = (-logits).argsort(axis=1)
    top1, top5, n = graph.counts([(x, labels)])
    assert (top1, top5, n) == (int((ranks[:, 0] == labels).sum()),
                               int((ranks[:, :5] == labels[:, None]).any(axis=1).sum()), 12)
    with pytest.raises(UserError, match="has no path"):
        PathGraph(net, random_arch("tiny", rng))
    with pytest.raises(TypeError, match="a SuperNet, a SubNet or another HybridBlock"):
        PathPieces(object())


def test_nll_counts_the_cross_entropy_of_the_true_labels(rng):
    net = SubNet(random_arch("tiny", rng))
    net.initialize(mx.init.MSRAPrelu())
    x = mx.nd.array(rng.normal(size=(10, 3, 32, 32)))
    labels = rng.integers(0, 10, 10)
    logits = net(x).asnumpy().astype(np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    top1, top5, n, nll = PathGraph(net).counts([(x[:6], labels[:6]), (x[6:], labels[6:])], nll=True)
    assert n == 10 and nll == pytest.approx(-logp[np.arange(10), labels].sum(), rel=1e-4)
    assert (top1, top5, n) == PathGraph(net).counts([(x, labels)])
