"""SE as a searchable operation (`se_search`): one gene per position, the same network everywhere
(supernet path, extracted subnet, path graph, counters, latency table, superkernel)."""
from dataclasses import astuple

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import search_singlepath
from oneshot_nas.cost.counting import Counts, LookupTable, count_ops
from oneshot_nas.cost.graph import profile_arch
from oneshot_nas.cost.latency import LatencyTable, Protocol
from oneshot_nas.cost.model import CostModel
from oneshot_nas.cost.timing import measure_table
from oneshot_nas.errors import ArchitectureError
from oneshot_nas.nn.pathgraph import PathGraph, PathPieces
from oneshot_nas.nn.superkernel import ALL_ON, extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.space import Architecture, get_space, load_architecture
from oneshot_nas.train.singlepath import RuntimeModel
from tests.test_singlepath import decide, superkernel
from tests.test_space import random_arch
from tests.test_supernet import paths_equal_their_subnets, train_steps
from tests.test_train_cli import rec_flags

SPACE = get_space("tiny4-se").derive("tiny4-se-nodrop", dropout=0.0)
# stride-1 positions too, and SXB blocks
DEEPER = get_space("tiny").derive("tiny-se-nodrop", dropout=0.0, stage_repeats=[2, 1, 2, 1], se_search=True)


def test_the_se_genes_are_one_part_of_the_architecture_and_other_spaces_are_unchanged():
    arch = Architecture.from_str("tiny4-se_B0-1-1-0_C8-6-7-6_S1-0-0-1")
    assert arch.se_flags == (True, False, False, True)
    assert [p.se for p in arch.positions] == [True, False, False, True]
    assert Architecture.from_dict(arch.to_dict()) == arch and arch.to_dict()["se_on"] == [True, False, False, True]
    assert load_architecture(str(arch)) == arch
    assert Architecture.largest("tiny4-se").se_flags == (True,) * 4
    # a space that does not search SE: SE where the space puts it, no S part, no new key in its files
    tiny4 = Architecture.from_str("tiny4_B0-1-1-0_C8-6-7-6")
    assert tiny4.se_flags == (False, False, True, True) and tiny4.positions == tiny4.space.positions
    assert "se_search" not in get_space("tiny4").to_dict()
    with pytest.raises(ArchitectureError, match="set se true as well"):
        get_space("tiny4").derive("tiny4-bad", se=False, se_search=True)
    with pytest.raises(ArchitectureError, match="needs 4 SE ids"):
        arch.replace(se=(1, 0))
    with pytest.raises(ArchitectureError, match="has no se genes"):
        Architecture(get_space("tiny4"), [0] * 4, [0] * 4, se=[1] * 4)


def test_counts_follow_the_se_genes_and_equal_the_graph_profile(rng):
    table = LookupTable.build(SPACE)
    plain = get_space("tiny4").derive("tiny4-nodrop-plain", dropout=0.0)
    for _ in range(6):
        arch = random_arch(SPACE, rng)
        counts = Counts.of(count_ops(arch))
        assert table.count(arch) == counts
        profile = profile_arch(arch)        # op by op, as the graph profiler reads our network
        assert [astuple(op)[1:] for op in profile.ops] == [astuple(op)[1:] for op in count_ops(arch)]
        assert profile.counts == counts
        # SE where tiny4 puts it (stages 3 and 4) is tiny4's network, op for op
        placed = arch.replace(se=(0, 0, 1, 1))
        assert count_ops(placed) == count_ops(Architecture(plain, arch.blocks, arch.channels))
        # one more SE module costs its pool, two 1x1 convolutions and its scaling
        off = arch.replace(se=(0,) * 4)
        for p in range(4):
            one = off.replace(se=tuple(int(q == p) for q in range(4)))
            extra = [op.name for op in count_ops(one) if op not in count_ops(off)]
            assert [name.split(".", 2)[-1] for name in extra] == [
                "pool", "0.conv", "0.relu", "1.conv", "1.hard_sigmoid", "scale"], extra


def test_a_supernet_path_equals_its_subnet_and_its_path_graph_and_only_its_se_learns(rng):
    for space in (SPACE, DEEPER):
        mx.random.seed(0)
        net = SuperNet(space)
        net.initialize(mx.init.MSRAPrelu())
        net.hybridize()
        archs = [random_arch(space, rng) for _ in range(4)] + [Architecture.largest(space)]
        archs.append(Architecture.largest(space).replace(se=(0,) * space.num_positions))
        train_steps(net, archs)
        x = mx.nd.array(rng.normal(size=(6, 3, space.input_size, space.input_size)))
        pieces = PathPieces(net)
        for arch, sub in zip(archs, paths_equal_their_subnets(net, archs, x)):
            assert [block.se is not None for block in sub.features] == list(arch.se_flags)
            graph = PathGraph(net, arch, pieces=pieces)
            np.testing.assert_allclose(graph.predict(x).asnumpy(), sub(x).asnumpy(), rtol=1e-4, atol=1e-5)
    # SE off at a position: its candidate's SE gets no gradient, the SE of a position that has it does
    arch = archs[-1].replace(se=(1,) + (0,) * (DEEPER.num_positions - 1))
    net.collect_params().zero_grad()
    with autograd.record():
        net(x, arch).sum().backward()
    candidates = net.path_candidates(arch)
    grads = [max(float(p.grad().abs().max().asscalar()) for p in c.se.collect_params().values()) for c in candidates]
    assert grads[0] > 0 and all(g == 0 for g in grads[1:]), grads


def test_the_latency_table_times_every_candidate_with_and_without_se(tmp_path):
    quick = Protocol(warmup=0, rounds=1, repeats=1, round_warmup=0)
    table = measure_table(SPACE, protocol=quick, calibration_archs=0)
    assert table.blocks_ms.shape == (4, 4, 10, 2) and (table.blocks_ms > 0).all()
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"), SPACE)
    np.testing.assert_array_equal(loaded.blocks_ms, table.blocks_ms)
    costs = CostModel(SPACE, latency=loaded)
    arch = Architecture.from_str("tiny4-se-nodrop_B0-1-2-3_C8-6-7-6_S1-0-0-1", SPACE)
    expected = loaded.stem_ms + loaded.head_ms + sum(
        loaded.blocks_ms[p, b, c, s] for p, (b, c, s) in enumerate(zip(arch.blocks, arch.channels, arch.se)))
    assert loaded.predict_ms(arch) == pytest.approx(expected, rel=1e-12)
    assert costs.measure(arch)["latency_ms"] == pytest.approx(expected, rel=1e-12)
    assert loaded.predict_many([arch.blocks], [arch.channels], [arch.se])[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(Exception, match=r"needs blocks_ms of shape \(4, 4, 10, 2\)"):
        LatencyTable(SPACE, "cpu", 1, 0.1, 0.1, table.blocks_ms[..., 0])


def decide_se(net, se_ids):
    for block, on in zip(net.blocks, se_ids):
        block.se_thresholds.set_data(mx.nd.array([ALL_ON if on else 60.0]))


@pytest.mark.parametrize("hybridize", [False, True])
def test_the_superkernel_decides_se_and_computes_the_subnet_it_decides(hybridize, rng):
    net = superkernel(SPACE)
    if hybridize:
        net.hybridize()
    x = mx.nd.random.normal(shape=(4, 3, 32, 32))
    for _ in range(4):
        kernel_ids, width_ids = rng.integers(0, 3, 4).tolist(), rng.integers(0, 10, 4).tolist()
        se_ids = rng.integers(0, 2, 4).tolist()
        decide(net, kernel_ids, width_ids)
        decide_se(net, se_ids)
        arch = net.architecture()
        assert list(arch.se) == se_ids and arch == net.layout.architecture(kernel_ids, width_ids, se_ids)
        sub = extract_subnet(net, arch)
        for train in (True, False):
            with autograd.record(train_mode=train):
                ours, theirs = net(x), sub(x)
            np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), atol=1e-5, rtol=1e-5)
    with autograd.train_mode():          # and SE at a position changes what the network computes
        decide_se(net, [1] * 4)
        on = net(x).asnumpy()
        decide_se(net, [1, 1, 0, 1])
        assert np.abs(net(x).asnumpy() - on).max() > 1e-3 * np.abs(on).max()


def test_se_thresholds_learn_from_the_runtime_model_and_the_loss(rng):
    table = LatencyTable(SPACE, "cpu", 1, 0.1, 0.05, rng.uniform(0.01, 0.2, (4, 4, 10, 2)))
    costs = CostModel(SPACE, latency=table)
    net = superkernel(SPACE)
    runtime = RuntimeModel(costs, "latency_ms", net.layout)
    for _ in range(5):            # hard decisions: R is the table's sum, SE cells included
        decide(net, rng.integers(0, 3, 4).tolist(), rng.integers(0, 10, 4).tolist())
        decide_se(net, rng.integers(0, 2, 4).tolist())
        arch = net.architecture()
        r = float(runtime(net.decisions(mx.cpu()), mx.cpu()).asscalar())
        assert r == pytest.approx(costs.measure(arch)["latency_ms"], rel=1e-5)
    net.init_thresholds(0.5)
    assert net.architecture().se == (1,) * 4
    se = [block.se_thresholds for block in net.blocks]
    with autograd.record():
        r = runtime(net.decisions(mx.cpu()), mx.cpu())
    r.backward()
    signs = np.sign(table.blocks_ms[np.arange(4), 2, 9, 0] - table.blocks_ms[np.arange(4), 2, 9, 1])
    # dR/du: raising a threshold turns SE off, which costs less exactly where SE's cell is the dearer
    np.testing.assert_array_equal(np.sign([float(p.grad().asscalar()) for p in se]), signs)
    x, y = mx.nd.random.normal(shape=(8, 3, 32, 32)), mx.nd.array(np.arange(8) % 10)
    with autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y).mean()
    loss.backward()
    assert all(float(p.grad().abs().asscalar()) > 0 for p in se)
    assert all(row["se_stat"][0] - row["se"][0] == pytest.approx(-np.log(0.5), abs=1e-4) for row in net.thresholds())


def test_the_superkernel_trains_each_se_weight_once_and_round_trips_through_a_file(tmp_path, rng):
    """The SE decision reads the SE's weights through a second registration of them: the trainer
    still sees each parameter once, and a saved network loads back to the same outputs."""
    from oneshot_nas.runs.modelfile import load_model, save_model
    from oneshot_nas.train.settings import ordered_params
    net = superkernel(SPACE)
    net.init_thresholds(0.5)
    params = ordered_params(net)
    assert len(params) == len({id(p) for p in params}) == len(list(net.collect_params().values()))
    decide_se(net, [1, 0, 1, 0])
    x = mx.nd.random.normal(shape=(2, 3, 32, 32))
    path = save_model(net, tmp_path / "sk.params", {"note": "test"})
    loaded, _ = load_model(path)
    with autograd.train_mode():
        np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())
    assert loaded.architecture() == net.architecture()


def test_single_path_nas_searches_se_and_its_winner_is_an_ordinary_architecture(small, tmp_path):
    argv = rec_flags(small) + ["--space", "tiny4-se", "--target-macs", "0.3M", "--lambda", "0.5", "--num-epochs", "2",
                               "--search-warmup", "1", "--batch-size", "32", "--no-progress",
                               "--models-dir", str(tmp_path / "models"), "--save-dir", str(tmp_path / "run")]
    result = search_singlepath.main(argv)
    found = load_architecture(result["history"][0]["arch"])
    assert found.space.name == "tiny4-se" and len(found.se) == 4
    epochs = [r for r in (tmp_path / "run").rglob("paths.jsonl")]
    assert epochs and '"se_stat"' in epochs[0].read_text() and '"se": [' in epochs[0].read_text()
    assert (epochs[0].parent / "curves.png").is_file()
