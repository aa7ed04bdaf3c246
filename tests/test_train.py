"""The training loop: only the sampled path moves, a supernet step is the subnet's step, the loss,
the data split and validation do what the records say."""
import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.data.iterators import train_iter
from oneshot_nas.data.slices import calibration_slice, prepare_search_data
from oneshot_nas.data.sources import DIGITS_AUGMENTATION, Dataset, _pack, resolve_dataset
from oneshot_nas.nn.pathgraph import PathGraph
from oneshot_nas.nn.subnet import SubNet, extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.runs.workers import Workers
from oneshot_nas.sample.schedule import channel_schedule
from oneshot_nas.sample.training import PathSampler
from oneshot_nas.search.scoring import CandidateEvaluator
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.train import validation
from oneshot_nas.train.loop import smoothed_cross_entropy, steps_per_epoch, train_step
from oneshot_nas.train.settings import Settings, make_trainer, ordered_params
from oneshot_nas.train.tasks import SubnetTask, SupernetTask
from oneshot_nas.train.validation import evaluate, val_source
from tests.test_space import random_arch

TWO_DEVICES = [mx.cpu(0), mx.cpu(1)]


def small_digits(folder, n_train=256, n_val=96):
    """A slice of the embedded digits as its own RecordIO pair: epochs of a few steps."""
    full = resolve_dataset()
    parts = {}
    for split, records, n in (("train", full.train, n_train), ("val", full.val, n_val)):
        reader = mx.recordio.MXIndexedRecordIO(str(records.idx), str(records.rec), "r")
        items = []
        for key in records.keys()[:n]:
            header, payload = mx.recordio.unpack(reader.read_idx(key))
            items.append((float(np.ravel(header.label)[0]), payload))
        reader.close()
        parts[split] = _pack(folder / split, items, mx.recordio.pack)
    return Dataset("digits-small", parts["train"], parts["val"], 10, DIGITS_AUGMENTATION)


def snapshot(net, ctx):
    return {name: p.data(ctx).asnumpy().copy() for name, p in net._collect_params_with_prefix().items()}


def supernet_on(contexts, space="tiny"):
    net = SuperNet(space)
    mx.random.seed(0)
    net.initialize(mx.init.MSRAPrelu(), ctx=contexts)
    net.hybridize(static_alloc=True)
    return net


def one_batch(rng, n=16, size=32):
    return mx.io.DataBatch([mx.nd.array(rng.normal(size=(n, 3, size, size)))],
                           [mx.nd.array(rng.integers(0, 10, n))])


def trainable_supernet(contexts):
    """(space, a tiny supernet on `contexts`, its Workers, its ordered parameters, an SGD trainer
    with momentum and weight decay)."""
    net = supernet_on(contexts)
    sync = Workers("device", len(contexts))
    params = ordered_params(net)
    sync.register(params, contexts)
    return get_space("tiny"), net, sync, params, make_trainer(params, Settings(lr=0.1, momentum=0.9, wd=1e-2))


def totals_for(contexts):
    return [[mx.nd.zeros(1, ctx=c), mx.nd.zeros(1, ctx=c)] for c in contexts]


@pytest.mark.parametrize("contexts", [[mx.cpu(0)], TWO_DEVICES], ids=["one-device", "two-devices"])
def test_a_step_moves_only_the_path_not_even_by_momentum_or_weight_decay(contexts, rng):
    space, net, sync, params, trainer = trainable_supernet(contexts)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=None)
    first = random_arch(space, rng)
    second = Architecture(space, [(b + 1) % space.num_blocks for b in first.blocks], first.channels)
    train_step(task, trainer, one_batch(rng), contexts, first, sync, 16, 0.0, totals_for(contexts))
    after_first = snapshot(net, contexts[0])
    train_step(task, trainer, one_batch(rng), contexts, second, sync, 16, 0.0, totals_for(contexts))
    after_second = snapshot(net, contexts[0])
    names = {id(p): name for name, p in net._collect_params_with_prefix().items()}
    for p, row in enumerate(net.candidates):
        for b, block in enumerate(row):
            mine = [names[id(q)] for q in block.collect_params().values()]
            if b == second.blocks[p]:
                assert any(not np.array_equal(after_first[n], after_second[n]) for n in mine)
            else:   # unused in step 2 (first.blocks[p] carries momentum from step 1): bit-identical
                for n in mine:
                    np.testing.assert_array_equal(after_first[n], after_second[n], err_msg=n)
    # every device holds the same weights; BN statistics (each device's own batches) agree once
    # averaged, as the loop does at the end of every epoch
    sync.average_data([p for p in params if p.grad_req == "null"])
    after_sync = snapshot(net, contexts[0])
    for ctx in contexts[1:]:
        for name, value in snapshot(net, ctx).items():
            np.testing.assert_array_equal(value, after_sync[name], err_msg=name)


@pytest.mark.parametrize("contexts", [[mx.cpu(0)], TWO_DEVICES], ids=["one-device", "two-devices"])
def test_supernet_steps_equal_the_extracted_subnets_steps(contexts, rng):
    """Two NAG steps with weight decay on a path of the supernet give the weights that the same
    steps give the standalone subnet (dropout off so both see the same computation)."""
    space = get_space("tiny").derive("tiny-nodrop", dropout=0.0)
    net = supernet_on(contexts, space)
    arch = random_arch(space, rng)
    sub = SubNet(arch)
    sub.initialize(ctx=contexts)
    ref = extract_subnet(net, arch, mx.cpu(0))
    for (name, p), q in zip(sub._collect_params_with_prefix().items(), ref._collect_params_with_prefix().values()):
        p.set_data(q.data())
    sub.hybridize(static_alloc=True, static_shape=True)
    settings = Settings(lr=0.05, momentum=0.9, wd=1e-3)
    batches = [one_batch(rng), one_batch(rng)]
    for task in (SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=None),
                 SubnetTask(sub)):
        sync = Workers("device", len(contexts))
        params = ordered_params(task.net)
        sync.register(params, contexts)
        trainer = make_trainer(params, settings)
        for batch in batches:
            train_step(task, trainer, batch, contexts, arch if task.kind == "supernet" else None, sync, 16,
                       0.1, totals_for(contexts))
    got = extract_subnet(net, arch, mx.cpu(0))._collect_params_with_prefix()
    for name, p in sub._collect_params_with_prefix().items():
        if p.grad_req != "null":
            np.testing.assert_allclose(got[name].data().asnumpy(), p.data(contexts[0]).asnumpy(),
                                       rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_smoothing_is_cross_entropy_against_smoothed_one_hot(smoothing, rng):
    logits = rng.normal(size=(6, 10)) * 3
    labels = rng.integers(0, 10, 6)
    target = np.full((6, 10), smoothing / 10)
    target[np.arange(6), labels] += 1 - smoothing
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(target * logp).sum(axis=1)
    got = smoothed_cross_entropy(mx.nd.array(logits), mx.nd.array(labels), smoothing).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_worker_can_take_the_planned_steps(small, workers):
    steps = steps_per_epoch(len(small.train), 32, workers)
    counts = []
    for part in range(workers):
        reader = train_iter(small, 32, 32, threads=1, num_parts=workers, part_index=part)
        counts.append(sum(1 for _ in reader))
    assert min(counts) == steps


def test_validation_scores_recalibrated_copies_and_counts_every_image(small, rng):
    space = get_space("tiny")
    net = supernet_on([mx.cpu()])
    calibration = calibration_slice(small, 64, 32)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration,
                        val_paths=2, reference=random_arch(space, rng))
    task.start_epoch(0)
    before = snapshot(net, mx.cpu())
    val_batches = val_source(small, 32, 32, 1, Workers())
    record = task.validate(0, val_batches, [mx.cpu()], Workers(), max_images=0, batch_size=32)
    assert len(record["val_paths"]) == 2
    for key in ("val_top1_mean", "val_top1_min", "val_top1_max", "val_top5_mean", "ref_top1", "ref_top5"):
        assert 0.0 <= record[key] <= 1.0
    assert record["val_top1_min"] <= record["val_top1_mean"] <= record["val_top1_max"]
    assert record["val_top5_mean"] >= record["val_top1_mean"]
    # the supernet itself is untouched: validation scores copies
    for name, value in snapshot(net, mx.cpu()).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # a scored path has the statistics of the calibration data, not the supernet's (still 0 / 1):
    # the stem BN's are the moments of the stem conv's output over all 64 images
    arch = task.reference
    graph = PathGraph(net, arch, [mx.cpu()])
    graph.calibrate(calibration.batches(32))
    y = net.stem.conv.conv(calibration.data()).asnumpy()
    (mean, var), = [v for k, v in graph.running_stats().items() if "stem" in k[0]]
    np.testing.assert_allclose(mean, y.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, y.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not np.allclose(var, 1.0)
    # ... and it predicts what the extracted subnet with those statistics predicts
    sub = extract_subnet(net, arch)
    sub_graph = PathGraph(sub)
    sub_graph.calibrate(calibration.batches(32))
    sub_graph.store_statistics()
    x = calibration.data()[:4]
    np.testing.assert_allclose(graph.predict(x).asnumpy(), sub(x).asnumpy(), rtol=1e-4, atol=1e-5)
    # two evaluations in a row each see every validation image exactly once
    for _ in range(2):
        assert evaluate(net, val_batches, Workers(), arch=arch, calibration=calibration)["images"] == len(small.val)
    assert evaluate(net, val_batches, Workers(), arch=arch, calibration=calibration,
                    max_images=50)["images"] == 50


def test_streamed_and_in_memory_validation_agree(small, monkeypatch):
    """A small validation set is decoded once; a large one streams from RecordIO every time. Both
    decode the same pixels, so they give the same top-1 and top-5."""
    net = SubNet(random_arch("tiny", np.random.default_rng(1)))
    net.initialize(mx.init.MSRAPrelu())
    in_memory = evaluate(net, val_source(small, 32, 32, 1, Workers()), Workers())
    monkeypatch.setattr(validation, "VAL_CACHE_BYTES", 0)
    streamed = evaluate(net, val_source(small, 32, 32, 1, Workers()), Workers())
    assert streamed == in_memory and streamed["images"] == len(small.val)


def test_training_validation_and_search_agree_on_the_same_slices(small, rng):
    """The one way to score a path: the search's evaluator and training validation give the same
    top-1 for the same supernet, path, calibration slice and split."""
    net = supernet_on([mx.cpu()])
    data = prepare_search_data(small, 32, update_bn_images=64, search_val_images=48)
    for arch in (random_arch("tiny", rng), random_arch("tiny", rng)):
        search = CandidateEvaluator(net, data, [mx.cpu()], batch_size=32).evaluate(arch)
        val = evaluate(net, lambda: data.split.batches(32), Workers(), arch=arch,
                       calibration=data.calibration, batch_size=32)
        assert (val["top1"], val["images"]) == (search["accuracy"], search["images"]) == (val["top1"], 48)


def test_inheritance_stage_trains_one_path_then_copies_it_everywhere(rng):
    space = get_space("tiny")
    net = supernet_on([mx.cpu()])
    path = Architecture.largest(space)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 3), calibration=None,
                        inherit_epochs=2, inherit_path=path)
    for epoch in (0, 1):
        assert task.start_epoch(epoch)["path"] == str(path)
        assert {task.draw(rng) for _ in range(5)} == {path}
    snb5 = net.candidates[6][1].main[0].conv.weight      # a stride-1 SNB-5's pointwise conv
    assert not np.array_equal(snb5.data().asnumpy(), net.candidates[6][0].main[0].conv.weight.data().asnumpy())
    assert "path" not in task.start_epoch(2)
    np.testing.assert_array_equal(snb5.data().asnumpy(), net.candidates[6][0].main[0].conv.weight.data().asnumpy())
    assert len({task.draw(rng) for _ in range(5)}) == 5


@pytest.mark.parametrize("contexts", [[mx.cpu(0)], TWO_DEVICES], ids=["one-device", "two-devices"])
def test_bn_only_epochs_train_the_batchnorm_scales_and_shifts_and_nothing_else(contexts, rng):
    space, net, sync, params, trainer = trainable_supernet(contexts)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 2), calibration=None, bn_only_from=1)
    assert "bn_only" not in task.start_epoch(0)
    arch = random_arch(space, rng)
    train_step(task, trainer, one_batch(rng), contexts, arch, sync, 16, 0.0, totals_for(contexts))  # momentum
    before = snapshot(net, contexts[0])
    assert task.start_epoch(1)["bn_only"] and task.describe()["bn_only_from"] == 1
    for _ in range(2):
        train_step(task, trainer, one_batch(rng), contexts, arch, sync, 16, 0.0, totals_for(contexts))
    after = snapshot(net, contexts[0])
    affine = [n for n in after if n.endswith((".gamma", ".beta"))]
    stats = [n for n in after if n.endswith((".running_mean", ".running_var"))]
    frozen = [n for n in after if n not in affine and n not in stats]
    assert frozen and affine
    for n in frozen:     # not moved even by the momentum of the full step before
        np.testing.assert_array_equal(before[n], after[n], err_msg=n)
    assert any(not np.array_equal(before[n], after[n]) for n in affine)
    for ctx in contexts[1:]:       # every device trains the same scales and shifts
        for name in affine:
            np.testing.assert_array_equal(snapshot(net, ctx)[name], after[name], err_msg=name)
