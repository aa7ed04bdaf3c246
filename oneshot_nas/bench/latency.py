"""Latency-table prediction error on this machine, against a MACs-proportional predictor.

Measures the latency table of a space (each part alone, hybridized, median of repeats), then times
N random architectures end to end with the same protocol and prints, per architecture and in
total, the table's prediction error (mean and max absolute %, Spearman rank correlation). Baseline
in the same process: latency = k * MACs with k fitted on these very architectures (least squares,
which flatters the baseline). And FOX-NAS's latency predictor: the linear regression of
search/predictor.for_space (block and width indicators, MACs, stage widths) fitted on the measured
networks, each predicted by the fit on the others (leave one out). `--runs N` repeats everything
(table and networks, seeds SEED..SEED+N-1) and prints each predictor's error over the runs with
its spread: on a shared CPU one run is not a measurement. Single-Path NAS reports 1.76% mean error
for its runtime model on a phone.
"""
import argparse

import mxnet as mx
import numpy as np
from scipy.stats import spearmanr

from ..cost.counting import LookupTable
from ..cost.timing import calibrate_table, error_summary, measure_table, prediction_report
from ..sample.samplers import UniformSampler
from ..space import get_space


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="oneshot+")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-archs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1,
                        help="measure everything (table and networks) this many times, seeds SEED, SEED+1, ..., "
                             "and print each predictor's mean error over the runs with its spread")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.archs < 3:
        parser.error("--runs must be at least 1 and --archs at least 3")
    results = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"--- run {run + 1} of {args.runs} (seed {args.seed + run})", flush=True)
        results.append(run_once(args, args.seed + run))
    if args.runs > 1:
        print(f"over {args.runs} runs, mean |error| of each predictor: mean [min, max], sd")
        for name in results[0]:
            values = np.array([r[name] for r in results])
            print(f"  {name:24s} {values.mean():6.2f}% [{values.min():.2f}, {values.max():.2f}], "
                  f"sd {values.std(ddof=1):.2f}")


def run_once(args, seed):
    """One measurement: the table, `args.archs` networks of `seed`, the report; returns each
    predictor's mean absolute error (%)."""
    space, ctx = get_space(args.space), mx.cpu()
    table = measure_table(space, ctx, args.batch_size, args.repeats, progress=True,
                          warmup=args.warmup, calibration_archs=0)
    rng = np.random.default_rng(seed)
    sampler = UniformSampler(space)
    archs = [sampler(rng) for _ in range(args.archs)]
    rows = prediction_report(table, archs, ctx, args.repeats, args.warmup, progress=True)
    raw_mean, raw_worst = error_summary(rows)
    calibrate_table(table, ctx, args.calibration_archs, args.repeats, args.warmup)   # other networks
    for row, arch in zip(rows, archs):
        row["predicted_ms"] = table.predict_ms(arch)
        row["error_pct"] = 100.0 * (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]

    lookup = LookupTable.load(space)
    macs = np.array([lookup.count(a).macs for a in archs], dtype=float)
    measured = np.array([r["measured_ms"] for r in rows])
    predicted = np.array([r["predicted_ms"] for r in rows])
    k = float(macs @ measured / (macs @ macs))
    proxy_err = np.abs(100 * (k * macs - measured) / measured)
    fox = _leave_one_out(space, archs, measured)
    fox_err = np.abs(100 * (fox - measured) / measured)

    print(f"space {space.name}, batch {args.batch_size}, cpu, {mx.__version__}; call overhead "
          f"{table.extra['call_overhead_ms']:.3f} ms, {table.extra['signatures']} signatures")
    print(f"calibrated on {args.calibration_archs} other random networks: every entry x"
          f"{table.extra['calibration']['scale']:.4f}")
    print(f"{'MMACs':>7s} {'measured':>9s} {'table':>9s} {'error':>8s} {'MACs proxy':>11s} {'error':>8s}")
    for m, r, e in zip(macs, rows, proxy_err):
        print(f"{m / 1e6:7.1f} {r['measured_ms']:7.2f}ms {r['predicted_ms']:7.2f}ms "
              f"{r['error_pct']:+7.2f}% {k * m:9.2f}ms {e:7.2f}%")
    mean, worst = error_summary(rows)
    print(f"sum of parts : mean |error| {raw_mean:.2f}%, max {raw_worst:.2f}% (before calibration)")
    print(f"latency table: mean |error| {mean:.2f}%, max {worst:.2f}%, mean signed "
          f"{np.mean([r['error_pct'] for r in rows]):+.2f}%, Spearman "
          f"{spearmanr(predicted, measured)[0]:.3f}")
    print(f"MACs proxy   : mean |error| {proxy_err.mean():.2f}%, max {proxy_err.max():.2f}%, Spearman "
          f"{spearmanr(macs, measured)[0]:.3f}  (k fitted on these archs)")
    print(f"FOX-NAS linear predictor: mean |error| {fox_err.mean():.2f}%, max {fox_err.max():.2f}%, Spearman "
          f"{spearmanr(fox, measured)[0]:.3f}  (each network predicted by the fit on the other {len(archs) - 1})")
    print("reference: Single-Path NAS reports 1.76% mean error on a phone")
    return {"sum of parts": raw_mean, "latency table": mean, "k x MACs": float(proxy_err.mean()),
            "FOX-NAS linear predictor": float(fox_err.mean())}


def _leave_one_out(space, archs, measured):
    from ..cost.model import CostModel
    from ..search.predictor import for_space
    genes, costs, out = [a.genes for a in archs], CostModel(space), []
    for i in range(len(archs)):
        rest = [j for j in range(len(archs)) if j != i]
        model = for_space(space, space.gene_choices(), costs).fit([genes[j] for j in rest], measured[rest])
        out.append(float(model.predict([genes[i]])[0]))
    return np.array(out)


if __name__ == "__main__":
    main()
