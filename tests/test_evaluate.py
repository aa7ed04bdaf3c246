"""Candidate scoring: exact BN recalibration of a path graph, held-out split, zero-cost scores."""
import logging

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.nn.bn_calib import recalibrate_bn
from oneshot_nas.cost.constraints import Constraints, CostModel, Objective
from oneshot_nas.cost.counting import Counts, count_ops
from oneshot_nas.data.sources import embedded_digits, load_slice
from oneshot_nas.errors import UserError
from oneshot_nas.search.evaluate import (CandidateEvaluator, ImageSlice, PathGraph, PathPieces, SupernetScorer,
                                  Workers, decode_images, plan_search_split,
                                  prepare_search_data)
from oneshot_nas.sample.sampling import arch_genes
from oneshot_nas.space import get_space
from oneshot_nas.nn.subnet import extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.search.zero_cost import BNScores, kendall_tau
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


@pytest.mark.parametrize("contexts", CONTEXTS, ids=["1ctx", "2ctx"])
def test_recalibration_sets_the_exact_statistics_of_the_whole_slice(supernet, contexts, rng):
    space = supernet.space
    arch = random_arch(space, rng)
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
    last = stem_conv(data[-1]).asnumpy()
    assert not np.allclose(mean, last.mean(axis=(0, 2, 3)), rtol=1e-3)
    # every BN of the path equals the imperative recalibration of the extracted subnet (bn_calib),
    # given the same batches: each device normalises its part of a batch with that part's statistics
    sub = extract_subnet(supernet, arch)
    parts = [p for x in data for p in mx.gluon.utils.split_and_load(x, contexts, even_split=False)]
    recalibrate_bn(sub, [p.as_in_context(mx.cpu()) for p in parts])
    expected = [(k, v.data().asnumpy()) for k, v in sub.collect_params().items() if "running" in k]
    ours = [a for pair in stats.values() for a in pair]          # mean, var of each BN, in order
    assert len(ours) == len(expected) > 60
    for got, (name, want) in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5, err_msg=name)
    # the statistics did change from the supernet's
    supernet_stem = supernet.stem.conv.bn.running_mean.data().asnumpy()
    assert not np.allclose(mean, supernet_stem, atol=1e-3)
    # ... and the supernet itself was left alone
    for k, v in supernet.collect_params().items():
        np.testing.assert_array_equal(v.data().asnumpy(), before[k])
    # its predictions are those of the recalibrated standalone subnet
    x = mx.nd.array(rng.normal(size=(10, 3, 32, 32)))
    np.testing.assert_allclose(graph.predict(x).asnumpy(), sub(x).asnumpy(), rtol=1e-3, atol=1e-4)


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


@pytest.fixture(scope="module")
def digits():
    return embedded_digits()


def test_search_split_is_held_out_of_the_training_set(digits, caplog):
    data = prepare_search_data(digits, 32, update_bn_images=300, search_val_images=50)
    assert (len(data.split), len(data.calibration), data.source) == (50, 300, "train")
    assert not set(data.split.keys) & set(data.calibration.keys)
    train = set(digits.train.keys())
    assert set(data.split.keys) <= train and set(data.calibration.keys) <= train
    # a fixed split, the same for every search, spread over the whole file (not its tail)
    plan = plan_search_split(digits, 300, 50)
    assert plan == plan_search_split(digits, 300, 50) and plan.split_keys == data.split.keys
    keys = digits.train.keys()
    for part in (plan.split_keys, plan.calibration_keys):
        assert min(part) < keys[len(keys) // 5] and max(part) > keys[-len(keys) // 5]
    # defaults: a fifth of the training images for the split, all the others for BN
    full = prepare_search_data(digits, 32)
    assert len(full.split) == len(train) // 5 and len(full.split) + len(full.calibration) == len(train)
    with caplog.at_level(logging.WARNING):
        on_val = prepare_search_data(digits, 32, update_bn_images=10, search_on_val=True)
    assert "--search-on-val" in caplog.text and on_val.source == "val"
    assert len(on_val.split) == len(digits.val)
    with pytest.raises(UserError, match="search split is empty"):
        prepare_search_data(digits, 32, search_val_images=0)
    with pytest.raises(UserError, match="leaves none for BN"):
        prepare_search_data(digits, 32, search_val_images=len(train))


def test_decoded_slices_match_load_slice(digits):
    images, labels = decode_images(digits, digits.train, digits.train.keys()[5:17], 32)
    assert images.dtype == np.uint8 and images.shape == (12, 3, 32, 32)
    ref, ref_labels = load_slice(digits, digits.train, 12, 32, offset=5)
    s = ImageSlice(images, labels)
    batches = list(s.batches(5))
    assert [b[0].shape[0] for b in batches] == [4, 4, 4]     # nearly equal batches, not 5, 5, 2
    got = mx.nd.concat(*[b[0] for b in batches], dim=0).asnumpy()
    np.testing.assert_allclose(got, ref.asnumpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, ref_labels.asnumpy())


@pytest.mark.parametrize("contexts", CONTEXTS, ids=["1ctx", "2ctx"])
def test_evaluator_counts_top1_on_the_split(supernet, digits, contexts, rng):
    data = prepare_search_data(digits, 32, update_bn_images=64, search_val_images=30)
    evaluator = CandidateEvaluator(supernet, data, contexts, batch_size=16)
    arch = random_arch(supernet.space, rng)
    result = evaluator.evaluate(arch)
    sub = extract_subnet(supernet, arch)
    recalibrate_bn(sub, [p.as_in_context(mx.cpu()) for d, _ in data.calibration.batches(16)
                         for p in mx.gluon.utils.split_and_load(d, contexts, even_split=False)])
    pred = np.concatenate([sub(d).argmax(axis=1).asnumpy() for d, _ in data.split.batches(16)])
    assert result["images"] == 30 and result["correct"] == int((pred == data.split.labels).sum())
    assert result["accuracy"] == result["correct"] / 30
    assert min(result[k] for k in ("extract_seconds", "recal_seconds", "eval_seconds")) > 0


def test_bn_scores_read_the_path_gammas(supernet, rng):
    scores = BNScores(supernet)
    arch = random_arch(supernet.space, rng)
    expected = []
    for p, (b, mid) in enumerate(zip(arch.blocks, arch.mids)):
        block = supernet.candidates[p][b]
        block.set_mid(mid)
        expected.append(np.mean([np.abs(u.bn.gamma.data().asnumpy()[:u.bn.active]).mean()
                                 for u in block.main if u.bn is not None]))
    assert scores.score(arch) == pytest.approx(np.mean(expected))
    # scaling up the gammas of one block on the path raises the path's score, and no other's
    other = type(arch)(arch.space, [(b + 1) % 4 if i == 3 else b for i, b in enumerate(arch.blocks)],
                       arch.channels)
    gamma = supernet.candidates[3][arch.blocks[3]].main[-1].bn.gamma
    saved = gamma.data().copy()
    gamma.set_data(saved * 3)
    try:
        boosted = BNScores(supernet)
    finally:
        gamma.set_data(saved)
    assert boosted.score(arch) > scores.score(arch) and boosted.score(other) == scores.score(other)
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert kendall_tau([1, 2], [1, 2]) is None and kendall_tau([1, 1, 1], [1, 2, 3]) is None


def test_scorer_builds_records(supernet, digits, rng):
    space = supernet.space
    data = prepare_search_data(digits, 32, update_bn_images=40, search_val_images=20)
    costs = CostModel(space)
    n = space.num_positions
    choices = [space.num_blocks] * n + [space.num_scales] * n
    objective = Objective.make("balanced", Constraints(costs, {}), choices, weight=0.5)
    scorer = SupernetScorer(space, costs, objective, BNScores(supernet),
                            CandidateEvaluator(supernet, data, [mx.cpu()], 32), Workers())
    archs = [random_arch(space, rng) for _ in range(2)]
    records = scorer([arch_genes(a) for a in archs])
    for arch, r in zip(archs, records):
        c = Counts.of(count_ops(arch))
        assert r["arch"] == str(arch) and (r["macs"], r["params"]) == (c.macs, c.paper_params)
        assert r["score"] == pytest.approx(r["accuracy"] - 0.5 * objective.normalised_cost({"macs": c.macs}))
        assert r["images"] == 20 and r["worker"] == 0 and r["latency_ms"] is None
    bn_only = SupernetScorer(space, costs, objective, BNScores(supernet))
    r = bn_only([arch_genes(archs[0])])[0]
    assert r["accuracy"] is None and r["score"] == r["bn_score"] == records[0]["bn_score"]
    assert Workers().mine(3) == [0, 1, 2] and Workers().gather(np.ones((2, 2))).sum() == 4
