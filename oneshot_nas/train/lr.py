"""The learning rate per update: linear warm-up, then cosine, step or linear decay.

MXNet's own schedulers compute exactly what we want (mx.lr_scheduler: cosine, a power-1 polynomial
for linear, multi-factor for step), so they are used, with the units translated: epochs to updates,
and the step decay moved one update earlier because MXNet decays after the update that reaches a
step (num_update > step) where an epoch's decay should hold from that epoch's first update on.
"""
import mxnet as mx

from ..errors import UserError

LR_MODES = ("cosine", "step", "linear")


def lr_schedule(base_lr, steps_per_epoch, num_epochs, mode="cosine", warmup_epochs=0.0, warmup_lr=0.0,
                target_lr=0.0, decay_epochs=(), decay_factor=0.1):
    """An MXNet LRScheduler: called with the 0-based update number, it returns that update's
    learning rate. Linear warm-up from `warmup_lr` to `base_lr` over `warmup_epochs` (rounded to
    whole updates), then cosine / linear decay to `target_lr` at the end of `num_epochs`, or `step`:
    times `decay_factor` from each epoch of `decay_epochs` (absolute epoch numbers) on. Call it with
    non-decreasing updates (the step scheduler counts its decays)."""
    if mode not in LR_MODES:
        raise UserError(f"learning-rate mode {mode!r} is unknown; choose one of {', '.join(LR_MODES)}",
                        settings="lr_mode")
    if steps_per_epoch < 1 or num_epochs < 1:
        raise UserError("training needs at least one epoch of at least one step")
    if not 0 <= warmup_epochs < num_epochs:
        raise UserError(f"warm-up epochs {warmup_epochs} must be at least 0 and fewer than the number of "
                        f"epochs ({num_epochs})", settings="warmup_epochs")
    total, warm = num_epochs * steps_per_epoch, int(round(warmup_epochs * steps_per_epoch))
    common = dict(base_lr=base_lr, warmup_steps=warm, warmup_begin_lr=warmup_lr)
    if mode == "cosine":
        return mx.lr_scheduler.CosineScheduler(total, final_lr=target_lr, **common)
    if mode == "linear":
        return mx.lr_scheduler.PolyScheduler(total, pwr=1, final_lr=target_lr, **common)
    if not 0 < decay_factor <= 1:
        raise UserError(f"the step decay factor {decay_factor} must be in (0, 1]", settings="lr_decay")
    steps = [int(round(e * steps_per_epoch)) - 1 for e in sorted(decay_epochs)]
    if not steps or steps[0] < warm or len(set(steps)) < len(steps):
        raise UserError(f"step decay epochs {tuple(decay_epochs)}: give distinct epochs after the warm-up",
                        settings="lr_decay_epoch")
    return mx.lr_scheduler.MultiFactorScheduler(steps, factor=decay_factor, **common)
