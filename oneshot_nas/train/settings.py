"""How a network is trained: the optimisation settings, initialisation, the optimizer and precision.

`Settings` is everything that shapes the optimisation; the entry points map their flags onto it. Its
fingerprint (runs/fingerprint.py) decides whether a run can be resumed: fields marked `free` may
change on resume, every other one must stay.
"""
import math
from dataclasses import dataclass

import mxnet as mx

from ..errors import UserError
from ..nn.layers import ElasticBatchNorm
from ..runs.fingerprint import free
from .lr import lr_schedule

OPTIMIZERS = ("nag", "sgd")
INITIALIZERS = {
    "msra": lambda: mx.init.MSRAPrelu(),
    "xavier": lambda: mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
    "uniform": lambda: mx.init.Uniform(0.07),
}


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the optimisation (the entry points map their flags onto these)."""
    num_epochs: int = free(10)
    batch_size: int = 64            # per device
    lr: float = 0.1
    lr_mode: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    target_lr: float = 0.0
    lr_decay: float = 0.1
    lr_decay_epochs: tuple = ()
    optimizer: str = "nag"
    momentum: float = 0.9
    wd: float = 4e-5
    no_wd: bool = False
    label_smoothing: float = 0.0
    dtype: str = "float32"
    seed: int = 0
    # may change when a run is resumed (a longer schedule continues from where it is)
    threads: int = free(2)          # decode threads; the data order is deterministic for a fixed value
    val_images: int = free(0)       # 0: the whole validation set
    val_every: int = free(1)        # validate every N-th epoch (and the last one of a session), or
    #                                 "auto": within VALIDATION_SHARE of the time (train/loop.py)
    log_interval: int = free(50)    # steps between log lines when no progress bar shows; 0: none
    save_frequency: int = free(0)   # keep the model of every N-th epoch too; 0: only the checkpoint

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer {self.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
        if self.dtype not in ("float32", "float16"):
            raise UserError(f"dtype {self.dtype!r}: use float32 or float16", settings="dtype")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label smoothing {self.label_smoothing} must be in [0, 1)", settings="label_smoothing")
        if self.batch_size < 1 or self.num_epochs < 1:
            raise UserError("the batch size and the number of epochs must be at least 1")
        if self.threads < 1:
            raise UserError(f"decode threads must be at least 1, got {self.threads}", settings="num_data_workers")
        if self.val_every != "auto" and (isinstance(self.val_every, bool) or not isinstance(self.val_every, int)
                                         or self.val_every < 1):
            raise UserError(f"validate every {self.val_every} epochs: give 1 or more, or auto", settings="val_every")
        if self.log_interval < 0 or self.save_frequency < 0 or self.val_images < 0:
            raise UserError("the log interval, the save frequency and the validation images must be >= 0")
        for name in ("lr", "warmup_lr", "target_lr", "lr_decay", "momentum", "wd", "warmup_epochs"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise UserError(f"{name} {value} must be a finite number >= 0")
        # the schedule's own checks (mode, warm-up, decay epochs), before anything is written; 1,000
        # steps an epoch stands in for the dataset's count, which fit() uses
        lr_schedule(self.lr, 1000, self.num_epochs, self.lr_mode, self.warmup_epochs, self.warmup_lr,
                    self.target_lr, tuple(self.lr_decay_epochs), self.lr_decay)


def initialize(net, contexts, init="msra", seed=0):
    """Initialise `net` on `contexts` from a seeded MXNet RNG (every worker gets the same weights;
    `Workers.register` then copies worker 0's anyway)."""
    if init not in INITIALIZERS:
        raise UserError(f"initializer {init!r} is unknown; choose one of {', '.join(INITIALIZERS)}",
                        settings="init")
    mx.random.seed(seed)
    net.initialize(INITIALIZERS[init](), ctx=contexts)


def ordered_params(net):
    """Every parameter of `net` once, in a fixed order (by structural name, the same on every
    worker). A parameter a block also registers under a second name (the superkernel's SE weights,
    which its SE decision reads) is listed once, under its first name."""
    named, seen, out = net._collect_params_with_prefix(), set(), []
    for name in sorted(named):
        if id(named[name]) not in seen:
            seen.add(id(named[name]))
            out.append(named[name])
    return out


def make_trainer(params, settings):
    """A Gluon Trainer that only applies the optimizer on each device (see runs.workers)."""
    if settings.no_wd:   # no weight decay on BatchNorm's gamma/beta nor on biases
        for p in params:
            if p.name.endswith(("gamma", "beta", "bias")):
                p.wd_mult = 0.0
    opt = {"learning_rate": settings.lr, "momentum": settings.momentum, "wd": settings.wd,
           "multi_precision": settings.dtype == "float16"}
    return mx.gluon.Trainer(params, settings.optimizer, opt, kvstore=None)


def cast_for_training(net, dtype):
    """float16 weights (multi-precision updates keep a float32 master copy) with float32 BatchNorm,
    which cuDNN requires; float32 leaves `net` as it is."""
    if dtype == "float16":
        net.cast("float16")
        stack = [net]
        while stack:
            block = stack.pop()
            if isinstance(block, ElasticBatchNorm):
                block.cast("float32")
            stack.extend(block._children.values())
