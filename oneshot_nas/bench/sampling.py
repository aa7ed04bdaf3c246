"""Budget coverage of constrained path sampling: uniform + rejection vs strolling evolution.

Both samplers draw the same number of paths under the same --macs-range / --params-range (paper
MACs and params, from the lookup table). Evenness is measured on a 7 x 8 grid over the budget
rectangle (MACs x params): cells occupied, normalised entropy of the cell histogram (1 = every cell
equally often), the share of samples in the rectangle's outer ring of cells (the extreme paths a
supernet must also train) and the fullest cell's share. Both distributions are plotted side by
side to a PNG.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from ..cost.limits import Limits, parse_range
from ..cost.model import CostModel
from ..sample.samplers import RejectionSampler, UniformSampler
from ..space import get_space
from ..sample.strolling import StrollingSampler

GRID = (7, 8)


def draw(sampler, costs, count, seed):
    """(N, 2) array of (MACs, params) of `count` samples, and seconds per sample."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    archs = [sampler(rng) for _ in range(count)]
    seconds = (time.perf_counter() - start) / count
    values = costs.values_many([a.genes for a in archs])
    return values[:, [costs.index("macs"), costs.index("params")]], seconds


def evenness(points, bounds):
    """Grid statistics of `points` inside `bounds` ((lo, hi) per axis)."""
    (mlo, mhi), (plo, phi) = bounds
    i = np.clip(((points[:, 0] - mlo) / (mhi - mlo) * GRID[0]).astype(int), 0, GRID[0] - 1)
    j = np.clip(((points[:, 1] - plo) / (phi - plo) * GRID[1]).astype(int), 0, GRID[1] - 1)
    hist = np.zeros(GRID)
    np.add.at(hist, (i, j), 1)
    p = hist[hist > 0] / len(points)
    ring = (i == 0) | (i == GRID[0] - 1) | (j == 0) | (j == GRID[1] - 1)
    return {"cells": int((hist > 0).sum()), "entropy": float(-(p * np.log(p)).sum() / np.log(hist.size)),
            "outer_ring": float(ring.mean()), "fullest_cell": float(hist.max() / len(points)), "hist": hist}


def plot(results, bounds, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    (mlo, mhi), (plo, phi) = bounds
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5), sharey=True)
    for ax, (name, (points, stats)) in zip(axes, results.items()):
        ax.hist2d(points[:, 0] / 1e6, points[:, 1] / 1e6, bins=[28, 32],
                  range=[[mlo / 1e6, mhi / 1e6], [plo / 1e6, phi / 1e6]], cmap="viridis")
        for x in np.linspace(mlo, mhi, GRID[0] + 1):
            ax.axvline(x / 1e6, color="white", lw=0.5, alpha=0.6)
        for y in np.linspace(plo, phi, GRID[1] + 1):
            ax.axhline(y / 1e6, color="white", lw=0.5, alpha=0.6)
        ax.set_title(f"{name}: {stats['cells']}/{GRID[0] * GRID[1]} cells, entropy {stats['entropy']:.3f}")
        ax.set_xlabel("paper MACs (M)")
    axes[0].set_ylabel("params (M)")
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench sampling", description=__doc__)
    parser.add_argument("--space", default="oneshot+")
    parser.add_argument("--macs-range", default="190M:330M", help="paper MACs budget LO:HI")
    parser.add_argument("--params-range", default="2.8M:5.3M", help="params budget LO:HI")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="logs/bench/sampling.png", help="the side-by-side plot")
    args = parser.parse_args(argv)
    space = get_space(args.space)
    costs = CostModel(space)
    limits = Limits(costs, {"macs": parse_range(args.macs_range, "--macs-range"),
                            "params": parse_range(args.params_range, "--params-range")})
    samplers = {"uniform + rejection": RejectionSampler(UniformSampler(space), limits),
                "strolling": StrollingSampler(UniformSampler(space), limits)}
    bounds = samplers["strolling"].bounds
    print(f"{space.name}: {args.samples} samples with MACs in {args.macs_range} and params in "
          f"{args.params_range}; evenness on a {GRID[0]} x {GRID[1]} grid")
    print(f"{'sampler':22s} {'ms/sample':>9s} {'cells':>7s} {'entropy':>8s} {'outer ring':>10s} "
          f"{'fullest cell':>12s}")
    results = {}
    for name, sampler in samplers.items():
        points, seconds = draw(sampler, costs, args.samples, args.seed)
        stats = evenness(points, bounds)
        results[name] = (points, stats)
        print(f"{name:22s} {seconds * 1e3:9.2f} {stats['cells']:>4d}/{GRID[0] * GRID[1]} {stats['entropy']:8.3f} "
              f"{stats['outer_ring']:10.1%} {stats['fullest_cell']:12.1%}", flush=True)
    u, s = results["uniform + rejection"][1], results["strolling"][1]
    ring = s["outer_ring"] / max(u["outer_ring"], 1e-9)
    print(f"strolling / uniform: cells x{s['cells'] / u['cells']:.2f}, "
          f"entropy x{s['entropy'] / u['entropy']:.2f}, outer ring x{ring:.2f}")
    plot(results, bounds, args.out, f"{space.name}: MACs {args.macs_range}, params {args.params_range}, "
                                    f"{args.samples} samples each")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
