"""The learning rate per update: linear warm-up, then cosine, step or linear decay."""
import math
from dataclasses import dataclass

from ..errors import UserError

LR_MODES = ("cosine", "step", "linear")


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate per update (0-based): linear warm-up from `warmup_lr` to `base_lr` over
    `warmup_epochs`, then cosine / step / linear decay to `target_lr` at the end of `num_epochs`.

    `step` multiplies by `decay_factor` at each epoch in `decay_epochs` (absolute epoch numbers).
    """
    base_lr: float
    steps_per_epoch: int
    num_epochs: int
    mode: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    target_lr: float = 0.0
    decay_epochs: tuple = ()
    decay_factor: float = 0.1

    def __post_init__(self):
        if self.mode not in LR_MODES:
            raise UserError(f"learning-rate mode {self.mode!r} is unknown; choose one of {', '.join(LR_MODES)}")
        if self.steps_per_epoch < 1 or self.num_epochs < 1:
            raise UserError("training needs at least one epoch of at least one step")
        if not 0 <= self.warmup_epochs <= self.num_epochs:
            raise UserError(f"warm-up epochs {self.warmup_epochs} must be within 0 and the number of "
                            f"epochs ({self.num_epochs})")

    def __call__(self, update):
        warm = self.warmup_epochs * self.steps_per_epoch
        if update < warm:
            return self.warmup_lr + (self.base_lr - self.warmup_lr) * update / warm
        total = self.num_epochs * self.steps_per_epoch
        if self.mode == "step":
            epoch = update / self.steps_per_epoch
            return self.base_lr * self.decay_factor ** sum(epoch >= e for e in self.decay_epochs)
        progress = min(1.0, (update - warm) / max(1.0, total - warm))
        if self.mode == "cosine":
            return self.target_lr + (self.base_lr - self.target_lr) * (1 + math.cos(math.pi * progress)) / 2
        return self.target_lr + (self.base_lr - self.target_lr) * (1 - progress)
