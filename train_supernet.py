"""Train the weight-sharing supernet (OneShot+ style): one uniformly sampled path per step.

With no data flags: the `tiny` space on the embedded digits, a few minutes on a CPU. ImageNet:
--space oneshot+ --rec-train ... --gpus 0,1,2,3. Several machines: the same command under
`python -m oneshot_nas.launch -n N -s S --launcher ssh -H hosts ... --kv-store dist_sync`.
See docs/training.md.
"""
import logging

from oneshot_nas import cli
from oneshot_nas.cli.flags import (add_budget_flags, add_stage_flags, add_training_flags, budget_from, cost_model,
                                   dataset_from, device_blocks_from, devices_from, fixed_positions_from, gpus_from,
                                   settings_from)
from oneshot_nas.cost.limits import Limits
from oneshot_nas.data.slices import calibration_slice
from oneshot_nas.errors import UserError
from oneshot_nas.nn.supernet import SuperNet
from oneshot_nas.runs.modelfile import load_model, save_model
from oneshot_nas.runs.rundir import RunDir, open_run
from oneshot_nas.runs.workers import Workers, device_count
from oneshot_nas.sample.schedule import channel_schedule, describe_channel_schedule
from oneshot_nas.sample.training import SAMPLERS, PathSampler
from oneshot_nas.sample.learned import LearnedDistribution, Learning
from oneshot_nas.space import PRESETS, Architecture, get_space, load_architecture
from oneshot_nas.train.curves import plot_run
from oneshot_nas.train.loop import OUTPUTS, dump_worker_params, fit
from oneshot_nas.train.settings import cast_for_training, initialize, ordered_params
from oneshot_nas.train.pinas import PiNAS
from oneshot_nas.train.tasks import SupernetTask

log = logging.getLogger("train_supernet")


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
    sup = parser.add_argument_group("supernet")
    sup.add_argument("--space", default="tiny", help=f"search space: {', '.join(PRESETS)}")
    sup.add_argument("--epoch-start-cs", type=int, default=0,
                     help="first epoch of channel search (before it: widest channels only); -1: never")
    sup.add_argument("--cs-warm-up", action="store_true",
                     help="widen the allowed channel scales one at a time from 1.8-2.0 down")
    sup.add_argument("--constraint-sampler", choices=SAMPLERS, default="uniform",
                     help="with a budget: capped rejection (uniform) or even coverage (strolling)")
    sup.add_argument("--reference-arch", help="an architecture (JSON or string) also validated every epoch")
    sup.add_argument("--inherit-epochs", type=int, default=0,
                     help="train one path alone for this many epochs (--reference-arch, else every "
                          "position at block 0 and full width), then copy it into every candidate")
    sup.add_argument("--bn-only-from", type=int, metavar="EPOCH",
                     help="BN-NAS: from this epoch on train only the BatchNorm scales and shifts, every "
                          "other weight frozen (after --inherit-epochs; default: never)")
    pi = parser.add_argument_group("Pi-NAS (after --inherit-epochs; see oneshot_nas/train/pinas.py)")
    pi.add_argument("--cross-path", type=float, default=0.0, metavar="W",
                    help="train two paths per step, each with cross-entropy, plus W x the squared distance "
                         "between their class probabilities (default 0: one path per step)")
    pi.add_argument("--mean-teacher", type=float, default=0.0, metavar="M",
                    help="keep a teacher supernet, the moving average of the weights with momentum M (e.g. "
                         "0.99), and pull each path's output towards the teacher's on another path for the "
                         "batch's images of the same class, away from the other classes' (default 0: no teacher)")
    pi.add_argument("--teacher-weight", type=float, default=1.0, help="weight of the teacher's contrastive loss")
    pi.add_argument("--teacher-temperature", type=float, default=0.2,
                    help="temperature of the teacher's contrastive loss")
    ps = parser.add_argument_group("PARSEC / FP-NAS: paths from a learned distribution (oneshot_nas/sample/learned.py)")
    ps.add_argument("--learn-sampling", action="store_true",
                    help="after --inherit-epochs, draw the paths from a distribution learned from their "
                         "losses (REINFORCE), not uniformly; the search can draw from it (--strategy learned)")
    ps.add_argument("--dist-lr", type=float, default=Learning.lr,
                    help="learning rate of the distribution's logits (0: it stays uniform, K uniform paths a step)")
    ps.add_argument("--dist-samples", type=int, default=Learning.samples,
                    help="paths a step trains while the distribution is flat (at most 15)")
    ps.add_argument("--dist-min-samples", type=int, default=Learning.min_samples,
                    help="FP-NAS: fewer paths as the entropy falls, down to this many; equal to "
                         "--dist-samples: PARSEC's fixed count")
    ps.add_argument("--dist-joint-from", type=int, metavar="EPOCH",
                    help="FP-NAS's coarse to fine: from this epoch one distribution per position over "
                         "(block, channel) pairs instead of one per gene (default: stays per gene)")
    st = parser.add_argument_group("HURRICANE's two stages (scripts/hurricane.sh runs both)")
    add_stage_flags(st)
    st.add_argument("--init-from", metavar="SUPERNET.params",
                    help="start from the weights of this supernet (the second stage starts from the first's)")
    sup.add_argument("--val-paths", type=int, default=5, help="random paths validated every epoch")
    sup.add_argument("--calib-images", type=int, default=1000,
                     help="training images that re-estimate each validated path's BN statistics")
    add_budget_flags(parser, "budget of the sampled paths (e.g. --macs-range 190M:330M "
                             "--params-range 2.8M:5.3M; numbers take K, M, G)")
    add_training_flags(parser, epochs=10, batch_size=64, lr=0.1, save_dir=None)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    space = get_space(args.space).with_classes(args.num_classes)
    args.save_dir = args.save_dir or f"logs/supernet-{space.name}"
    settings = settings_from(args)
    budget = budget_from(args)
    plan = channel_schedule(space, args.num_epochs, args.epoch_start_cs, args.cs_warm_up)
    if not 0 <= args.inherit_epochs < args.num_epochs:
        raise UserError(f"--inherit-epochs {args.inherit_epochs} must be within 0..--num-epochs - 1")
    if args.bn_only_from is not None and not args.inherit_epochs < args.bn_only_from < args.num_epochs:
        raise UserError(f"--bn-only-from {args.bn_only_from} must come after the one-path epochs "
                        f"(--inherit-epochs {args.inherit_epochs}) and before --num-epochs {args.num_epochs}")
    pinas = pinas_from(args)
    learning = learning_from(args, pinas)
    if args.calib_images < 1:
        raise UserError("--calib-images must be at least 1: paths are validated after BN recalibration")
    args.gpus = gpus_from(args)
    workers = Workers(args.kv_store, device_count(args.gpus))

    def prepare():
        contexts = devices_from(args)
        dataset = dataset_from(args, space)
        limits = Limits(cost_model(args, space), budget) if budget else None
        sampler = PathSampler(space, limits, args.constraint_sampler,
                              LearnedDistribution(space) if learning else None, device_blocks_from(args, space),
                              fixed_positions_from(args, space))
        start = load_model(args.init_from, kind="supernet", space=space)[0] if args.init_from else None
        reference = load_architecture(args.reference_arch).on(space) if args.reference_arch else None
        calibration = calibration_slice(dataset, args.calib_images, space.input_size)
        RunDir.check(args.save_dir, args.resume, args.overwrite)
        return contexts, dataset, sampler, reference, calibration, start
    contexts, dataset, sampler, reference, calibration, start = workers.check_inputs(prepare)
    run = open_run(args.save_dir, vars(args), args.resume, args.overwrite, workers.is_chief, args.logging_file,
                   OUTPUTS)
    log.info("supernet of space %s on %s (%d train / %d val images, %d classes)", space.name, dataset.name,
             len(dataset.train), len(dataset.val), dataset.num_classes)
    log.info("channel schedule:\n  %s", "\n  ".join(describe_channel_schedule(space, plan)))
    log.info("%s", sampler.describe(plan))

    net = SuperNet(space)
    initialize(net, contexts, args.init, args.seed)
    if start is not None:
        for p, q in zip(ordered_params(net), ordered_params(start)):
            p.set_data(q.data())
        log.info("starting from the weights of %s", args.init_from)
    cast_for_training(net, args.dtype)
    net.hybridize(static_alloc=True)
    if args.inherit_epochs:   # the path trained first is also validated every epoch
        reference = reference or Architecture.largest(space)
        span = "epoch 0" if args.inherit_epochs == 1 else f"epochs 0-{args.inherit_epochs - 1}"
        log.info("%s train %s alone; then it is copied into every candidate", span, reference)
    task = SupernetTask(net, sampler, plan, calibration, args.val_paths, reference, args.seed,
                        args.inherit_epochs, reference, args.bn_only_from, pinas, learning)
    history = fit(task, dataset, settings, contexts, workers, run=run, save_dir=args.save_dir,
                  resume=args.resume, stop_after=args.stop_after_epoch,
                  progress=False if args.no_progress else None)
    dump_worker_params(net, args.dump_worker_params, workers.rank, task.checkpoint_files())
    if run is not None and history and history[-1]["epoch"] == args.num_epochs - 1:
        last = {k: v for k, v in history[-1].items() if k.startswith(("val_top", "ref_top"))}
        learned = {"distribution": sampler.learned.state_dict()} if learning else {}
        path = save_model(net, run.file("supernet.params"),
                          {"epochs": args.num_epochs, "dataset": dataset.name, **last, **learned})
        log.info("supernet saved to %s", path)
    plot_run(run, f"supernet {space.name} on {dataset.name}")
    return history


def learning_from(args, pinas):
    """How the path distribution is learned (None without --learn-sampling), checked."""
    given = [f for f in ("dist_joint_from",) if getattr(args, f) is not None]
    if not args.learn_sampling:
        if given or (args.dist_lr, args.dist_samples, args.dist_min_samples) != (
                Learning.lr, Learning.samples, Learning.min_samples):
            raise UserError("the --dist-* flags set how the path distribution is learned: add --learn-sampling")
        return None
    if pinas is not None:
        raise UserError("--learn-sampling trains several paths a step from its distribution; Pi-NAS's "
                        "--cross-path / --mean-teacher cannot be combined with it: choose one")
    joint = args.dist_joint_from
    if joint is not None and not args.inherit_epochs <= joint < args.num_epochs:
        raise UserError(f"--dist-joint-from {joint} must be an epoch after the one-path epochs "
                        f"(--inherit-epochs {args.inherit_epochs}) and before --num-epochs {args.num_epochs}")
    return Learning(args.dist_lr, args.dist_samples, args.dist_min_samples, joint)


def pinas_from(args):
    """The Pi-NAS options (None without --cross-path or --mean-teacher), checked."""
    if not 0 <= args.cross_path < float("inf"):
        raise UserError(f"--cross-path {args.cross_path}: give a weight >= 0 (0 turns it off)")
    if not 0 <= args.mean_teacher < 1:
        raise UserError(f"--mean-teacher {args.mean_teacher}: give the moving average's momentum in [0, 1), "
                        "e.g. 0.99 (0 turns it off)")
    if not 0 <= args.teacher_weight < float("inf") or not 0 < args.teacher_temperature < float("inf"):
        raise UserError("--teacher-weight must be >= 0 and --teacher-temperature > 0")
    if not (args.cross_path or args.mean_teacher):
        return None
    return PiNAS(args.cross_path, args.mean_teacher, args.teacher_weight, args.teacher_temperature)


if __name__ == "__main__":
    cli.run(main)
