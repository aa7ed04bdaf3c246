"""Search throughput: candidates scored per minute, and what a candidate costs beyond its forward passes.

For each case, random paths are scored as the search scores them (path graph built from the
supernet's weights, exact BN recalibration on the calibration slice, top-1 on the split), with the
time split into graph extraction, recalibration and evaluation. Baselines, in the same process:
- the same forward passes (training-mode passes over the calibration slice, inference passes over
  the split) in a standalone hybridized SubNet built and warmed up beforehand: target
  per-candidate / standalone <= 1.1 in a search (the evolved case);
Cases: the embedded digits on the tiny space (all its slices), and synthetic ImageNet-shaped data
on oneshot+ at 224 (small slices; the per-candidate overhead is constant, so real slices of 20,000
+ 10,000 images approach the 'passes only' ratio). Last, the lookup-table constraint check rate
against analytic counting.
"""
import argparse
import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..cost.limits import Limits
from ..cost.model import CostModel
from ..cost.counting import Counts, count_ops
from ..data.sources import embedded_digits
from ..data.slices import ImageSlice, SearchData, prepare_search_data
from ..search.scoring import CandidateEvaluator
from ..sample.samplers import UniformSampler
from ..space import get_space
from ..nn.subnet import SubNet
from ..nn.supernet import SuperNet


def _sync(out):
    (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()


def standalone_seconds(arch, data, batch_size):
    """Time of the candidate's forward passes in a prebuilt, warmed-up hybridized SubNet: the
    faster of a plain and a static-memory hybridization (static_alloc re-plans at each change of
    batch shape, which can make it the slower one)."""
    net = SubNet(arch)
    net.initialize(mx.init.MSRAPrelu())
    calib = [d for d, _ in data.calibration.batches(batch_size)]
    split = [d for d, _ in data.split.batches(batch_size)]
    best = float("inf")
    for flags in ({}, {"static_alloc": True}):
        net.hybridize(**flags)
        with autograd.train_mode():                  # warm-up: every shape in both modes
            for x in {x.shape: x for x in calib}.values():
                _sync(net(x))
        for x in {x.shape: x for x in split}.values():
            _sync(net(x))
        start = time.perf_counter()
        with autograd.train_mode():
            for x in calib:
                _sync(net(x))
        for x in split:
            net(x).argmax(axis=1).asnumpy()
        best = min(best, time.perf_counter() - start)
    return best


def timed(evaluator, log):
    """A score function that evaluates a candidate and appends (arch, seconds, result) to `log`."""
    def score(arch):
        start = time.perf_counter()
        result = evaluator.evaluate(arch)
        log.append((arch, time.perf_counter() - start, result))
        return result
    return score


def case_row(name, data, batch_size, scored):
    """The row of a case from its timed candidates ((arch, seconds, result) each), against their
    forward passes in standalone SubNets (timed here)."""
    n = len(scored)
    total = sum(seconds for _, seconds, _ in scored)
    alone = sum(standalone_seconds(arch, data, batch_size) for arch, _, _ in scored)
    parts = {k: sum(r[k] for _, _, r in scored) for k in ("extract_seconds", "recal_seconds", "eval_seconds")}
    return {"case": name, "calib": len(data.calibration), "split": len(data.split),
            "per_min": 60 * n / total, "extract": parts["extract_seconds"] / n,
            "recal": parts["recal_seconds"] / n, "eval": parts["eval_seconds"] / n,
            "alone": alone / n, "ratio": total / alone,
            "passes_ratio": (parts["recal_seconds"] + parts["eval_seconds"]) / alone}


def run_case(name, supernet, data, batch_size, candidates, seed=0):
    """Random candidates, every one timed (the first pays one-time costs and is left out)."""
    rng = np.random.default_rng(seed)
    sampler = UniformSampler(supernet.space)
    archs = [sampler(rng) for _ in range(candidates + 1)]
    evaluator = CandidateEvaluator(supernet, data, [mx.cpu()], batch_size)
    evaluator.evaluate(archs[0])                     # one-time costs (oneDNN kernels, first graph)
    scored = []
    score = timed(evaluator, scored)
    for arch in archs[1:]:
        score(arch)
    return case_row(name, data, batch_size, scored)


def tiny_on_digits():
    """(an untrained, hybridized tiny supernet, the search data of the embedded digits)."""
    mx.random.seed(0)
    net = SuperNet("tiny")
    net.initialize(mx.init.MSRAPrelu())
    net.hybridize()
    return net, prepare_search_data(embedded_digits(), 32)


def evolution_case(candidates, batch_size, population=16, seed=0):
    """The digits case with the candidates a search makes: regularized evolution (the default
    strategy) on the tiny supernet, `population` random candidates then children that each change
    one gene of a parent, so most of a child's parts were seen before, as in a real search (its
    scores come from an untrained supernet, which changes what is chosen, not what a candidate
    costs). Only the children are timed, against their standalone passes."""
    from ..search.strategies import regularized_search
    net, data = tiny_on_digits()
    scored = []
    score = timed(CandidateEvaluator(net, data, [mx.cpu()], batch_size), scored)
    regularized_search(net.space.gene_choices(), np.random.default_rng(seed),
                       score_fn=lambda genes: score(net.space.decode(genes))["accuracy"],
                       population=population, generations=-(-candidates // population), sample_size=4,
                       max_candidates=candidates)
    return case_row("digits/tiny@32 evolved", data, batch_size, scored[population:])


def digits_case(candidates, batch_size):
    net, data = tiny_on_digits()
    return run_case("digits/tiny@32 random", net, data, batch_size, candidates)


def imagenet_case(candidates, batch_size, calib, split):
    mx.random.seed(0)
    space = get_space("oneshot+")
    net = SuperNet(space)
    net.initialize(mx.init.MSRAPrelu())
    net.hybridize()
    r = np.random.default_rng(0)
    size = space.input_size

    def synthetic(n):
        images = mx.nd.array(r.integers(0, 256, (n, 3, size, size)), dtype="uint8")
        return ImageSlice(images, r.integers(0, space.num_classes, n))
    data = SearchData(synthetic(calib), synthetic(split), "train")
    return run_case("synthetic/oneshot+@224", net, data, batch_size, candidates)


def constraint_rate(checks=20000, counted=200):
    """(µs per lookup-table constraint check, µs per analytic count), on oneshot+."""
    space = get_space("oneshot+")
    cons = Limits(CostModel(space), {"macs": (250e6, 330e6), "params": (None, 4e6)})
    rng = np.random.default_rng(0)
    sampler = UniformSampler(space)
    genes = [sampler(rng).genes for _ in range(checks)]
    start = time.perf_counter()
    ok = sum(cons(g).ok for g in genes)
    table_us = (time.perf_counter() - start) / checks * 1e6
    archs = [sampler(rng) for _ in range(counted)]
    start = time.perf_counter()
    for a in archs:
        Counts.of(count_ops(a))
    count_us = (time.perf_counter() - start) / counted * 1e6
    return table_us, count_us, ok / checks


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench search", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer candidates, no ImageNet-shaped case")
    parser.add_argument("--candidates", type=int, default=6)
    args = parser.parse_args(argv)
    n = 2 if args.quick else args.candidates
    rows = [digits_case(n, 128)]
    print(_header())
    print(_row(rows[-1]), flush=True)
    rows.append(evolution_case(24 if args.quick else 64, 128))
    print(_row(rows[-1]), flush=True)
    if not args.quick:
        rows.append(imagenet_case(max(2, n // 2), 32, calib=128, split=64))
        print(_row(rows[-1]), flush=True)
    print("extract/recal/eval: seconds per candidate (path graph + weights, BN recalibration, top-1); "
          "alone: the same forward passes in a prebuilt hybridized SubNet")
    print("ratio = per-candidate time / alone (target <= 1.1 in a search, the evolved case); passes = (recal + eval) / alone, the "
          "ratio for large slices")
    table_us, count_us, share = constraint_rate(5000 if args.quick else 20000)
    print(f"constraint check (oneshot+, MACs 250M-330M and params <= 4M): {table_us:.1f} us per candidate "
          f"from the lookup table ({1e6 / table_us:,.0f}/s) vs {count_us:.0f} us by analytic counting: "
          f"{count_us / table_us:.0f}x faster; {100 * share:.1f}% of uniform samples feasible")


def _header():
    return (f"{'case':26s} {'calib':>6s} {'split':>6s} {'cand/min':>9s} {'extract':>8s} {'recal':>7s} "
            f"{'eval':>7s} {'alone':>7s} {'ratio':>6s} {'passes':>7s}")


def _row(r):
    return (f"{r['case']:26s} {r['calib']:>6d} {r['split']:>6d} {r['per_min']:>9.1f} {r['extract']:>8.3f} "
            f"{r['recal']:>7.3f} {r['eval']:>7.3f} {r['alone']:>7.3f} {r['ratio']:>6.2f} "
            f"{r['passes_ratio']:>7.2f}")


if __name__ == "__main__":
    main()
