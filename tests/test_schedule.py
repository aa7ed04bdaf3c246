"""The channel-search schedule (block search, warm-up, all scales) and the learning-rate schedule."""
import math

import pytest

from oneshot_nas.errors import UserError
from oneshot_nas.sample.training import PathSampler
from oneshot_nas.cost.limits import Limits
from oneshot_nas.cost.model import CostModel
from oneshot_nas.sample.schedule import allowed_scales, channel_schedule, describe_channel_schedule
from oneshot_nas.train.lr import lr_schedule
from oneshot_nas.space import get_space

SPACE = get_space("oneshot+")


def test_warm_up_widens_one_scale_at_a_time_after_block_search():
    plan = channel_schedule(SPACE, 30, epoch_start_cs=3, warm_up=True)
    lowest = [min(allowed_scales(SPACE, ids)) for ids in plan]
    # 3 epochs at 2.0 only, then 1.8 (1 epoch), 1.6, 1.4, 1.2 (1 each), 1.0 (2), 0.8 (3), 0.6 (4),
    # 0.4 (5), then every scale
    expected = [2.0] * 3 + [1.8, 1.6, 1.4, 1.2] + [1.0] * 2 + [0.8] * 3 + [0.6] * 4 + [0.4] * 5 + [0.2] * 9
    assert lowest == expected
    for ids in plan:   # always a contiguous range up to the widest scale
        assert ids == tuple(range(ids[0], SPACE.num_scales))
    assert describe_channel_schedule(SPACE, plan) == [
        "epochs 0-2: scale 2.0 only (block search, channels at their widest)",
        "epoch 3: scales 1.8-2.0 (2 of 10)", "epoch 4: scales 1.6-2.0 (3 of 10)",
        "epoch 5: scales 1.4-2.0 (4 of 10)", "epoch 6: scales 1.2-2.0 (5 of 10)",
        "epochs 7-8: scales 1.0-2.0 (6 of 10)", "epochs 9-11: scales 0.8-2.0 (7 of 10)",
        "epochs 12-15: scales 0.6-2.0 (8 of 10)", "epochs 16-20: scales 0.4-2.0 (9 of 10)",
        "epochs 21-29: all scales 0.2-2.0"]


@pytest.mark.parametrize("start, warm_up, first_all", [(0, False, 0), (4, False, 4), (0, True, 18)])
def test_channel_search_start(start, warm_up, first_all):
    plan = channel_schedule(SPACE, 25, epoch_start_cs=start, warm_up=warm_up)
    every = tuple(range(SPACE.num_scales))
    assert all(ids == (9,) for ids in plan[:start])
    assert plan.index(every) == first_all and all(ids == every for ids in plan[first_all:])


def test_channel_search_off():
    assert channel_schedule(SPACE, 5, epoch_start_cs=-1) == [(9,)] * 5


def test_budget_unreachable_in_early_stages_is_said_at_start():
    costs = CostModel(SPACE)
    sampler = PathSampler(SPACE, Limits(costs, {"macs": (250e6, 330e6)}), "uniform")
    plan = channel_schedule(SPACE, 25, epoch_start_cs=2, warm_up=True)
    text = sampler.describe(plan)
    assert "macs in [250M, 330M] by uniform sampling" in text
    assert "unreachable with the widths allowed in epochs 0-" in text
    assert not sampler.start_epoch(plan[0])               # 2.0 only: every path is far above 330M
    assert sampler.start_epoch(plan[-1])                  # every scale: constrained
    with pytest.raises(UserError, match="they range from"):
        PathSampler(SPACE, Limits(costs, {"macs": (None, 10e6)}), "strolling")


def test_cosine_with_linear_warm_up():
    lr = lr_schedule(0.4, steps_per_epoch=10, num_epochs=5, mode="cosine", warmup_epochs=1)
    values = [lr(u) for u in range(51)]                    # (called in order, as training does)
    assert values[0] == pytest.approx(0.0) and values[5] == pytest.approx(0.2)
    assert values[10] == pytest.approx(0.4)
    assert values[30] == pytest.approx(0.2)                # half-way through the cosine
    assert values[50] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    for u in (10, 23, 37):                                 # the cosine by hand
        assert values[u] == pytest.approx(0.4 * (1 + math.cos(math.pi * (u - 10) / 40)) / 2, rel=1e-12)


def test_step_and_linear():
    step = lr_schedule(1.0, 10, 10, mode="step", decay_epochs=(4, 8), decay_factor=0.1)
    got = {u: step(u) for u in range(100)}
    assert [got[u] for u in (0, 39, 40, 79, 80, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    linear = lr_schedule(1.0, 10, 10, mode="linear", target_lr=0.1)
    assert linear(50) == pytest.approx(0.55) and linear(100) == pytest.approx(0.1)
    cos = lr_schedule(1.0, 4, 3, warmup_epochs=0.5, warmup_lr=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(1) == pytest.approx(0.55)
    assert math.isclose(cos(2), 1.0)
    resumed = lr_schedule(1.0, 10, 10, mode="step", decay_epochs=(4, 8), decay_factor=0.1)
    assert resumed(85) == pytest.approx(0.01)              # a fresh scheduler after a resume catches up


def test_bad_schedules():
    with pytest.raises(UserError, match="learning-rate mode 'poly' is unknown"):
        lr_schedule(0.1, 10, 10, mode="poly")
    with pytest.raises(UserError, match="warm-up epochs 20"):
        lr_schedule(0.1, 10, 10, warmup_epochs=20)
    with pytest.raises(UserError, match="step decay epochs"):
        lr_schedule(0.1, 10, 10, mode="step", decay_epochs=())
