"""Flags the entry points share, and their translation into the package's values.

Flag names live here and in the entry points only; the package below speaks of its own names
(`macs`, `num_classes`, ...). Budget flags are generated from the cost registry
(cost/model.METRICS), so a new cost is a budget of training and search alike:
    --max-COST, --min-COST, --COST-range LO:HI     e.g. --max-macs 330M, --params-range 2.8M:5.3M
with the spellings of the earlier scripts kept as documented aliases: --max-flops, --min-flops and
--flops-range limit MACs (the papers' "FLOPs" are multiply-accumulates), --max-score the MicroNet
score. Numbers take K, M and G suffixes; NaN and infinities are refused.
"""
import argparse

from ..cost.limits import parse_number, parse_range
from ..cost.model import BASELINES, METRICS
from .. import cli
from ..errors import UserError

ALIASES = {"flops": "macs", "score": "micronet_score"}    # old budget names -> costs
# the OneShot+ MXNet scripts' spellings of the same flags (docs/flags.md)
SPELLINGS = {"--max-params": ("--param-max",), "--min-params": ("--param-min",),
             "--max-flops": ("--flop-max",), "--min-flops": ("--flop-min",)}
# the defaults of retraining one architecture: train_subnet.py, and every unit of a ground-truth table
RETRAIN_DEFAULTS = {"epochs": 8, "batch_size": 64, "lr": 0.1}


def number(text):
    """argparse type: '330M', '3.5e6', '1.2G' -> float (finite)."""
    try:
        return parse_number(text, "number")
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def finite(text):
    """argparse type: a finite float (no K/M/G suffix), e.g. a learning rate."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def val_every(text):
    """argparse type of --val-every: 'auto' or a whole number of epochs >= 1."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of epochs >= 1, or auto")
    return value


def _flag(name):
    return name.replace("_", "-")


def add_budget_flags(parser, title="budget (costs from lookup tables; numbers take K, M, G)", device_blocks=True):
    """--max-/--min-/--COST-range for every cost, the aliases, and what the costs need; with
    `device_blocks`, also --device-blocks (for the commands that sample or search paths)."""
    group = parser.add_argument_group(title)
    for name, m in METRICS.items():
        unit = {"count": "", "ms": " (ms)", "score": ""}[m.unit]
        flag = _flag(name)
        group.add_argument(f"--max-{flag}", *SPELLINGS.get(f"--max-{flag}", ()), type=number, metavar="N",
                           help=f"at most this {m.description}{unit}")
        group.add_argument(f"--min-{flag}", *SPELLINGS.get(f"--min-{flag}", ()), type=number, metavar="N",
                           help="at least this")
        group.add_argument(f"--{_flag(name)}-range", metavar="LO:HI", help="both ends at once")
    for old, new in ALIASES.items():
        for kind in ("max", "min"):
            group.add_argument(f"--{kind}-{old}", *SPELLINGS.get(f"--{kind}-{old}", ()), type=number, metavar="N",
                               help=f"alias of --{kind}-{_flag(new)}")
        group.add_argument(f"--{old}-range", metavar="LO:HI", help=f"alias of --{_flag(new)}-range")
    group.add_argument("--latency-table", metavar="JSON",
                       help="latency table of this space and device (for latency_ms budgets), "
                            "made by python profiling/latency_table.py")
    if device_blocks:
        group.add_argument("--device-blocks", type=int, metavar="K",
                           help="HURRICANE: at each position only the K block choices fastest on the device of "
                                "--latency-table (the space then differs per device; default: all)")
    group.add_argument("--baseline", default="mobilenetv2-1.4", choices=BASELINES,
                       help="MicroNet score baseline")
    group.add_argument("--bits", type=int, default=32, choices=(32, 16, 8), help="MicroNet score precision")
    return group


def budget_from(args):
    """{cost: (lo, hi)} from the budget flags; a cost given two ways is refused."""
    limits = {}
    for name in METRICS:
        given = {}
        for alias in [name] + [old for old, new in ALIASES.items() if new == name]:
            flag = _flag(alias)
            lo, hi = getattr(args, f"min_{alias}"), getattr(args, f"max_{alias}")
            if lo is not None or hi is not None:
                given[f"--min-{flag}/--max-{flag}"] = (lo, hi)
            text = getattr(args, f"{alias}_range")
            if text is not None:
                given[f"--{flag}-range"] = parse_range(text, f"--{flag}-range")
        if len(given) > 1:
            raise UserError(f"the {name} budget is given twice ({' and '.join(given)}); keep one")
        if given:
            limits[name] = next(iter(given.values()))
    if "latency_ms" in limits and not args.latency_table:
        raise UserError("a latency budget needs --latency-table PATH (python profiling/latency_table.py "
                        "measures one)")
    return limits


def add_stage_flags(group):
    """HURRICANE's stages: which positions a supernet trains (or a search searches)."""
    group.add_argument("--free-positions", metavar="A:B",
                       help="HURRICANE's two stages: only positions A..B-1 are sampled (searched); the others "
                            "hold the blocks and widths of --fixed-from (default: every position)")
    group.add_argument("--fixed-from", metavar="ARCH",
                       help="with --free-positions: the architecture (JSON or string) the other positions take")


def fixed_positions_from(args, space):
    """{position: (block, channel)} the stage holds (None without --free-positions), checked."""
    from ..sample.stages import fixed_positions
    return fixed_positions(space, args.free_positions, args.fixed_from)


def device_blocks_from(args, space):
    """Per position, the block ids --device-blocks keeps (None without it)."""
    if args.device_blocks is None:
        return None
    if not args.latency_table:
        raise UserError("--device-blocks picks the fastest blocks of a device: give its --latency-table PATH "
                        "(python profiling/latency_table.py measures one)", settings="latency_table")
    from ..cost.latency import LatencyTable
    return LatencyTable.load(args.latency_table, space).fastest_blocks(args.device_blocks)


def cost_model(args, space):
    """The CostModel the budget flags describe (with the latency table if one is given)."""
    from ..cost.latency import LatencyTable
    from ..cost.model import CostModel
    latency = LatencyTable.load(args.latency_table, space) if args.latency_table else None
    return CostModel(space, latency=latency, reference=args.baseline, bits=args.bits)


def add_search_split_flags(group):
    """How a supernet's paths are scored on held-out images: the same flags for the search and for
    python -m oneshot_nas.rank score (data/slices.plan_search_split decides with their values)."""
    group.add_argument("--update-bn-images", type=int,
                       help="training images for BN recalibration (default min(20000, all not held out))")
    group.add_argument("--search-val-images", type=int,
                       help="images held out of the training set to rank candidates (default "
                            "min(10000, 1/5 of the training set))")
    group.add_argument("--search-on-val", action="store_true",
                       help="rank on the validation set instead (the final validation figure is then optimistic)")


# ----- data and training -----------------------------------------------------------------------------
def add_data_flags(parser, title="data (default: the embedded digits)"):
    """Where the images come from: ImageNet-style RecordIO, an image folder, or nothing (digits)."""
    data = parser.add_argument_group(title)
    data.add_argument("--rec-train", help="training RecordIO (.rec)")
    data.add_argument("--rec-train-idx", help="its index (.idx)")
    data.add_argument("--rec-val", help="validation RecordIO (.rec)")
    data.add_argument("--rec-val-idx", help="its index (.idx)")
    data.add_argument("--data-dir", help="an image folder with train/ and val/ class folders")
    data.add_argument("--num-classes", type=int, help="classifier size (default: the space's)")
    data.add_argument("--digits-view", default="default", choices=("default", "few-shot"),
                      help="the embedded digits: default 1,438 train / 359 val; few-shot 359 train, 719 "
                           "that rank search candidates, 719 val (docs/ranking.md)")
    return data


def add_training_flags(parser, epochs, batch_size, lr, save_dir, sessions=True):
    """Data, schedule, devices and run-record flags (names follow gluoncv's ImageNet script).
    `sessions=False` leaves out the flags of one training run's sessions and workers (--resume,
    --stop-after-epoch, --logging-file, --dump-worker-params, the dist_* kvstores), for a command
    that runs many trainings (python -m oneshot_nas.rank truth)."""
    from ..runs.workers import KV_TYPES
    from ..train.lr import LR_MODES
    from ..train.settings import INITIALIZERS, OPTIMIZERS
    data = add_data_flags(parser)
    data.add_argument("-j", "--num-data-workers", type=int, default=2, dest="num_workers",
                      help="decode threads (the data order is deterministic for a fixed value)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--num-epochs", type=int, default=epochs, help="epochs to train")
    opt.add_argument("--batch-size", type=int, default=batch_size, help="images per device per step")
    opt.add_argument("--lr", type=finite, default=lr, help="learning rate (for the whole batch of all devices)")
    opt.add_argument("--lr-mode", choices=LR_MODES, default="cosine", help="decay after the warm-up")
    opt.add_argument("--lr-decay", type=finite, default=0.1, help="factor of --lr-mode step")
    opt.add_argument("--lr-decay-epoch", default="", help="epochs of --lr-mode step, e.g. 40,60")
    opt.add_argument("--lr-decay-period", type=int, default=0, metavar="EPOCHS",
                     help="--lr-mode step every EPOCHS epochs (gluoncv's spelling; instead of --lr-decay-epoch)")
    opt.add_argument("--warmup-epochs", type=finite, default=0.0, help="linear learning-rate warm-up")
    opt.add_argument("--warmup-lr", type=finite, default=0.0, help="learning rate the warm-up starts at")
    opt.add_argument("--target-lr", type=finite, default=0.0, help="learning rate at the end (cosine/linear)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="nag", help="SGD with Nesterov or plain momentum")
    opt.add_argument("--momentum", type=finite, default=0.9, help="SGD momentum")
    opt.add_argument("--wd", type=finite, default=4e-5, help="weight decay")
    opt.add_argument("--no-wd", action="store_true", help="no weight decay on BatchNorm and biases")
    opt.add_argument("--label-smoothing", type=finite, default=0.0, nargs="?", const=0.1,
                     help="smoothing of the labels; the flag alone means 0.1, as in gluoncv's scripts")
    opt.add_argument("--init", choices=sorted(INITIALIZERS), default="msra", help="weight initialisation")
    opt.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                     help="float16: GPU only, with float32 master weights")
    opt.add_argument("--seed", type=int, default=0, help="every random choice of the run follows it")
    dev = parser.add_argument_group("devices")
    dev.add_argument("--gpus", default="", help="e.g. 0,1,2,3 (default: the CPU)")
    dev.add_argument("--num-gpus", type=int, metavar="N", help="GPUs 0..N-1 (gluoncv's spelling of --gpus)")
    kv_types = [k for k in KV_TYPES if k != "none" and (sessions or not k.startswith("dist"))]
    dev.add_argument("--kv-store", choices=kv_types, default="device",
                     help="dist_sync/dist_device_sync under python -m oneshot_nas.launch" if sessions else
                     "how the devices of one process share a step")
    rec = parser.add_argument_group("run record")
    rec.add_argument("--save-dir", default=save_dir, help="the run folder (args, logs, checkpoints, model)")
    if sessions:
        rec.add_argument("--logging-file", default="train.log", help="log file name inside --save-dir (or a path)")
        rec.add_argument("--resume", action="store_true", help="continue the run in --save-dir exactly")
    rec.add_argument("--overwrite", action="store_true", help="start again in a --save-dir that holds a run")
    if sessions:
        rec.add_argument("--stop-after-epoch", type=int, default=None,
                         help="end this session after that epoch (continue later with --resume)")
    rec.add_argument("--val-images", type=int, default=0, help="validate on this many images (0: all)")
    rec.add_argument("--val-every", type=val_every, default="auto", metavar="EPOCHS",
                     help="validate every EPOCHS-th epoch (and always the last of a session); auto: as often "
                          "as keeps validation within 25%% of the time (the first and the last epoch always)")
    if sessions:
        rec.add_argument("--dump-worker-params", metavar="DIR",
                         help="every worker also writes its final parameters to DIR/worker-RANK.params")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    rec.add_argument("--log-interval", type=int, default=50, metavar="STEPS",
                     help="log loss, images/s and the time left every STEPS steps when there is no "
                          "progress bar (no terminal, or --no-progress); 0: only once per epoch")
    rec.add_argument("--save-frequency", type=int, default=0, metavar="EPOCHS",
                     help="also keep the model of every EPOCHS-th epoch (epoch-NNNN.params); 0: only the "
                          "latest checkpoint, which --resume uses")
    opt.add_argument("--mode", choices=("hybrid",), default="hybrid",
                     help="gluoncv's --mode: the networks here always run as hybridized graphs")
    resume = ("a run resumes from its own folder: pass --resume with the run's --save-dir (its checkpoint "
              "holds the epoch, parameters and optimizer states)" if sessions else
              "this command resumes by itself: run it again with the same --save-dir and finished work "
              "is kept")
    for flag in ("--resume-epoch", "--resume-params", "--resume-states"):
        cli.renamed(parser, flag, resume)
    # what gluoncv's and the OneShot+ scripts' users type (docs/flags.md)
    cli.renamed(parser, "--use-rec", "RecordIO is read whenever --rec-train/--rec-train-idx/--rec-val/"
                                     "--rec-val-idx are given", nargs=0)
    cli.renamed(parser, "--model", "the network is the search space's: pass --space (oneshot, oneshot+, tiny, "
                                   "tiny4), or an architecture to train_subnet.py")
    cli.renamed(parser, "--use-se", "SE belongs to the search space: --space oneshot+ has it in its last "
                                    "stages, --space oneshot has none", nargs=0)
    for flag in ("--block-choices", "--channel-choices"):
        cli.renamed(parser, flag, "one architecture is one string or file: python train_subnet.py "
                                  "'oneshot+_B...-..._C...' or models/NAME.json")
    cli.renamed(parser, "--train-upper-constraints", "give the budget as --max-macs 330M --max-params 5M "
                                                     "(and --constraint-sampler uniform|strolling)")


def settings_from(args):
    try:
        decay_epochs = tuple(float(e) for e in args.lr_decay_epoch.split(",") if e.strip())
    except ValueError:
        raise UserError(f"--lr-decay-epoch {args.lr_decay_epoch!r}: give epochs separated by commas, "
                        "e.g. 40,60") from None
    period = getattr(args, "lr_decay_period", 0)
    if period:
        if decay_epochs:
            raise UserError("--lr-decay-period and --lr-decay-epoch both place the decays; pass one of them")
        if period < 0:
            raise UserError(f"--lr-decay-period {period}: give a number of epochs >= 1")
        decay_epochs = tuple(float(e) for e in range(period, args.num_epochs, period))
    if args.lr_mode == "step" and not decay_epochs:
        raise UserError("--lr-mode step needs --lr-decay-epoch, e.g. --lr-decay-epoch 40,60")
    from ..train.settings import Settings
    return Settings(num_epochs=args.num_epochs, batch_size=args.batch_size, lr=args.lr, lr_mode=args.lr_mode,
                    warmup_epochs=args.warmup_epochs, warmup_lr=args.warmup_lr, target_lr=args.target_lr,
                    lr_decay=args.lr_decay, lr_decay_epochs=decay_epochs, optimizer=args.optimizer,
                    momentum=args.momentum, wd=args.wd, no_wd=args.no_wd,
                    label_smoothing=args.label_smoothing, dtype=args.dtype, seed=args.seed,
                    threads=args.num_workers, val_images=args.val_images, val_every=args.val_every,
                    log_interval=args.log_interval,
                    save_frequency=args.save_frequency)


def gpus_from(args):
    """--gpus, or GPUs 0..N-1 for gluoncv's --num-gpus N."""
    if getattr(args, "num_gpus", None) is None:
        return args.gpus
    if args.gpus:
        raise UserError("--gpus and --num-gpus both name GPUs; pass one of them")
    if args.num_gpus < 0:
        raise UserError(f"--num-gpus {args.num_gpus}: give a number of GPUs >= 0")
    gpus, args.num_gpus = ",".join(str(i) for i in range(args.num_gpus)), None
    return gpus


def devices_from(args):
    from ..runs.workers import contexts_from
    args.gpus = gpus_from(args)
    if args.dtype == "float16" and not args.gpus:
        raise UserError("--dtype float16 is for GPUs (pass --gpus); the CPU trains in float32")
    return contexts_from(args.gpus)


def dataset_from(args, space):
    """The dataset the data flags name (the embedded digits without any) for a space."""
    from ..data.sources import resolve_dataset
    return resolve_dataset(rec_train=args.rec_train, rec_train_idx=args.rec_train_idx, rec_val=args.rec_val,
                           rec_val_idx=args.rec_val_idx, data_dir=args.data_dir, digits_view=args.digits_view,
                           num_classes=space.num_classes,
                           input_size=space.input_size)


def add_latency_flags(parser, title="latency protocol (docs/profiling.md#latency-table-hardware-aware)"):
    """The flags of a latency Protocol and of a table's calibration, defaults from Protocol()."""
    from ..cost.latency import CLOCKS, FITS, STATISTICS, Protocol
    default = Protocol()
    group = parser.add_argument_group(title)
    group.add_argument("--warmup", type=int, default=default.warmup,
                       help="untimed forward passes of each part or network before its first round")
    group.add_argument("--rounds", type=int, default=default.rounds,
                       help="interleaved rounds over all parts (and over all networks); each item's "
                            "time is the --statistic of its per-round medians")
    group.add_argument("--repeats", type=int, default=default.repeats,
                       help="timed samples of each part or network per round")
    group.add_argument("--calls", type=int, default=default.calls,
                       help="forward passes per timed sample (each waited for), averaged")
    group.add_argument("--round-warmup", type=int, default=default.round_warmup,
                       help="untimed passes of an item at the start of each round")
    group.add_argument("--statistic", default=default.statistic, choices=STATISTICS,
                       help="how an item's per-round medians combine (load only adds time)")
    group.add_argument("--threads", type=int, default=default.threads,
                       help="OpenMP threads of MXNet (OMP_NUM_THREADS, pinned before MXNet loads); "
                            "0 leaves the environment alone")
    group.add_argument("--clock", default=default.clock, choices=CLOCKS,
                       help="cpu: the process's CPU time per sample, which another process's turn on "
                            "the core does not add to (needs --threads 1); wall: elapsed time")
    group.add_argument("--calibration-archs", type=int, default=5,
                       help="random networks timed end to end to calibrate the table (0: raw sums of parts)")
    group.add_argument("--calibration-fit", default=FITS[0], choices=FITS,
                       help="affine: measured = offset + scale x sum of parts (least squares); "
                            "scale: the median ratio measured / sum")
    return group


def latency_protocol_from(args):
    """The Protocol of the latency flags (a bad value is one message naming the flags)."""
    from ..cost.latency import Protocol
    if args.calibration_archs < 0:
        raise UserError(f"--calibration-archs {args.calibration_archs}: give 0 or more networks")
    return Protocol(warmup=args.warmup, rounds=args.rounds, repeats=args.repeats, calls=args.calls,
                    round_warmup=args.round_warmup, statistic=args.statistic,
                    threads=args.threads if args.threads else None, clock=args.clock)
