"""Single-Path NAS: the superkernel computes the SNB-k block it decides on, its decisions train, the
runtime model is the table's sum, the lambda search finds its target, and the CLI resumes exactly."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import search_singlepath
from oneshot_nas.cost.latency import LatencyTable
from oneshot_nas.cost.model import CostModel
from oneshot_nas.errors import UserError
from oneshot_nas.nn.superkernel import ALL_ON, Layout, SuperkernelNet, extract_subnet
from oneshot_nas.runs.modelfile import load_model
from oneshot_nas.runs.rundir import read_jsonl
from oneshot_nas.runs.workers import Workers
from oneshot_nas.search.singlepath import SinglePathOptions, search
from oneshot_nas.search.tradeoff import find_lambda
from oneshot_nas.space import get_space, load_architecture
from oneshot_nas.train.settings import Settings
from oneshot_nas.train.singlepath import RuntimeModel, SinglePathTask
from tests.test_train_cli import fails, rec_flags

# tiny4 without dropout (so that training-mode outputs are deterministic): one position of each
# stage, stride 2 everywhere; `tiny` adds stride-1 positions
SPACE = get_space("tiny4").derive("tiny4-nodrop", dropout=0.0)
STRIDED = get_space("tiny").derive("tiny-nodrop", dropout=0.0, stage_repeats=[2, 1, 1, 1])


def superkernel(space=SPACE, seed=0, ctx=None):
    net = SuperkernelNet(space)
    mx.random.seed(seed)
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx or mx.cpu())
    return net


def decide(net, kernel_ids, width_ids):
    """Set every threshold so that position p uses kernel index kernel_ids[p] and channel id width_ids[p]."""
    for block, k, c in zip(net.blocks, kernel_ids, width_ids):
        dw = block.depthwise
        for param, on in ((dw.kernel_thresholds, k), (dw.width_thresholds, c)):
            values = [ALL_ON if j < on else 60.0 for j in range(param.shape[0])]
            param.set_data(mx.nd.array(values))


@pytest.mark.parametrize("space", [SPACE, STRIDED], ids=["stride-2", "stride-1-and-2"])
@pytest.mark.parametrize("hybridize", [False, True])
def test_superkernel_with_hard_decisions_is_the_snb_block_of_that_width(space, hybridize, rng):
    net = superkernel(space)
    layout = Layout(space)
    if hybridize:
        net.hybridize()
    x = mx.nd.random.normal(shape=(4, 3, 32, 32))
    choices = [([k] * space.num_positions, [c] * space.num_positions)
               for k in range(len(layout.kernels)) for c in (0, 4, space.num_scales - 1)]
    choices += [(rng.integers(0, 3, space.num_positions).tolist(),
                 rng.integers(0, space.num_scales, space.num_positions).tolist()) for _ in range(3)]
    for kernel_ids, width_ids in choices:
        decide(net, kernel_ids, width_ids)
        arch = net.architecture()
        assert arch == layout.architecture(kernel_ids, width_ids)
        assert all(space.block_choices[b].kernel == layout.kernels[k] for b, k in zip(arch.blocks, kernel_ids))
        sub = extract_subnet(net, arch)
        for train in (True, False):
            with autograd.record(train_mode=train):
                ours, theirs = net(x), sub(x)
            np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), atol=1e-5, rtol=1e-5)


def test_a_flipped_decision_changes_the_output():
    net = superkernel()
    x = mx.nd.random.normal(shape=(2, 3, 32, 32))
    decide(net, [2] * 4, [9] * 4)
    with autograd.train_mode():        # (batch statistics: an untrained net's running ones squash everything)
        widest = net(x).asnumpy()
        for kernel_ids, width_ids in (([1, 2, 2, 2], [9] * 4), ([2] * 4, [9, 9, 8, 9])):
            decide(net, kernel_ids, width_ids)
            assert np.abs(net(x).asnumpy() - widest).max() > 1e-3 * np.abs(widest).max()


def test_gradients_reach_every_threshold_and_the_runtime_loss_raises_them():
    net = superkernel()
    net.init_thresholds(0.5)
    runtime = RuntimeModel(CostModel(SPACE), "macs", net.layout)
    x, y = mx.nd.random.normal(shape=(8, 3, 32, 32)), mx.nd.array(np.arange(8) % 10)
    thresholds = [p for name, p in net.collect_params().items() if name.endswith("thresholds")]
    assert len(thresholds) == 2 * SPACE.num_positions
    with autograd.record():
        r = runtime(net.decisions(mx.cpu()), mx.cpu())
        loss = mx.nd.log(r)
    loss.backward()
    for p in thresholds:           # a higher threshold turns a decision off: fewer MACs
        grad = p.grad().asnumpy()
        assert np.all(grad < 0), (p.name, grad)
    with autograd.record():
        out = net(x)
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(out, y).mean()
    loss.backward()
    assert all(np.all(np.isfinite(p.grad().asnumpy())) for p in thresholds)
    for p in thresholds:
        # the last position sees a 2x2 input: its 5x5 and 7x7 shells only ever meet padding
        useless = "p3_dw_kernel" in p.name
        assert np.all(p.grad().asnumpy() == 0) if useless else np.all(p.grad().asnumpy() != 0), p.name
    weight = net.blocks[0].depthwise.weight       # the decisions train the thresholds, not the norms
    assert np.abs(weight.grad().asnumpy()).max() > 0


@pytest.mark.parametrize("metric", ["macs", "latency_ms"])
def test_runtime_model_is_the_tables_sum_for_hard_decisions(metric, rng):
    table = LatencyTable(SPACE, "cpu", 1, 0.1, 0.05, rng.uniform(0.01, 0.2, (4, 4, 10)))
    costs = CostModel(SPACE, latency=table)
    net = superkernel()
    runtime = RuntimeModel(costs, metric, net.layout)
    for _ in range(5):
        decide(net, rng.integers(0, 3, 4).tolist(), rng.integers(0, 10, 4).tolist())
        arch = net.architecture()
        r = float(runtime(net.decisions(mx.cpu()), mx.cpu()).asscalar())
        assert r == pytest.approx(costs.measure(arch)[metric], rel=1e-5)
        assert runtime.of(arch) == costs.measure(arch)[metric]
    lo, hi = runtime.range()
    assert lo == pytest.approx(costs.extremes(metric, SPACE.gene_choices(blocks=(0, 1, 2)))[0])
    assert hi == pytest.approx(costs.extremes(metric, SPACE.gene_choices(blocks=(0, 1, 2)))[1])


@pytest.mark.parametrize("target", [0.9, 2.5, 4.2, 6.0, 9.7])
def test_find_lambda_lands_within_tolerance_below_the_target(target):
    calls = []

    def cost_of(lam, index):          # a continuous toy: cost falls from 10 as lambda grows
        assert index == len(calls)
        calls.append(lam)
        return 10.0 / (1.0 + lam)
    best, history = find_lambda(cost_of, target, max_runs=20, tolerance=0.05)
    assert target * 0.95 <= best[1] <= target
    assert len(history) == len(calls) < 20


def test_find_lambda_on_steps_returns_the_closest_below_and_none_when_nothing_meets():
    def steps(lam, index):
        return [10, 8, 5, 2][min(3, int(np.log2(lam + 1)))]
    best, history = find_lambda(steps, 6.0, max_runs=10)
    assert best[1] == 5 and all(c > 6 or c <= 5 for _, c in history)
    best, history = find_lambda(lambda lam, i: 11.0, 3.0, max_runs=4)
    assert best is None and len(history) == 4


def test_a_space_without_snb_blocks_or_with_bit_genes_is_refused():
    with pytest.raises(UserError, match="has no SNB-k block"):
        Layout(SPACE.derive("tiny4-sxb", blocks=["SXB-3"]))
    with pytest.raises(UserError, match="also has wbits/abits genes"):
        Layout("tiny4-q")


# ----- the command ----------------------------------------------------------------------------------
def flags(small, tmp_path, *extra):
    return rec_flags(small) + ["--target-macs", "0.3M", "--num-epochs", "2", "--search-warmup", "1",
                               "--batch-size", "32", "--no-progress", "--models-dir", str(tmp_path / "models"),
                               *extra]


@pytest.mark.parametrize("argv, message", [
    ([], "give one target"),
    (["--target-macs", "1M", "--target-latency-ms", "1"], "give one target"),
    (["--target-latency-ms", "0.5"], "needs the device's --latency-table"),
    (["--target-macs", "10K"], "no network of the superkernel meets 0.01M macs"),
    (["--target-macs", "1M", "--search-warmup", "8"], "--search-warmup 8 must be within 0..--num-epochs - 1"),
    (["--target-macs", "1M", "--threshold-init", "1.5"], "--threshold-init 1.5 must be in (0, 1)"),
    (["--target-macs", "1M", "--lambda-factor", "1"], "--lambda-factor 1.0 must be > 1"),
    (["--target-macs", "1M", "--lambda", "-1"], "--lambda -1.0 must be >= 0"),
    (["--target-latency-ms", "1", "--latency-table", "nowhere.json"], "latency table nowhere.json does not exist"),
    (["--target-macs", "nan"], "is not a finite number"),
])
def test_bad_input_fails_before_anything_is_written(argv, message, tmp_path, capsys):
    fails(search_singlepath.main, argv + ["--save-dir", str(tmp_path / "run")], capsys, message)
    assert not (tmp_path / "run").exists()


def test_search_writes_the_architecture_and_resumes_exactly(small, tmp_path):
    straight = search_singlepath.main(flags(small, tmp_path, "--save-dir", str(tmp_path / "a"), "--max-searches", "2"))
    assert len(straight["history"]) == 2 and straight["history"][1]["lambda"] == 4.0
    # the same run stopped inside the first search, then inside the second, and resumed
    b = ["--save-dir", str(tmp_path / "b"), "--max-searches", "2"]
    assert search_singlepath.main(flags(small, tmp_path, *b, "--stop-after-epoch", "0"))["stopped"]
    assert not read_jsonl(tmp_path / "b" / "search.jsonl")
    search_singlepath.main(flags(small, tmp_path, *b, "--resume", "--stop-after-epoch", "0"))
    assert len(read_jsonl(tmp_path / "b" / "search.jsonl")) == 1
    resumed = search_singlepath.main(flags(small, tmp_path, *b, "--resume"))
    keys = ("lambda", "arch", "cost", "val_top1", "epochs")
    assert [[r[k] for k in keys] for r in resumed["history"]] == [[r[k] for k in keys] for r in straight["history"]]
    for k in range(2):
        a, _ = load_model(tmp_path / "a" / f"lambda-{k}" / "checkpoint" / "model.params")
        b, _ = load_model(tmp_path / "b" / f"lambda-{k}" / "checkpoint" / "model.params")
        for (name, p), q in zip(sorted(a._collect_params_with_prefix().items()),
                                [q for _, q in sorted(b._collect_params_with_prefix().items())]):
            np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy(), err_msg=name)
    run = tmp_path / "a"
    for name in ("search.jsonl", "tradeoff.png", "lambda-0/curves.png", "lambda-1/paths.jsonl"):
        assert (run / name).is_file(), name
    epochs = read_jsonl(run / "lambda-0" / "paths.jsonl")
    assert [r["epoch"] for r in epochs] == [0, 1] and {"ce", "runtime", "thresholds", "kernels"} <= set(epochs[0])
    if straight["best"] is not None:
        arch, record = load_architecture(tmp_path / "models" / "a.json", with_record=True)
        assert str(arch) == straight["best"]["arch"] and record["predicted"]["macs"] <= 0.3e6
        assert record["search_epochs"] == 4 and record["searches"] == 2 and record["method"] == "singlepath"


def test_two_devices_and_a_second_network_on_the_same_workers(small, tmp_path):
    from oneshot_nas.data.sources import resolve_dataset  # noqa: F401  (the dataset object comes from `small`)
    contexts = [mx.cpu(0), mx.cpu(1)]
    workers = Workers("device", 2)
    options = SinglePathOptions("macs", 0.3e6, max_runs=2, warmup_epochs=1)
    settings = Settings(num_epochs=2, batch_size=16, seed=0)
    result = search(SPACE.with_classes(10), small, settings, contexts, workers, options, CostModel(SPACE),
                    tmp_path / "run", progress=False)
    assert len(result["history"]) == 2
    assert all(json.dumps(r["arch"]) for r in result["history"])


def test_the_task_holds_every_decision_on_while_the_weights_warm_up():
    net = superkernel()
    net.hybridize()
    task = SinglePathTask(net, RuntimeModel(CostModel(SPACE), "macs", net.layout), 1.0, warmup_epochs=2)
    assert str(net.architecture()) == "tiny4-nodrop_B2-2-2-2_C9-9-9-9"
    assert task.start_epoch(1)["searching"] is False
    assert task.start_epoch(2)["searching"] is True     # thresholds now at half the weights' RMS: all on
    assert str(net.architecture()) == "tiny4-nodrop_B2-2-2-2_C9-9-9-9"
    margins = [np.subtract(row["width_stat"], row["width"]) for row in net.thresholds()]
    np.testing.assert_allclose(np.concatenate(margins), -np.log(0.5), atol=1e-4)


def test_a_latency_target_times_the_networks_it_found(small, tmp_path, rng):
    table = LatencyTable(get_space("tiny4"), "cpu", 1, 0.1, 0.05, rng.uniform(0.05, 0.2, (4, 4, 10)))
    path = table.save(tmp_path / "table.json")
    target = f"{0.15 + table.blocks_ms[:, :3].max(axis=(1, 2)).sum() + 0.001:.4f}"   # every network meets it
    flags_ = rec_flags(small) + ["--target-latency-ms", target, "--latency-table", str(path), "--lambda", "2",
                                 "--num-epochs", "2", "--search-warmup", "1", "--batch-size", "32", "--no-progress",
                                 "--models-dir", str(tmp_path / "models"), "--save-dir", str(tmp_path / "run")]
    result = search_singlepath.main(flags_)
    found = result["history"][0]
    assert found["metric"] == "latency_ms" and found["cost"] == pytest.approx(table.predict_ms(
        load_architecture(found["arch"])), rel=1e-9)
    _, record = load_architecture(tmp_path / "models" / "run.json", with_record=True)
    assert record["measured_latency_ms"] > 0 and record["runtime_model_error"]["networks"] == 1
    assert record["latency_error_pct"] == pytest.approx(
        100 * (found["cost"] - record["measured_latency_ms"]) / record["measured_latency_ms"])
