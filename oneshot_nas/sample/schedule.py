"""The channel schedule as data: which channel scales each epoch of supernet training may sample.

Channel search (OneShot+): before `epoch_start_cs` only the widest scale is sampled (block search
alone); from then on, with the warm-up, the allowed range widens one scale at a time, 1.8-2.0 for
one epoch, then down to 1.6, 1.4, 1.2 (one epoch each), 1.0 (2 epochs), 0.8 (3), 0.6 (4), 0.4 (5),
then every scale. Without the warm-up every scale is allowed at once. The schedule is a plain list
(one tuple of channel ids per epoch) so it can be printed at start, stored in a checkpoint and
compared on resume.
"""
# Epochs spent at each warm-up stage; stage k allows the k + 2 widest scales (2 = 1.8-2.0 of the
# ten OneShot scales). A space with more scales keeps the last duration for its extra stages.
WARMUP_EPOCHS = (1, 1, 1, 1, 2, 3, 4, 5)


def channel_schedule(space, num_epochs, epoch_start_cs=0, warm_up=False):
    """Allowed channel ids for each epoch: a list of `num_epochs` tuples (ascending ids).

    `epoch_start_cs` < 0 turns channel search off (the widest scale throughout).
    """
    n = space.num_scales
    widest, every = (n - 1,), tuple(range(n))
    if epoch_start_cs < 0:
        return [widest] * num_epochs
    stages = []
    if warm_up:
        for k, allowed in enumerate(range(2, n)):
            epochs = WARMUP_EPOCHS[min(k, len(WARMUP_EPOCHS) - 1)]
            stages += [tuple(range(n - allowed, n))] * epochs
    plan = []
    for epoch in range(num_epochs):
        if epoch < epoch_start_cs:
            plan.append(widest)
        else:
            k = epoch - epoch_start_cs
            plan.append(stages[k] if k < len(stages) else every)
    return plan


def describe_channel_schedule(space, plan):
    """Lines like 'epochs 0-4: scales 2.0 (block search only)', one per run of equal epochs."""
    lines, start = [], 0
    for epoch in range(1, len(plan) + 1):
        if epoch == len(plan) or plan[epoch] != plan[start]:
            ids = plan[start]
            span = f"epoch {start}" if epoch - 1 == start else f"epochs {start}-{epoch - 1}"
            scales = [space.channel_scales[i] for i in ids]
            if len(ids) == 1 and ids[0] == space.num_scales - 1:
                what = f"scale {scales[0]} only (block search, channels at their widest)"
            elif len(ids) == space.num_scales:
                what = f"all scales {scales[0]}-{scales[-1]}"
            else:
                what = f"scales {scales[0]}-{scales[-1]} ({len(ids)} of {space.num_scales})"
            lines.append(f"{span}: {what}")
            start = epoch
    return lines


def allowed_scales(space, ids):
    return [space.channel_scales[i] for i in ids]
