"""Retrain one architecture (e.g. models/oneshot-s+.json) from scratch, or from a supernet's weights.

The fixed network is hybridized and trained with the same data, schedule, devices, records and
exact resume as the supernet. It is saved as NAME.params with its architecture JSON beside it (the
record holds the final validation top-1/top-5), so `python profiling/score.py NAME.params` and the
exporters read it directly. See docs/training.md.
"""
import argparse
import logging
from pathlib import Path

import mxnet as mx

from oneshot_nas import cli
from oneshot_nas.data.sources import val_iter
from oneshot_nas.runs.workers import Sync, cast_for_training, device_count
from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import load_model, read_meta, save_model
from oneshot_nas.runs.session import check_run_dir, finish_run, open_run, rebase, resolve_space
from oneshot_nas.space import SearchSpace, get_space, load_architecture
from oneshot_nas.nn.subnet import SubNet, extract_subnet
from oneshot_nas.train.loop import SubnetTask, fit, initialize
from oneshot_nas.train.validation import evaluate
from train_supernet import (add_training_flags, dataset_from, devices_from, dump_worker_params, on_every_worker,
                            settings_from)

log = logging.getLogger("train_subnet")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", help="architecture JSON (models/NAME.json, or one written by the search)")
    parser.add_argument("--inherit-from", metavar="SUPERNET.params",
                        help="start from this supernet's weights for the path instead of from scratch")
    parser.add_argument("--output", help="where the trained model goes (default: <save-dir>/NAME.params)")
    add_training_flags(parser, epochs=8, batch_size=64, lr=0.1, save_dir=None)
    return parser


def check_supernet_file(path, arch):
    """--inherit-from must name a saved supernet of the architecture's space (before training)."""
    meta = read_meta(path)
    if meta.get("kind") != "supernet":
        raise UserError(f"--inherit-from {path} holds a {meta.get('kind')}, not a supernet "
                        "(pass the supernet.params a supernet training run saved)")
    config = meta.get("space_config")
    rebase(arch, SearchSpace.from_dict(config) if config else get_space(meta["space"]), "the architecture")


def inherit(net, supernet_path, arch):
    """Copy the path's weights (and BN statistics) out of a saved supernet into `net`."""
    supernet, _ = load_model(supernet_path, ctx=[mx.cpu()])
    source = extract_subnet(supernet, rebase(arch, supernet.space, "the architecture"), mx.cpu())
    theirs = source._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        if theirs[name].shape != param.shape:    # only the classifier can differ (--num-classes)
            log.info("%s not inherited: shape %s in the supernet, %s here", name, theirs[name].shape,
                     param.shape)
            continue
        param.set_data(theirs[name].data(mx.cpu()))


def main(argv=None):
    args = build_parser().parse_args(argv)
    arch = load_architecture(args.arch)
    space = resolve_space(arch.space, args.num_classes)
    arch = rebase(arch, space, "the architecture")
    name = Path(args.arch).stem
    args.save_dir = args.save_dir or f"logs/subnet-{name}"
    output = Path(args.output) if args.output else Path(args.save_dir) / f"{name}.params"
    if output.suffix != ".params":
        raise UserError(f"--output {output}: the model file must end in .params (its JSON goes beside it)")
    settings = settings_from(args)
    sync = Sync(args.kv_store, device_count(args.gpus))

    def prepare():
        contexts = devices_from(args)
        dataset = dataset_from(args, space)
        if args.inherit_from:
            check_supernet_file(args.inherit_from, arch)
        check_run_dir(args.save_dir, args.resume, args.overwrite)
        return contexts, dataset
    contexts, dataset = on_every_worker(sync, prepare)
    run = open_run(args.save_dir, vars(args), args.resume, args.overwrite, sync.is_chief, args.logging_file)
    log.info("retraining %s on %s (%d train / %d val images)", arch, dataset.name, len(dataset.train),
             len(dataset.val))
    net = SubNet(arch)
    initialize(net, contexts, args.init, args.seed)
    if args.inherit_from and not args.resume:
        inherit(net, args.inherit_from, arch)
        log.info("weights inherited from %s", args.inherit_from)
    cast_for_training(net, args.dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    history = fit(SubnetTask(net), dataset, settings, contexts, sync, run=run, save_dir=args.save_dir,
                  resume=args.resume, stop_after=args.stop_after_epoch,
                  progress=False if args.no_progress else None)
    dump_worker_params(net, args.dump_worker_params, sync)
    finished = bool(history) and history[-1]["epoch"] == args.num_epochs - 1
    if finished:
        final = history[-1]
        if args.val_images:    # the epochs validated on a subset: the record gets the whole set
            per_worker = args.batch_size * len(contexts)
            final = evaluate(net, lambda: val_iter(dataset, per_worker, space.input_size, args.num_workers,
                                                   num_parts=sync.num_workers, part_index=sync.rank,
                                                   dtype=args.dtype), contexts, sync)
            final = {"val_top1": final["top1"], "val_top5": final["top5"]}
        record = {"top1": final["val_top1"], "top5": final["val_top5"], "dataset": dataset.name,
                  "epochs": args.num_epochs, "run": str(args.save_dir),
                  "start": f"inherited from {args.inherit_from}" if args.inherit_from else "scratch"}
        if run is not None:
            save_model(net, output, record)
            log.info("top-1 %.4f, top-5 %.4f on %s val; saved %s (+ %s)", record["top1"], record["top5"],
                     dataset.name, output, output.with_suffix(".json").name)
    finish_run(run, f"retraining {arch} on {dataset.name}")
    return history


if __name__ == "__main__":
    cli.run(main)
