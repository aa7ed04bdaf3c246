"""The search's score function: supernet paths scored on the held-out split, zero-cost BN scores,
and the candidate records."""
import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.cost.counting import Counts, count_ops
from oneshot_nas.cost.limits import Limits
from oneshot_nas.cost.model import CostModel
from oneshot_nas.data.slices import prepare_search_data
from oneshot_nas.data.sources import embedded_digits
from oneshot_nas.nn.pathgraph import PathGraph
from oneshot_nas.nn.subnet import extract_subnet
from oneshot_nas.runs.workers import Workers
from oneshot_nas.search.objective import Objective
from oneshot_nas.search.scoring import CandidateEvaluator, SupernetScorer
from oneshot_nas.search.zero_cost import BNScores
from tests.test_pathgraph import CONTEXTS, supernet  # noqa: F401  (fixture)
from tests.test_space import random_arch


@pytest.fixture(scope="module")
def digits():
    return embedded_digits()


@pytest.mark.parametrize("contexts", CONTEXTS, ids=["1ctx", "2ctx"])
def test_evaluator_counts_top1_on_the_split(supernet, digits, contexts, rng):
    data = prepare_search_data(digits, 32, update_bn_images=64, search_val_images=30)
    evaluator = CandidateEvaluator(supernet, data, contexts, batch_size=16)
    arch = random_arch(supernet.space, rng)
    result = evaluator.evaluate(arch)
    sub = extract_subnet(supernet, arch)          # the standalone subnet, recalibrated the same way
    graph = PathGraph(sub, contexts=contexts)
    graph.calibrate(data.calibration.batches(16))
    graph.store_statistics()
    pred = np.concatenate([sub(d).argmax(axis=1).asnumpy() for d, _ in data.split.batches(16)])
    assert result["images"] == 30 and result["correct"] == int((pred == data.split.labels).sum())
    assert result["accuracy"] == result["correct"] / 30
    assert min(result[k] for k in ("extract_seconds", "recal_seconds", "eval_seconds")) > 0


def test_bn_scores_read_the_path_gammas(supernet, rng):
    scores = BNScores(supernet)
    arch = random_arch(supernet.space, rng)
    expected = []
    for p, (b, mid) in enumerate(zip(arch.blocks, arch.mids)):
        block = supernet.candidates[p][b].width_view(mid)
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


def test_scorer_builds_records(supernet, digits, rng):
    space = supernet.space
    data = prepare_search_data(digits, 32, update_bn_images=40, search_val_images=20)
    costs = CostModel(space)
    n = space.num_positions
    choices = [space.num_blocks] * n + [space.num_scales] * n
    objective = Objective.make("balanced", Limits(costs, {}), choices, weight=0.5)
    scorer = SupernetScorer(space, costs, objective, BNScores(supernet),
                            CandidateEvaluator(supernet, data, [mx.cpu()], 32), Workers())
    archs = [random_arch(space, rng) for _ in range(2)]
    records = scorer([a.genes for a in archs])
    for arch, r in zip(archs, records):
        c = Counts.of(count_ops(arch))
        assert r["arch"] == str(arch) and (r["macs"], r["params"]) == (c.macs, c.paper_params)
        assert r["score"] == pytest.approx(r["accuracy"] - 0.5 * objective.normalised_cost({"macs": c.macs}))
        assert r["images"] == 20 and r["worker"] == 0 and "latency_ms" not in r
    bn_only = SupernetScorer(space, costs, objective, BNScores(supernet))
    r = bn_only([archs[0].genes])[0]
    assert r["accuracy"] is None and r["score"] == r["bn_score"] == records[0]["bn_score"]
    assert Workers().mine(3) == [0, 1, 2] and Workers().gather(np.ones((2, 2))).sum() == 4
