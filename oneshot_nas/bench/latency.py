"""Latency-table prediction error on this machine, against a MACs-proportional predictor.

Measures the latency table of a space by the latency protocol (cost/latency.Protocol: each part
alone, hybridized, in interleaved rounds, by the CPU clock; the flags below), then times N random
architectures end to end together with the table's calibration networks, by the same protocol,
and prints, per architecture and in total, the table's prediction error (mean and max absolute %,
Spearman rank correlation), and the same table under the other calibration fit. Baseline in the
same process: latency = k * MACs with k fitted on these very architectures (least squares, which
flatters the baseline). And FOX-NAS's latency predictor: the linear regression of
search/predictor.for_space (block and width indicators, MACs, stage widths) fitted on the measured
networks, each predicted by the fit on the others (leave one out). `--runs N` repeats everything
(table and networks, seeds SEED..SEED+N-1) in this process and prints each predictor's error over
the runs with its spread, the seconds of each run and the load average: on a shared CPU one run is
not a measurement. MXNet's threads are pinned (--threads) before it loads. Single-Path NAS reports
1.76% mean error for its runtime model on a phone.
"""
import os
import time

import numpy as np
from scipy.stats import spearmanr

from .. import cli
from ..cli.flags import add_latency_flags, latency_protocol_from
from ..cost.counting import LookupTable
from ..cost.latency import FITS, pin_threads
from ..sample.samplers import UniformSampler
from ..space import get_space


def main(argv=None):
    parser = cli.ArgumentParser(prog="python -m oneshot_nas.bench latency", description=__doc__)
    parser.add_argument("--space", default="oneshot+", help="a preset search space")
    parser.add_argument("--archs", type=int, default=20, help="random networks timed end to end per run")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run's networks")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure everything (table and networks) this many times, seeds SEED, SEED+1, ..., "
                             "and print each predictor's mean error over the runs with its spread")
    add_latency_flags(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.archs < 3:
        parser.error("--runs must be at least 1 and --archs at least 3")
    protocol = latency_protocol_from(args)
    threads = pin_threads(protocol.threads)      # before MXNet loads: table and networks see the same
    print(f"protocol {protocol.to_dict()}, calibration {args.calibration_fit} on "
          f"{args.calibration_archs} networks; threads {threads}", flush=True)
    results = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"--- run {run + 1} of {args.runs} (seed {args.seed + run})", flush=True)
        results.append(run_once(args, protocol, args.seed + run))
    if args.runs > 1:
        print(f"over {args.runs} runs, each predictor's mean |error| (max |error|, Spearman): "
              "mean [min, max], sd")
        for name in results[0]["mean"]:
            values = np.array([r["mean"][name] for r in results])
            worst = np.array([r["max"][name] for r in results])
            rho = np.array([r["spearman"][name] for r in results])
            print(f"  {name:24s} {values.mean():6.2f}% [{values.min():.2f}, {values.max():.2f}], "
                  f"sd {values.std(ddof=1):.2f}; max {worst.mean():.2f}% [{worst.min():.2f}, "
                  f"{worst.max():.2f}]; Spearman {rho.mean():.3f}")
        print("  seconds per run " + ", ".join(f"{r['seconds']:.0f}" for r in results) +
              "; load average (1 min) at the ends of the runs " +
              ", ".join(f"{r['load'][0]:.2f}-{r['load'][1]:.2f}" for r in results))


def run_once(args, protocol, seed):
    """One measurement: the table, `args.archs` networks of `seed` and the calibration networks,
    the report; returns each predictor's mean and max absolute error (%) and Spearman rho."""
    import mxnet as mx
    from ..cost.timing import (apply_calibration, calibration_archs, error_summary, fit_calibration,
                               measure_archs_ms, measure_table, report_rows)
    start, load = time.perf_counter(), os.getloadavg()[0]
    space, ctx = get_space(args.space), mx.cpu()
    table = measure_table(space, ctx, args.batch_size, protocol, progress=True, calibration_archs=0)
    rng = np.random.default_rng(seed)
    sampler = UniformSampler(space)
    archs = [sampler(rng) for _ in range(args.archs)]
    others = calibration_archs(space, args.calibration_archs)
    # the judged networks and the calibration networks, timed together in the same rounds
    measured_all = measure_archs_ms(archs + others, ctx, args.batch_size, protocol, progress=True)
    measured = np.array(measured_all[:len(archs)])
    rows = report_rows(table, archs, measured)
    raw_mean, raw_worst = error_summary(rows)
    raw = np.array([r["predicted_ms"] for r in rows])
    alternative = {}         # the other calibration fit, on the same measurements, for comparison
    if others:
        other_fit = next(f for f in FITS if f != args.calibration_fit)
        summed_others = [table.predict_ms(a) for a in others]
        scale, offset = fit_calibration(summed_others, measured_all[len(archs):], other_fit)
        alt_err = np.abs(100 * (offset + scale * raw - measured) / measured)
        alternative = {f"table, {other_fit} fit": (float(alt_err.mean()), float(alt_err.max()),
                                                   float(spearmanr(offset + scale * raw, measured)[0]))}
        apply_calibration(table, others, measured_all[len(archs):], args.calibration_fit)
    rows = report_rows(table, archs, measured)

    lookup = LookupTable.load(space)
    macs = np.array([lookup.count(a).macs for a in archs], dtype=float)
    predicted = np.array([r["predicted_ms"] for r in rows])
    k = float(macs @ measured / (macs @ macs))
    proxy_err = np.abs(100 * (k * macs - measured) / measured)
    fox = _leave_one_out(space, archs, measured)
    fox_err = np.abs(100 * (fox - measured) / measured)
    seconds, load = time.perf_counter() - start, (load, os.getloadavg()[0])

    print(f"space {space.name}, batch {args.batch_size}, cpu, {mx.__version__}; call overhead "
          f"{table.extra['call_overhead_ms']:.3f} ms, {table.extra['signatures']} signatures")
    if others:
        cal = table.extra["calibration"]
        print(f"calibrated on {len(others)} other random networks ({cal['fit']}): every entry "
              f"x{cal['scale']:.4f}, {cal['offset_ms']:+.3f} ms")
    print(f"{'MMACs':>7s} {'measured':>9s} {'table':>9s} {'error':>8s} {'MACs proxy':>11s} {'error':>8s}")
    for m, r, e in zip(macs, rows, proxy_err):
        print(f"{m / 1e6:7.1f} {r['measured_ms']:7.2f}ms {r['predicted_ms']:7.2f}ms "
              f"{r['error_pct']:+7.2f}% {k * m:9.2f}ms {e:7.2f}%")
    mean, worst = error_summary(rows)
    rho = {"sum of parts": spearmanr(raw, measured)[0], "latency table": spearmanr(predicted, measured)[0],
           "k x MACs": spearmanr(macs, measured)[0], "FOX-NAS linear predictor": spearmanr(fox, measured)[0]}
    print(f"sum of parts : mean |error| {raw_mean:.2f}%, max {raw_worst:.2f}% (before calibration)")
    print(f"latency table: mean |error| {mean:.2f}%, max {worst:.2f}%, mean signed "
          f"{np.mean([r['error_pct'] for r in rows]):+.2f}%, Spearman {rho['latency table']:.3f}")
    print(f"MACs proxy   : mean |error| {proxy_err.mean():.2f}%, max {proxy_err.max():.2f}%, Spearman "
          f"{rho['k x MACs']:.3f}  (k fitted on these archs)")
    print(f"FOX-NAS linear predictor: mean |error| {fox_err.mean():.2f}%, max {fox_err.max():.2f}%, Spearman "
          f"{rho['FOX-NAS linear predictor']:.3f}  (each network predicted by the fit on the other {len(archs) - 1})")
    for name, (m, w, r) in alternative.items():
        print(f"{name}: mean |error| {m:.2f}%, max {w:.2f}%, Spearman {r:.3f}  (the same networks, for comparison)")
    print(f"run took {seconds:.0f} s; load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    print("reference: Single-Path NAS reports 1.76% mean error on a phone", flush=True)
    result = {"mean": {"sum of parts": raw_mean, "latency table": mean, "k x MACs": float(proxy_err.mean()),
                       "FOX-NAS linear predictor": float(fox_err.mean())},
              "max": {"sum of parts": raw_worst, "latency table": worst, "k x MACs": float(proxy_err.max()),
                      "FOX-NAS linear predictor": float(fox_err.max())},
              "spearman": {name: float(v) for name, v in rho.items()}, "seconds": seconds, "load": load}
    for name, (m, w, r) in alternative.items():
        result["mean"][name], result["max"][name], result["spearman"][name] = m, w, r
    return result


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
