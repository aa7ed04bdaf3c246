"""Single-Path NAS: search by training one superkernel network, for a latency or MACs target.

Each position's SNB-3/5/7 choices share one 7x7 depthwise kernel and the widest main branch; the
kernel size and width are decided by the weights against learned thresholds, trained with
cross-entropy + lambda * log(R), R the latency table's (or MACs table's) runtime model. Short
searches find the lambda whose network meets --target-latency-ms (or --target-macs). Writes
logs/<run>/ (args.json, train.log, search.jsonl: one line per lambda, lambda-<i>/ with each
search's records and curves.png, tradeoff.png) and the found architecture as models/<run>.json with
its predicted and measured latency and the search cost; retrain it with train_subnet.py.
--resume continues a stopped run exactly. See docs/singlepath.md.
"""
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # run from anywhere without install

from oneshot_nas import cli  # noqa: E402
from oneshot_nas.cli.flags import (add_training_flags, dataset_from, devices_from, gpus_from, number,  # noqa: E402
                                   settings_from)
from oneshot_nas.errors import UserError  # noqa: E402
from oneshot_nas.space import PRESETS, get_space, save_architecture  # noqa: E402

log = logging.getLogger("search_singlepath")


def build_parser():
    from oneshot_nas.search.singlepath import SinglePathOptions as O
    parser = cli.ArgumentParser(description=__doc__)
    g = parser.add_argument_group("Single-Path NAS")
    g.add_argument("--space", default="tiny4", help=f"search space: {', '.join(PRESETS)} (its SNB-k blocks)")
    g.add_argument("--target-latency-ms", type=number, metavar="MS",
                   help="find a network at or below this latency (needs --latency-table)")
    g.add_argument("--target-macs", type=number, metavar="N", help="find a network at or below this many MACs")
    g.add_argument("--latency-table", metavar="JSON",
                   help="latency table of the space on the target device (python profiling/latency_table.py)")
    g.add_argument("--lambda", type=number, dest="lam", metavar="L",
                   help="one search with this lambda instead of finding it for the target")
    g.add_argument("--start-lambda", type=number, default=O.start_lambda, help="the first lambda tried")
    g.add_argument("--lambda-factor", type=number, default=O.factor,
                   help="lambda is multiplied or divided by this until the target is bracketed")
    g.add_argument("--max-searches", type=int, default=O.max_runs, help="searches (lambdas) at most")
    g.add_argument("--tolerance", type=number, default=O.tolerance,
                   help="stop once a network within this fraction below the target is found")
    g.add_argument("--temperature", type=number, default=O.temperature,
                   help="temperature of the sigmoid that relaxes each decision in the backward pass")
    g.add_argument("--threshold-init", type=number, default=O.threshold_init,
                   help="thresholds start at this fraction of the initial weights' RMS (< 1: every shell "
                        "and channel group used)")
    g.add_argument("--threshold-lr-mult", type=number, default=O.threshold_lr_mult,
                   help="learning-rate multiplier of the thresholds")
    g.add_argument("--search-warmup", type=int, default=O.warmup_epochs, metavar="EPOCHS",
                   help="epochs of each search that train the weights alone at the largest network before "
                        "the thresholds are set from them and the search starts")
    g.add_argument("--runtime-loss", choices=("log", "hinge"), default=O.form,
                   help="log: the paper's lambda x log(R / target); hinge: lambda x max(0, log(R / target)), "
                        "no pull once the network is under the target")
    g.add_argument("--no-measure", action="store_true",
                   help="with a CPU latency table, do not time the found networks end to end (by the table's "
                        "protocol, whose thread setting the whole run then takes)")
    g.add_argument("--models-dir", default="models", help="where the found architecture is saved")
    add_training_flags(parser, epochs=8, batch_size=64, lr=0.1, save_dir=None)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from oneshot_nas.cost.latency import LatencyTable, pin_threads
    from oneshot_nas.cost.model import CostModel
    from oneshot_nas.runs.rundir import RunDir, open_run
    from oneshot_nas.runs.workers import Workers, device_count
    from oneshot_nas.search.plots import plot_tradeoff
    from oneshot_nas.search.singlepath import OUTPUTS, SinglePathOptions, search

    space = get_space(args.space).with_classes(args.num_classes)
    if (args.target_latency_ms is None) == (args.target_macs is None):
        raise UserError("give one target: --target-latency-ms MS (with --latency-table) or --target-macs N")
    if args.target_latency_ms is not None and not args.latency_table:
        raise UserError("--target-latency-ms needs the device's --latency-table JSON "
                        "(python profiling/latency_table.py --space SPACE measures one)")
    metric = "latency_ms" if args.target_latency_ms is not None else "macs"
    target = args.target_latency_ms if metric == "latency_ms" else args.target_macs
    options = SinglePathOptions(metric, target, args.lam, args.start_lambda, args.lambda_factor, args.max_searches,
                                args.tolerance, args.temperature, args.threshold_init, args.threshold_lr_mult,
                                args.search_warmup, args.runtime_loss)
    tag = f"{target:g}ms" if metric == "latency_ms" else f"{target / 1e6:g}M"
    args.save_dir = args.save_dir or f"logs/singlepath-{space.name}-{tag}"
    settings = settings_from(args)
    args.gpus = gpus_from(args)
    table = None
    measuring = metric == "latency_ms" and not args.no_measure and not args.gpus
    if measuring:         # before MXNet loads: the found networks are timed as the table's parts were
        table = LatencyTable.load(args.latency_table, space)
        measuring = table.device == "cpu"
        if measuring and table.protocol is not None:
            pin_threads(table.protocol.threads)
    workers = Workers(args.kv_store, device_count(args.gpus))

    def prepare():
        contexts = devices_from(args)
        latency = table or (LatencyTable.load(args.latency_table, space) if args.latency_table else None)
        costs = CostModel(space, latency=latency)
        from oneshot_nas.nn.superkernel import Layout
        from oneshot_nas.train.singlepath import RuntimeModel
        options.check(RuntimeModel(costs, metric, Layout(space)), args.num_epochs)
        dataset = dataset_from(args, space)
        RunDir.check(args.save_dir, args.resume, args.overwrite)
        return contexts, dataset, costs
    contexts, dataset, costs = workers.check_inputs(prepare)
    run = open_run(args.save_dir, vars(args), args.resume, args.overwrite, workers.is_chief, args.logging_file, OUTPUTS)
    if run is not None and args.overwrite and not args.resume:
        import shutil
        for old in Path(args.save_dir).glob("lambda-*"):
            shutil.rmtree(old)
    result = search(space, dataset, settings, contexts, workers, options, costs, args.save_dir, run,
                    args.resume, args.init, progress=False if args.no_progress else None,
                    stop_after=args.stop_after_epoch, dump_dir=args.dump_worker_params)
    if run is None or result["stopped"]:
        return result
    plot_tradeoff(result["history"], run.file("tradeoff.png"), target, metric)
    best = result["best"]
    if best is None:
        closest = min(result["history"], key=lambda r: r["cost"])
        log.warning("no search met the target: the cheapest found was %s at %.4g; raise --max-searches or "
                    "--start-lambda, or the target", closest["arch"], closest["cost"])
        return result
    from oneshot_nas.space import Architecture
    arch = Architecture.from_str(best["arch"], space)
    record = {"method": "singlepath", "target": {metric: target}, "lambda": best["lambda"],
              "predicted": costs.measure(arch), "val_top1_superkernel": best["val_top1"],
              "search_epochs": sum(r["epochs"] for r in result["history"]),
              "search_seconds": sum(r["seconds"] for r in result["history"]),
              "searches": len(result["history"]), "run": str(args.save_dir), "dataset": dataset.name}
    if measuring:
        record.update(measure_found(result["history"], arch, costs.latency))
    path = save_architecture(Path(args.models_dir) / f"{Path(args.save_dir).name}.json", arch, record)
    log.info("found %s (%s) after %d searches, %d epochs, %.0f s; saved %s", arch,
             ", ".join(f"{k} {v:.4g}" for k, v in record["predicted"].items() if k in ("macs", "latency_ms")),
             record["searches"], record["search_epochs"], record["search_seconds"], path)
    print(f"found {arch}\n  {path}")
    return result


def measure_found(history, winner, table):
    """The runtime model against the measured latency of every network the searches found, timed
    end to end together (interleaved rounds) by the table's protocol: the record's fields."""
    import numpy as np
    from oneshot_nas.cost.timing import measure_archs_ms
    from oneshot_nas.space import Architecture
    archs = list(dict.fromkeys([winner] + [Architecture.from_str(r["arch"], winner.space) for r in history]))
    measured = measure_archs_ms(archs, None, table.batch_size, table.protocol)
    errors = [100 * (table.predict_ms(a) - m) / m for a, m in zip(archs, measured)]
    log.info("runtime model vs measured, %d found networks: mean |error| %.2f%%, max %.2f%%; the winner "
             "%.4f ms measured, %.4f ms predicted (%+.2f%%)", len(archs), np.mean(np.abs(errors)),
             np.max(np.abs(errors)), measured[0], table.predict_ms(winner), errors[0])
    return {"measured_latency_ms": measured[0], "latency_error_pct": errors[0],
            "runtime_model_error": {"networks": len(archs), "mean_abs_pct": float(np.mean(np.abs(errors))),
                                    "max_abs_pct": float(np.max(np.abs(errors))),
                                    "measured_ms": {str(a): m for a, m in zip(archs, measured)}}}


if __name__ == "__main__":
    cli.run(main)
