"""Measure a latency table on this device, and check how well it predicts whole networks.

    python profiling/latency_table.py --space oneshot+ --batch-size 1            # measure and save
    python profiling/latency_table.py --space oneshot+ --report 20               # + prediction error
    python profiling/latency_table.py --space oneshot+ --gpus 0 --clock wall     # on GPU 0

Each (position, block, width) of the space, the stem and the head are timed alone (hybridized),
all of them in --rounds interleaved rounds of --repeats samples (the latency protocol of
oneshot_nas/cost/latency.Protocol, recorded in the table); positions with the same context share
one measurement, and --calibration-archs random networks timed the same way calibrate the table
(docs/profiling.md says why). MXNet's OpenMP threads are pinned (--threads) before it loads. The
table is saved as JSON (format oneshot-nas-latency-v1) to --out, by default
~/.cache/oneshot-nas/latency/<space_key>-<device>-bs<N>.json, where the search finds it with
--latency-table. --report N times N random architectures end to end with the same protocol and
prints the prediction error (mean and max absolute %), measuring the table first if needed.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere without install

from oneshot_nas.cli import ArgumentParser, run, setup_logging  # noqa: E402
from oneshot_nas.cli.flags import add_latency_flags, latency_protocol_from  # noqa: E402
from oneshot_nas.errors import UserError  # noqa: E402


def parse_args(argv):
    parser = ArgumentParser(prog="python profiling/latency_table.py", description=__doc__)
    parser.add_argument("--space", default="oneshot+",
                        help="a preset (oneshot, oneshot+, tiny) or a JSON file with a "
                             "'space_config' (an architecture or model .json)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per timed forward pass")
    parser.add_argument("--gpus", default="", help="GPU ids, e.g. 0 or 0,1 (one table per GPU); "
                                                   "default: the CPU")
    parser.add_argument("--out", help="where to save the table (default: the cache, see above)")
    parser.add_argument("--report", type=int, default=0, metavar="N",
                        help="also time N random architectures end to end and print the error")
    parser.add_argument("--remeasure", action="store_true",
                        help="with --report: measure the table again even if it is saved")
    parser.add_argument("--seed", type=int, default=0, help="seed of the report's architectures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    add_latency_flags(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.report < 0:
        raise UserError("--batch-size must be >= 1 and --report >= 0")
    args.protocol = latency_protocol_from(args)
    return args


def load_space(value):
    from oneshot_nas.space import SearchSpace, get_space
    if not value.endswith(".json"):
        return get_space(value)
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--space {value}: no such file (give a preset name or a JSON file with a "
                        "'space_config')")
    try:
        data = json.loads(path.read_text())
        return SearchSpace.from_dict(data["space_config"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise UserError(f"--space {value}: not a JSON file with a 'space_config' "
                        f"({type(err).__name__}: {err})") from None


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    from oneshot_nas.cost.latency import pin_threads
    pin_threads(args.protocol.threads)           # before MXNet loads
    import numpy as np
    from oneshot_nas.cost.latency import LatencyTable, default_path
    from oneshot_nas.cost.timing import device_name, error_summary, measure_table, prediction_report
    from oneshot_nas.sample.samplers import UniformSampler
    from oneshot_nas.space import Architecture
    space = load_space(args.space)
    from oneshot_nas.runs.workers import contexts_from
    ctxs = contexts_from(args.gpus)
    if args.out and len(ctxs) > 1:
        raise UserError("--out names one file; with several --gpus, leave it out (one table each)")
    results = []
    for ctx in ctxs:
        path = Path(args.out or default_path(space, device_name(ctx), args.batch_size))
        if args.report and path.is_file() and not args.remeasure:
            table = LatencyTable.load(path, space)
            if table.device != device_name(ctx) or table.batch_size != args.batch_size:
                raise UserError(f"{path} was measured on {table.device} at batch {table.batch_size}, "
                                f"not {device_name(ctx)} at batch {args.batch_size}; pass "
                                "--remeasure or another --out")
            print(f"using the latency table {path}")
        else:
            table = measure_table(space, ctx, args.batch_size, args.protocol,
                                  progress=not args.no_progress, calibration_archs=args.calibration_archs,
                                  calibration_fit=args.calibration_fit)
            table.save(path)
            print(f"saved the latency table of {space.name} on {table.device}, batch "
                  f"{table.batch_size}, to {path}")
        widest = Architecture.largest(space)
        none = (0,) * space.num_positions     # (the narrowest width, and no SE where SE is searched)
        narrowest = widest.replace(channels=none, **({"se": none} if space.se_search else {}))
        print(f"  stem {table.stem_ms:.3f} ms, head {table.head_ms:.3f} ms, blocks "
              f"{table.blocks_ms.min():.3f}..{table.blocks_ms.max():.3f} ms; predicted: widest "
              f"net {table.predict_ms(widest):.2f} ms, narrowest {table.predict_ms(narrowest):.2f} ms")
        result = {"device": table.device, "path": str(path)}
        if args.report:
            rng = np.random.default_rng(args.seed)
            sampler = UniformSampler(space)
            archs = [sampler(rng) for _ in range(args.report)]
            rows = prediction_report(table, archs, ctx, args.protocol, progress=not args.no_progress)
            print(f"{'architecture':64s} {'predicted':>10s} {'measured':>10s} {'error':>8s}")
            for r in rows:
                print(f"{r['arch']:64s} {r['predicted_ms']:8.3f}ms {r['measured_ms']:8.3f}ms "
                      f"{r['error_pct']:+7.2f}%")
            mean, worst = error_summary(rows)
            print(f"prediction error over {len(rows)} architectures on {table.device}, batch "
                  f"{table.batch_size}: mean {mean:.2f}%, max {worst:.2f}% (absolute)")
            result.update(rows=rows, mean_abs_pct=mean, max_abs_pct=worst)
        results.append(result)
    return results


if __name__ == "__main__":
    run(main)
