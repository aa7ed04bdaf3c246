"""The training loop: only the sampled path moves, a supernet step is the subnet's step, the loss,
the data split and validation do what the records say."""
import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.nn.bn_calib import recalibrate_bn
from oneshot_nas.data.sources import DIGITS_AUGMENTATION, Dataset, _pack, resolve_dataset, train_iter, val_iter
from oneshot_nas.runs.workers import Sync
from oneshot_nas.sample.training import PathSampler
from oneshot_nas.sample.schedule import channel_schedule
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.nn.subnet import SubNet, extract_subnet
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.train.loop import (Settings, SubnetTask, SupernetTask, make_trainer, ordered_params,
                               smoothed_cross_entropy, steps_per_epoch, train_step)
from oneshot_nas.train.validation import calibration_batches, evaluate, scoring_copy
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


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    return small_digits(tmp_path_factory.mktemp("small-digits"))


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


def totals_for(contexts):
    return [[mx.nd.zeros(1, ctx=c), mx.nd.zeros(1, ctx=c)] for c in contexts]


@pytest.mark.parametrize("contexts", [[mx.cpu(0)], TWO_DEVICES], ids=["one-device", "two-devices"])
def test_a_step_moves_only_the_path_not_even_by_momentum_or_weight_decay(contexts, rng):
    space = get_space("tiny")
    net = supernet_on(contexts)
    sync = Sync("device", len(contexts))
    params = ordered_params(net)
    sync.register(params, contexts)
    trainer = make_trainer(params, Settings(lr=0.1, momentum=0.9, wd=1e-2))
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=[None])
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
    for task in (SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=[None]),
                 SubnetTask(sub)):
        sync = Sync("device", len(contexts))
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
    calibration = calibration_batches(small, 64, 32, 32)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration,
                        val_paths=2, reference=random_arch(space, rng))
    task.start_epoch(0)
    before = snapshot(net, mx.cpu())

    def val_batches():
        return val_iter(small, 32, 32, threads=1)
    record = task.validate(0, val_batches, [mx.cpu()], Sync("device"), max_images=0)
    assert len(record["val_paths"]) == 2
    for key in ("val_top1_mean", "val_top1_min", "val_top1_max", "val_top5_mean", "ref_top1", "ref_top5"):
        assert 0.0 <= record[key] <= 1.0
    assert record["val_top1_min"] <= record["val_top1_mean"] <= record["val_top1_max"]
    assert record["val_top5_mean"] >= record["val_top1_mean"]
    # the supernet itself is untouched: validation scores copies
    for name, value in snapshot(net, mx.cpu()).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # a scored copy has the path's weights and statistics of the calibration data, not the
    # supernet's (here still the initial 0 / 1)
    arch = task.reference
    copy = scoring_copy(net, [mx.cpu()], arch, calibration)
    stem = copy.stem.conv
    y = stem.conv(mx.nd.concat(*calibration, dim=0)).asnumpy()
    np.testing.assert_allclose(stem.bn.running_mean.data().asnumpy(), y.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stem.bn.running_var.data().asnumpy(), y.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not np.allclose(stem.bn.running_var.data().asnumpy(), 1.0)
    x = calibration[0][:4]
    reference = extract_subnet(net, arch)
    recalibrate_bn(reference, calibration)
    np.testing.assert_allclose(copy(x).asnumpy(), reference(x).asnumpy(), rtol=1e-4, atol=1e-5)
    # two evaluations in a row each see every validation image exactly once
    for _ in range(2):
        assert evaluate(net, val_batches, [mx.cpu()], Sync("device"),
                        arch=arch, calibration=calibration)["images"] == len(small.val)


def test_inheritance_stage_trains_one_path_then_copies_it_everywhere(rng):
    space = get_space("tiny")
    net = supernet_on([mx.cpu()])
    path = Architecture.largest(space)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 3), calibration=[None],
                        inherit_epochs=2, inherit_path=path)
    for epoch in (0, 1):
        assert task.start_epoch(epoch)["path"] == str(path)
        assert {task.draw(rng) for _ in range(5)} == {path}
    snb5 = net.candidates[6][1].main[0].conv.weight      # a stride-1 SNB-5's pointwise conv
    assert not np.array_equal(snb5.data().asnumpy(), net.candidates[6][0].main[0].conv.weight.data().asnumpy())
    assert "path" not in task.start_epoch(2)
    np.testing.assert_array_equal(snb5.data().asnumpy(), net.candidates[6][0].main[0].conv.weight.data().asnumpy())
    assert len({task.draw(rng) for _ in range(5)}) == 5
