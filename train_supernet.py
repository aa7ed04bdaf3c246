"""Train the weight-sharing supernet (OneShot+ style): one uniformly sampled path per step.

With no data flags: the `tiny` space on the embedded digits, a few minutes on a CPU. ImageNet:
--space oneshot+ --rec-train ... --gpus 0,1,2,3. Several machines: the same command under
`python -m oneshot_nas.launch -n N -s S --launcher ssh -H hosts ... --kv-store dist_sync`.
See docs/training.md.
"""
import argparse
import logging
from pathlib import Path

from oneshot_nas import cli
from oneshot_nas.cost.counting import LookupTable
from oneshot_nas.data.sources import resolve_dataset
from oneshot_nas.runs.workers import KV_TYPES, Sync, cast_for_training, contexts_from, device_count
from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import save_model
from oneshot_nas.sample.training import SAMPLERS, PathSampler
from oneshot_nas.sample.sampling import Budget, parse_range
from oneshot_nas.sample.schedule import LR_MODES, channel_schedule, describe_channel_schedule
from oneshot_nas.runs.session import check_run_dir, finish_run, open_run, rebase, resolve_space
from oneshot_nas.space import PRESETS, Architecture, load_architecture
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.train.loop import INITIALIZERS, OPTIMIZERS, Settings, SupernetTask, fit, initialize
from oneshot_nas.train.validation import calibration_batches

log = logging.getLogger("train_supernet")


# ----- flags shared with train_subnet.py ----------------------------------------------------------
def add_training_flags(parser, epochs, batch_size, lr, save_dir):
    """Data, schedule, devices and run-record flags (names follow gluoncv's ImageNet script)."""
    data = parser.add_argument_group("data (default: the embedded digits)")
    data.add_argument("--rec-train", help="training RecordIO (.rec)")
    data.add_argument("--rec-train-idx", help="its index (.idx)")
    data.add_argument("--rec-val", help="validation RecordIO (.rec)")
    data.add_argument("--rec-val-idx", help="its index (.idx)")
    data.add_argument("--data-dir", help="an image folder with train/ and val/ class folders")
    data.add_argument("--num-classes", type=int, help="classifier size (default: the space's)")
    data.add_argument("-j", "--num-data-workers", type=int, default=2, dest="num_workers",
                      help="decode threads (the data order is deterministic for a fixed value)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--num-epochs", type=int, default=epochs)
    opt.add_argument("--batch-size", type=int, default=batch_size, help="images per device per step")
    opt.add_argument("--lr", type=float, default=lr)
    opt.add_argument("--lr-mode", choices=LR_MODES, default="cosine")
    opt.add_argument("--lr-decay", type=float, default=0.1, help="factor of --lr-mode step")
    opt.add_argument("--lr-decay-epoch", default="", help="epochs of --lr-mode step, e.g. 40,60")
    opt.add_argument("--warmup-epochs", type=float, default=0.0, help="linear learning-rate warm-up")
    opt.add_argument("--warmup-lr", type=float, default=0.0, help="learning rate the warm-up starts at")
    opt.add_argument("--target-lr", type=float, default=0.0, help="learning rate at the end (cosine/linear)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="nag", help="SGD with Nesterov or plain momentum")
    opt.add_argument("--momentum", type=float, default=0.9)
    opt.add_argument("--wd", type=float, default=4e-5, help="weight decay")
    opt.add_argument("--no-wd", action="store_true", help="no weight decay on BatchNorm and biases")
    opt.add_argument("--label-smoothing", type=float, default=0.0, help="e.g. 0.1")
    opt.add_argument("--init", choices=sorted(INITIALIZERS), default="msra", help="weight initialisation")
    opt.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                     help="float16: GPU only, with float32 master weights")
    opt.add_argument("--seed", type=int, default=0, help="every random choice of the run follows it")
    dev = parser.add_argument_group("devices")
    dev.add_argument("--gpus", default="", help="e.g. 0,1,2,3 (default: the CPU)")
    dev.add_argument("--kv-store", choices=KV_TYPES, default="device",
                     help="dist_sync/dist_device_sync under python -m oneshot_nas.launch")
    rec = parser.add_argument_group("run record")
    rec.add_argument("--save-dir", default=save_dir, help="the run folder (args, logs, checkpoints, model)")
    rec.add_argument("--logging-file", default="train.log", help="log file name inside --save-dir (or a path)")
    rec.add_argument("--resume", action="store_true", help="continue the run in --save-dir exactly")
    rec.add_argument("--overwrite", action="store_true", help="start again in a --save-dir that holds a run")
    rec.add_argument("--stop-after-epoch", type=int, default=None,
                     help="end this session after that epoch (continue later with --resume)")
    rec.add_argument("--val-images", type=int, default=0, help="validate on this many images (0: all)")
    rec.add_argument("--dump-worker-params", metavar="DIR",
                     help="every worker also writes its final parameters to DIR/worker-RANK.params")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def settings_from(args):
    try:
        decay_epochs = tuple(float(e) for e in args.lr_decay_epoch.split(",") if e.strip())
    except ValueError:
        raise UserError(f"--lr-decay-epoch {args.lr_decay_epoch!r}: give epochs separated by commas, "
                        "e.g. 40,60") from None
    if args.lr_mode == "step" and not decay_epochs:
        raise UserError("--lr-mode step needs --lr-decay-epoch, e.g. --lr-decay-epoch 40,60")
    return Settings(num_epochs=args.num_epochs, batch_size=args.batch_size, lr=args.lr, lr_mode=args.lr_mode,
                    warmup_epochs=args.warmup_epochs, warmup_lr=args.warmup_lr, target_lr=args.target_lr,
                    lr_decay=args.lr_decay, lr_decay_epochs=decay_epochs, optimizer=args.optimizer,
                    momentum=args.momentum, wd=args.wd, no_wd=args.no_wd,
                    label_smoothing=args.label_smoothing, dtype=args.dtype, seed=args.seed,
                    threads=args.num_workers, val_images=args.val_images)


def devices_from(args):
    contexts = contexts_from(args.gpus)
    if args.dtype == "float16" and not args.gpus:
        raise UserError("--dtype float16 is for GPUs (pass --gpus); the CPU trains in float32")
    return contexts


def dataset_from(args, space):
    return resolve_dataset(rec_train=args.rec_train, rec_train_idx=args.rec_train_idx, rec_val=args.rec_val,
                           rec_val_idx=args.rec_val_idx, data_dir=args.data_dir, num_classes=space.num_classes)


def dump_worker_params(net, folder, sync):
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        net.save_parameters(str(Path(folder) / f"worker-{sync.rank}.params"))


def on_every_worker(sync, prepare):
    """Run the input checks `prepare()` on every worker, the chief first (so that it alone packs
    the embedded data into the shared cache); if any worker finds bad input, every worker stops."""
    error = result = None
    if not sync.is_chief:
        sync.barrier()
    try:
        result = prepare()
    except UserError as err:
        error = err
    finally:
        if sync.is_chief:
            sync.barrier()
    if not sync.all_ok(error is None):
        raise error or UserError("another worker stopped on bad input (see its message)")
    return result


# ----- supernet ------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sup = parser.add_argument_group("supernet")
    sup.add_argument("--space", default="tiny", help=f"search space: {', '.join(PRESETS)}")
    sup.add_argument("--epoch-start-cs", type=int, default=0,
                     help="first epoch of channel search (before it: widest channels only); -1: never")
    sup.add_argument("--cs-warm-up", action="store_true",
                     help="widen the allowed channel scales one at a time from 1.8-2.0 down")
    sup.add_argument("--flops-range", help="paper MACs budget LO:HI for sampled paths, e.g. 190M:330M")
    sup.add_argument("--params-range", help="parameter budget LO:HI, e.g. 2.8M:5.3M")
    sup.add_argument("--constraint-sampler", choices=SAMPLERS, default="uniform",
                     help="with a budget: capped rejection (uniform) or even coverage (strolling)")
    sup.add_argument("--reference-arch", help="an architecture JSON also validated every epoch")
    sup.add_argument("--inherit-epochs", type=int, default=0,
                     help="train one path alone for this many epochs (--reference-arch, else every "
                          "position at block 0 and full width), then copy it into every candidate")
    sup.add_argument("--val-paths", type=int, default=5, help="random paths validated every epoch")
    sup.add_argument("--calib-images", type=int, default=1000,
                     help="training images that re-estimate each validated path's BN statistics")
    add_training_flags(parser, epochs=10, batch_size=64, lr=0.1, save_dir=None)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    space = resolve_space(args.space, args.num_classes)
    args.save_dir = args.save_dir or f"logs/supernet-{space.name}"
    settings = settings_from(args)
    budget = Budget.of(macs=parse_range(args.flops_range, "--flops-range"),
                       paper_params=parse_range(args.params_range, "--params-range"))
    plan = channel_schedule(space, args.num_epochs, args.epoch_start_cs, args.cs_warm_up)
    if not 0 <= args.inherit_epochs < args.num_epochs:
        raise UserError(f"--inherit-epochs {args.inherit_epochs} must be within 0..--num-epochs - 1")
    sync = Sync(args.kv_store, device_count(args.gpus))

    def prepare():
        contexts = devices_from(args)
        dataset = dataset_from(args, space)
        sampler = PathSampler(space, LookupTable.load(space) if budget else None, budget, args.constraint_sampler)
        reference = rebase(load_architecture(args.reference_arch), space) if args.reference_arch else None
        check_run_dir(args.save_dir, args.resume, args.overwrite)
        return contexts, dataset, sampler, reference
    contexts, dataset, sampler, reference = on_every_worker(sync, prepare)
    run = open_run(args.save_dir, vars(args), args.resume, args.overwrite, sync.is_chief, args.logging_file)
    log.info("supernet of space %s on %s (%d train / %d val images, %d classes)", space.name, dataset.name,
             len(dataset.train), len(dataset.val), dataset.num_classes)
    log.info("channel schedule:\n  %s", "\n  ".join(describe_channel_schedule(space, plan)))
    log.info("%s", sampler.describe(plan))

    net = SuperNet(space)
    initialize(net, contexts, args.init, args.seed)
    cast_for_training(net, args.dtype)
    net.hybridize(static_alloc=True)
    calibration = calibration_batches(dataset, args.calib_images, space.input_size, args.batch_size,
                                      dtype=args.dtype)
    if args.inherit_epochs:   # the path trained first is also validated every epoch
        reference = reference or Architecture.largest(space)
        span = "epoch 0" if args.inherit_epochs == 1 else f"epochs 0-{args.inherit_epochs - 1}"
        log.info("%s train %s alone; then it is copied into every candidate", span, reference)
    task = SupernetTask(net, sampler, plan, calibration, args.val_paths, reference, args.seed,
                        args.inherit_epochs, reference)
    history = fit(task, dataset, settings, contexts, sync, run=run, save_dir=args.save_dir, resume=args.resume,
                  stop_after=args.stop_after_epoch, progress=False if args.no_progress else None)
    dump_worker_params(net, args.dump_worker_params, sync)
    if run is not None and history and history[-1]["epoch"] == args.num_epochs - 1:
        last = {k: v for k, v in history[-1].items() if k.startswith(("val_top", "ref_top"))}
        path = save_model(net, run.file("supernet.params"),
                          {"epochs": args.num_epochs, "dataset": dataset.name, **last})
        log.info("supernet saved to %s", path)
    finish_run(run, f"supernet {space.name} on {dataset.name}")
    return history


if __name__ == "__main__":
    cli.run(main)
