"""Pi-NAS's mechanics: the cross-path loss, the contrastive loss, the exact moving average, which
paths a step trains, and every device's teacher staying the same."""
from functools import partial

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.sample.schedule import channel_schedule
from oneshot_nas.sample.training import PathSampler
from oneshot_nas.space import get_space
from oneshot_nas.train.loop import smoothed_cross_entropy, train_step
from oneshot_nas.train.pinas import PiNAS, info_nce
from oneshot_nas.train.tasks import SupernetTask
from tests.test_space import random_arch
from tests.test_train import TWO_DEVICES, one_batch, snapshot, supernet_on, totals_for, trainable_supernet

CE = partial(smoothed_cross_entropy, smoothing=0.0)


def test_the_cross_path_loss_is_plain_cross_entropy_for_two_identical_paths(rng):
    net = supernet_on([mx.cpu()], get_space("tiny").derive("tiny-nodrop", dropout=0.0))   # same masks
    arch = random_arch(net.space, rng)
    other = random_arch(net.space, rng)
    batch = one_batch(rng)
    x, y = batch.data[0], batch.label[0]
    pinas = PiNAS(cross_path=3.0)
    with mx.autograd.record():        # batch statistics, as in training
        _, same = pinas.objective(net, x, y, (arch, arch), CE)
        plain = CE(net(x, arch), y)
        _, mixed = pinas.objective(net, x, y, (arch, other), CE)
        half = (CE(net(x, arch), y) + CE(net(x, other), y)) / 2
    np.testing.assert_allclose(same.asnumpy(), plain.asnumpy(), rtol=1e-6)
    assert (mixed - half).asnumpy().min() > 0      # two paths that disagree pay for it


def test_info_nce_is_cross_entropy_over_the_batchs_cosine_similarities(rng):
    q, k = rng.normal(size=(6, 10)), rng.normal(size=(6, 10))
    got = info_nce(mx.nd.array(q), mx.nd.array(k), 0.5).asnumpy()
    qn, kn = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (q, k))
    logits = qn @ kn.T / 0.5
    expected = -(np.diag(logits) - np.log(np.exp(logits).sum(axis=1)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    same = info_nce(mx.nd.array(q), mx.nd.array(q * 3), 0.1).asnumpy()
    assert same.max() < got.min()                 # matching its own key is the easy case
    labels = np.array([0, 1, 0, 2, 1, 0])        # with labels: every key of the image's class is a positive
    got = info_nce(mx.nd.array(q), mx.nd.array(k), 0.5, mx.nd.array(labels)).asnumpy()
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    positive = labels[:, None] == labels[None, :]
    np.testing.assert_allclose(got, -(log_p * positive).sum(axis=1) / positive.sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize("contexts", [[mx.cpu(0)], TWO_DEVICES], ids=["one-device", "two-devices"])
def test_the_teacher_is_the_exact_moving_average_of_every_step(contexts, rng):
    space, net, sync, params, trainer = trainable_supernet(contexts)
    pinas = PiNAS(cross_path=0.5, teacher_momentum=0.8)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=None, pinas=pinas)
    task.start_epoch(0)
    trained = {name for name, p in net._collect_params_with_prefix().items() if p.grad_req != "null"}
    average = {n: v for n, v in snapshot(net, contexts[0]).items() if n in trained}
    for _ in range(4):
        pair = task.draw(rng)
        train_step(task, trainer, one_batch(rng), contexts, pair, sync, 16, 0.0, totals_for(contexts))
        now = snapshot(net, contexts[0])
        average = {n: 0.8 * v + 0.2 * now[n] for n, v in average.items()}     # every parameter, every step
    task.end_epoch()
    for ctx in contexts:
        teacher = snapshot(pinas.teacher, ctx)
        for name, value in average.items():
            np.testing.assert_allclose(teacher[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert pinas.step == 4 and task.state_dict()["pinas"] == {"step": 4}


def test_without_cross_path_the_teachers_path_is_not_trained(rng):
    space, net, sync, params, trainer = trainable_supernet([mx.cpu()])
    pinas = PiNAS(teacher_momentum=0.9)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=None, pinas=pinas)
    task.start_epoch(0)
    student, teacher_path = task.draw(rng)
    assert task.drawn == [student]
    before = snapshot(net, mx.cpu())
    train_step(task, trainer, one_batch(rng), [mx.cpu()], (student, teacher_path), sync, 16, 0.0,
               totals_for([mx.cpu()]))
    after = snapshot(net, mx.cpu())
    names = {id(p): n for n, p in net._collect_params_with_prefix().items()}
    for p, (a, b) in enumerate(zip(student.blocks, teacher_path.blocks)):
        moved = [not np.array_equal(before[names[id(q)]], after[names[id(q)]])
                 for q in net.candidates[p][b].collect_params().values() if q.grad_req != "null"]
        assert any(moved) == (a == b), p       # only the student's candidates move
