"""Exact resume: 2 epochs straight and 1 epoch + resume + 1 epoch end with the same parameters.

The data order is deterministic: each epoch opens a fresh ImageRecordIter seeded with seed + epoch
(at a fixed number of decode threads); paths come from a numpy Generator whose state is in the
checkpoint, MXNet's RNG (dropout) is reseeded per epoch, and the optimizer states are saved.
"""
import dataclasses

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.cost.limits import Limits
from oneshot_nas.cost.model import CostModel
from oneshot_nas.data.slices import calibration_slice
from oneshot_nas.errors import UserError
from oneshot_nas.nn.subnet import SubNet
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.runs.rundir import RunDir
from oneshot_nas.runs.workers import Workers
from oneshot_nas.sample.schedule import channel_schedule
from oneshot_nas.sample.learned import LearnedDistribution, Learning
from oneshot_nas.sample.training import PathSampler
from oneshot_nas.space import Architecture, get_space
from oneshot_nas.train.loop import fit
from oneshot_nas.train.pinas import PiNAS
from oneshot_nas.train.settings import Settings, initialize
from oneshot_nas.train.tasks import SubnetTask, SupernetTask

SETTINGS = Settings(num_epochs=2, batch_size=32, lr=0.1, lr_mode="cosine", warmup_epochs=0.5, wd=1e-3,
                    no_wd=True, label_smoothing=0.1, seed=3, threads=1)


def make_task(kind, small):
    """A fresh task, as a new process would build it (new blocks, new sampler). 'supernet-inherit'
    trains one path in epoch 0 and copies it into every candidate when epoch 1 starts, which after
    a resume happens to the loaded weights. 'supernet-pinas' also trains with Pi-NAS (two paths and
    a mean teacher) after that. 'supernet-quantized' trains the mixed-precision space (bit widths
    drawn per position, fake-quantized paths) under a BitOps budget."""
    space = get_space("tiny-q" if kind == "supernet-quantized" else "tiny")
    if kind == "subnet":
        net = SubNet(Architecture(space, [1] * 20, [6] * 20))
        initialize(net, [mx.cpu()], seed=5)
        net.hybridize(static_alloc=True, static_shape=True)
        return SubnetTask(net)
    net = SuperNet(space)
    initialize(net, [mx.cpu()], seed=5)
    net.hybridize(static_alloc=True)
    # block search in epoch 0, the first warm-up stage (scales 1.8-2.0) in epoch 1; the strolling
    # sampler's archive and cycle carry over the resume
    plan = channel_schedule(space, SETTINGS.num_epochs, epoch_start_cs=1, warm_up=True)
    limits = Limits(CostModel(space), {"macs": (0.7e6, 1.0e6)} if space.name == "tiny" else {"bitops": (None, 40e6)})
    learned = kind == "supernet-learned"          # its distribution turns joint in epoch 1
    sampler = (PathSampler(space, limits, learned=LearnedDistribution(space)) if learned
               else PathSampler(space, limits, "strolling"))
    inherit = 1 if kind in ("supernet-inherit", "supernet-pinas") else 0
    pinas = PiNAS(cross_path=0.5, teacher_momentum=0.9) if kind == "supernet-pinas" else None
    learning = Learning(lr=2.0, samples=3, min_samples=1, joint_from=1) if learned else None
    return SupernetTask(net, sampler, plan, calibration_slice(small, 64, 32), val_paths=2, seed=3,
                        inherit_epochs=inherit, inherit_path=Architecture.largest(space) if inherit else None,
                        pinas=pinas, learning=learning)


def params_of(net):
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize("kind", ["supernet", "supernet-inherit", "supernet-pinas", "supernet-learned",
                                  "supernet-quantized", "subnet"])
def test_two_epochs_straight_equal_one_plus_resume_plus_one(kind, small, tmp_path):
    sync = Workers("device")
    straight = make_task(kind, small)
    run_a = RunDir.create(tmp_path / "a", {})
    history_a = fit(straight, small, SETTINGS, [mx.cpu()], sync, run=run_a, save_dir=run_a.path, progress=False)

    run_b = RunDir.create(tmp_path / "b", {})
    first = make_task(kind, small)
    fit(first, small, SETTINGS, [mx.cpu()], sync, run=run_b, save_dir=run_b.path, stop_after=0, progress=False)
    assert [r["epoch"] for r in run_b.read()] == [0]
    resumed = make_task(kind, small)
    run_b = RunDir.create(tmp_path / "b", {}, resume=True)
    history_b = fit(resumed, small, SETTINGS, [mx.cpu()], sync, run=run_b, save_dir=run_b.path, resume=True,
                    progress=False)

    a, b = params_of(straight.net), params_of(resumed.net)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert [r["epoch"] for r in run_b.read()] == [0, 1]
    for ra, rb in zip(history_a, history_b):
        assert ra["loss"] == rb["loss"] and ra["lr"] == rb["lr"]
        assert ra.get("val_paths") == rb.get("val_paths")
    if kind.startswith("supernet"):
        assert [r["scales"] for r in history_b] == [[2.0], [1.8, 2.0]]   # the warm-up stage survived
        assert resumed.sampler.state_dict() == straight.sampler.state_dict()
        assert ("path" in history_b[0]) == (kind in ("supernet-inherit", "supernet-pinas"))
    if kind == "supernet-learned":         # the distribution learned in both epochs, and turned joint
        assert resumed.sampler.learned.joint and resumed.sampler.learned.baseline is not None
        assert [r["epoch"] for r in run_b.read("paths.jsonl") if "samples_per_step" in r] == [0, 1]
    if kind == "supernet-pinas":           # the teacher too, and its step count
        a, b = params_of(straight.pinas.teacher), params_of(resumed.pinas.teacher)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert straight.pinas.step == resumed.pinas.step > 0


def test_resume_refuses_changed_settings(small, tmp_path):
    sync = Workers("device")
    run = RunDir.create(tmp_path / "r", {})
    fit(make_task("supernet", small), small, SETTINGS, [mx.cpu()], sync, run=run, save_dir=run.path,
        stop_after=0, progress=False)
    task = make_task("supernet", small)
    task.plan = channel_schedule(task.space, SETTINGS.num_epochs, epoch_start_cs=-1)   # channel search off
    with pytest.raises(UserError, match=r"other settings.*task\.plan was"):
        fit(task, small, SETTINGS, [mx.cpu()], sync, run=run, save_dir=run.path, resume=True, progress=False)
    with pytest.raises(UserError, match="settings.lr was 0.1, now 0.2"):
        fit(make_task("supernet", small), small, Settings(**{**SETTINGS.__dict__, "lr": 0.2}), [mx.cpu()],
            sync, run=run, save_dir=run.path, resume=True, progress=False)


def test_resume_without_a_checkpoint_says_so(small, tmp_path):
    with pytest.raises(UserError, match="has no checkpoint yet"):
        fit(make_task("subnet", small), small, SETTINGS, [mx.cpu()], Workers("device"),
            save_dir=tmp_path, resume=True, progress=False)


def test_records_hold_every_epoch_once_after_a_kill_between_records_and_checkpoint(small, tmp_path):
    """The records of an epoch are written before its checkpoint. A kill in between leaves lines of
    an epoch the checkpoint lacks; the resume drops them and trains that epoch again, so
    metrics.jsonl and the log end with each epoch exactly once."""
    import logging
    import shutil
    from oneshot_nas.runs.rundir import open_run
    path = tmp_path / "run"
    run = open_run(path, {}, log_name="train.log")
    fit(make_task("subnet", small), small, SETTINGS, [mx.cpu()], Workers("device"), run=run,
        save_dir=path, stop_after=0, progress=False)
    shutil.copytree(path / "checkpoint", tmp_path / "after-epoch-0")
    run = open_run(path, {}, resume=True, log_name="train.log")
    fit(make_task("subnet", small), small, SETTINGS, [mx.cpu()], Workers("device"), run=run,
        save_dir=path, resume=True, progress=False)
    # as if killed after epoch 1's records, before its checkpoint
    shutil.rmtree(path / "checkpoint")
    shutil.copytree(tmp_path / "after-epoch-0", path / "checkpoint")
    run = open_run(path, {}, resume=True, log_name="train.log")
    history = fit(make_task("subnet", small), small, SETTINGS, [mx.cpu()], Workers("device"), run=run,
                  save_dir=path, resume=True, progress=False)
    logging.getLogger().handlers[-1].flush()
    assert [r["epoch"] for r in run.read()] == [0, 1] and len(history) == 2
    log = (path / "train.log").read_text()
    assert log.count(" epoch 0: ") == 1 and log.count(" epoch 1: ") == 1
    assert log.count("resuming after epoch 0") == 2


def test_a_loss_that_is_not_finite_stops_the_run_and_keeps_the_last_good_checkpoint(small, tmp_path):
    """Epoch 1 of a resumed run starts from weights holding a NaN (as a diverged run's would):
    the run stops with one message, writes no record of that epoch and keeps epoch 0's checkpoint."""
    import json
    run = RunDir.create(tmp_path / "r", {})
    fit(make_task("subnet", small), small, SETTINGS, [mx.cpu()], Workers("device"), run=run,
        save_dir=run.path, stop_after=0, progress=False)
    weights = run.path / "checkpoint" / "model.params"
    params = mx.nd.load(str(weights))
    name = next(k for k in params if k.endswith("weight"))
    params[name] = params[name] * float("nan")
    mx.nd.save(str(weights), params)
    run = RunDir.create(tmp_path / "r", {}, resume=True)
    with pytest.raises(UserError, match=r"the training loss became nan in epoch 1 .*last checkpoint"):
        fit(make_task("subnet", small), small, SETTINGS, [mx.cpu()], Workers("device"), run=run,
            save_dir=run.path, resume=True, progress=False)
    assert [r["epoch"] for r in run.read()] == [0]
    assert json.loads((run.path / "checkpoint" / "state.json").read_text())["epoch"] == 0


@pytest.mark.parametrize("kind", ["supernet", "supernet-learned"])
def test_validating_less_often_changes_nothing_else(kind, small):
    """--val-every (and its auto schedule) only decides when a validation runs: the weights and the
    last epoch's validation are those of a run that validates every epoch."""
    sync = Workers("device")
    every, rarely = make_task(kind, small), make_task(kind, small)
    history_every = fit(every, small, SETTINGS, [mx.cpu()], sync, progress=False)
    history_rarely = fit(rarely, small, dataclasses.replace(SETTINGS, val_every=2), [mx.cpu()], sync, progress=False)
    assert "val_paths" in history_every[0] and "val_paths" not in history_rarely[0]
    a, b = params_of(every.net), params_of(rarely.net)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert history_every[-1]["val_paths"] == history_rarely[-1]["val_paths"]
    assert history_every[-1]["val_top1_mean"] == history_rarely[-1]["val_top1_mean"]
