"""Retrain one architecture (e.g. models/oneshot-s+.json) from scratch, or from a supernet's weights.

The fixed network is hybridized and trained with the same data, schedule, devices, records and
exact resume as the supernet. It is saved as NAME.params with its architecture JSON beside it (the
record holds the final validation top-1/top-5), so `python profiling/score.py NAME.params` and the
exporters read it directly. See docs/training.md.
"""
import logging
from pathlib import Path

from oneshot_nas import cli
from oneshot_nas.cli.flags import (RETRAIN_DEFAULTS, add_training_flags, dataset_from, devices_from, gpus_from,
                                   settings_from)
from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import load_model, save_model
from oneshot_nas.runs.rundir import RunDir, open_run
from oneshot_nas.runs.workers import Workers, device_count
from oneshot_nas.space import load_architecture
from oneshot_nas.train.curves import plot_run
from oneshot_nas.train.loop import OUTPUTS, dump_worker_params
from oneshot_nas.train.retrain import retrain
from oneshot_nas.train.truthtable import recipe_key, recipe_of

log = logging.getLogger("train_subnet")


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("arch", help="architecture: a JSON file (models/NAME.json, or one written by the "
                                     "search) or an architecture string")
    parser.add_argument("--inherit-from", metavar="SUPERNET.params",
                        help="start from this supernet's weights for the path instead of from scratch")
    parser.add_argument("--output", help="where the trained model goes (default: <save-dir>/NAME.params)")
    add_training_flags(parser, **RETRAIN_DEFAULTS, save_dir=None)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    arch = load_architecture(args.arch)
    arch = arch.on(arch.space.with_classes(args.num_classes))
    name = Path(args.arch).stem if Path(args.arch).suffix == ".json" else "subnet"
    args.save_dir = args.save_dir or f"logs/subnet-{name}"
    output = Path(args.output) if args.output else Path(args.save_dir) / f"{name}.params"
    if output.suffix != ".params":
        raise UserError(f"--output {output}: the model file must end in .params (its JSON goes beside it)")
    settings = settings_from(args)
    args.gpus = gpus_from(args)
    workers = Workers(args.kv_store, device_count(args.gpus))

    def prepare():
        contexts = devices_from(args)
        dataset = dataset_from(args, arch.space)
        supernet = load_model(args.inherit_from, kind="supernet", arch=arch)[0] if args.inherit_from else None
        RunDir.check(args.save_dir, args.resume, args.overwrite)
        return contexts, dataset, supernet
    contexts, dataset, supernet = workers.check_inputs(prepare)
    run = open_run(args.save_dir, vars(args), args.resume, args.overwrite, workers.is_chief, args.logging_file,
                   OUTPUTS)
    log.info("retraining %s on %s (%d train / %d val images)", arch, dataset.name, len(dataset.train),
             len(dataset.val))
    if supernet is not None and not args.resume:
        log.info("starting from the weights of %s", args.inherit_from)
    net, history, final = retrain(arch, dataset, settings, contexts, workers, init=args.init, start_from=supernet,
                                  run=run, save_dir=args.save_dir, resume=args.resume,
                                  stop_after=args.stop_after_epoch, progress=False if args.no_progress else None)
    dump_worker_params(net, args.dump_worker_params, workers.rank)
    if final is not None:
        record = {"top1": final["top1"], "top5": final["top5"], "dataset": dataset.name,
                  "epochs": args.num_epochs, "run": str(args.save_dir),
                  "start": f"inherited from {args.inherit_from}" if args.inherit_from else "scratch",
                  "seed": settings.seed,      # with the recipe's key, what a ground-truth table matches on
                  "recipe_key": None if args.inherit_from else recipe_key(recipe_of(settings, args.init, len(contexts),
                                                                                    dataset))}
        if run is not None:
            save_model(net, output, record)
            log.info("top-1 %.4f, top-5 %.4f on %s val; saved %s (+ %s)", record["top1"], record["top5"],
                     dataset.name, output, output.with_suffix(".json").name)
    plot_run(run, f"retraining {arch} on {dataset.name}")
    return history


if __name__ == "__main__":
    cli.run(main)
