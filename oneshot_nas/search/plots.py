"""Plots of a search, made from its records (search.jsonl lines), to PNG with matplotlib's Agg.

- `search_front.png`: accuracy against paper MACs, one colour per generation, with the Pareto front
  (no other candidate is both cheaper and more accurate) and the best candidate marked;
- `search_progress.png`: best and mean accuracy of each generation, and the best so far.
When candidates were ranked by the zero-cost BN score only, the BN score is plotted instead.
- `plot_score_vs_truth`: a score of the ranking study (search/ranking.py) against the true accuracy.
- `plot_coefficients`: the FOX-NAS predictor's weights, which choices raise or lower the score.
"""
from pathlib import Path

import numpy as np


def pareto_front(costs, values):
    """Indices of the candidates no other beats on both (lower cost, higher value), by cost."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -values[i]))
    front, best = [], -np.inf
    for i in order:
        if values[i] > best:
            front.append(i)
            best = values[i]
    return front


def plot_search(records, directory, title=""):
    """Write both plots for `records` of one run into `directory`; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = [r for r in records if r.get("stage", "search") == "search"]
    if not records:
        return []
    key, label = (("accuracy", "top-1 accuracy (search split)") if records[0].get("accuracy") is not None
                  else ("bn_score", "BN score (mean |gamma| on the path)"))
    macs = np.array([r["macs"] / 1e6 for r in records])
    value = np.array([r[key] for r in records], dtype=float)
    gen = np.array([r["generation"] for r in records])
    directory = Path(directory)
    paths = [directory / "search_front.png", directory / "search_progress.png"]

    fig, ax = plt.subplots(figsize=(7, 5))
    points = ax.scatter(macs, value, c=gen, cmap="viridis", s=18, alpha=0.8)
    fig.colorbar(points, ax=ax, label="generation", ticks=MaxNLocator(integer=True))
    front = pareto_front(list(macs), list(value))
    ax.step(macs[front], value[front], where="post", color="crimson", lw=1.5, label="Pareto front")
    best = int(np.argmax([r["score"] for r in records]))
    ax.scatter([macs[best]], [value[best]], marker="*", s=200, color="crimson", zorder=3,
               label=f"best by score ({records[best]['arch']})")
    ax.set_xlabel("paper MACs (millions, per image)")
    ax.set_ylabel(label)
    ax.set_title(title or "search: candidates by generation")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    gens = sorted(set(gen.tolist()))
    best_of = [value[gen == g].max() for g in gens]
    mean_of = [value[gen == g].mean() for g in gens]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(gens, best_of, "o-", label="best of the generation")
    ax.plot(gens, mean_of, "s--", label="mean of the generation")
    ax.plot(gens, np.maximum.accumulate(best_of), "-", color="black", alpha=0.5, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel(label)
    ax.set_title(title or "search progress")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


def plot_score_vs_truth(score, truth, truth_std, name, tau, path, unit=None):
    """One score against the true mean top-1 of the same architectures (error bars: seed std), with
    Kendall tau and its 95% interval in the title; written to `path` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = np.asarray(score, dtype=float)
    scale = 1e6 if unit else 1.0
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(score / scale, 100 * np.asarray(truth), yerr=100 * np.asarray(truth_std), fmt="o", ms=4,
                alpha=0.8, capsize=2, lw=0.8)
    ax.set_xlabel(f"{name} ({unit}, millions)" if unit else name)
    ax.set_ylabel("true top-1 (%, mean over seeds; bars: seed std)")
    ax.set_title(f"{name}: Kendall tau {tau['value']:.3f} [{tau['lo']:.3f}, {tau['hi']:.3f}]")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_coefficients(coefficients, path, title=""):
    """A horizontal bar per (feature, weight), the first on top; raising in green, lowering in red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names, weights = zip(*coefficients) if coefficients else ((), ())
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(range(len(names)), weights, color=["tab:green" if w >= 0 else "tab:red" for w in weights])
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("weight (score per unit of the feature)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_singlepath(paths, metrics, path, title="", target=None, metric="latency_ms"):
    """The curves of one Single-Path NAS search from its records (paths.jsonl: decisions per epoch;
    metrics.jsonl: loss and validation): cross-entropy and runtime model, the kernel size and channel
    id of every position (and where SE is on, in a space that searches it), and every decision's margin (log-RMS statistic minus log-threshold: > 0
    means used) over the epochs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not paths:
        return None
    epochs = [r["epoch"] for r in paths]
    scale, unit = (1.0, "ms") if metric == "latency_ms" else (1e-6, f"M {metric}")
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    ax = axes[0][0]
    ax.plot(epochs, [r["ce"] for r in paths], marker="o", color="C0", label="cross-entropy (train)")
    if metrics and any("val_top1" in m for m in metrics):
        ax.plot([m["epoch"] for m in metrics if "val_top1" in m],
                [1 - m["val_top1"] for m in metrics if "val_top1" in m], marker=".", color="C2",
                label="validation error")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy / error")
    ax.legend(loc="upper left", fontsize=8)
    twin = ax.twinx()
    twin.plot(epochs, [r["runtime"] * scale for r in paths], marker="s", color="C1", label="R (mean over steps)")
    twin.plot(epochs, [r["cost"] * scale for r in paths], ls="--", color="C3", label="R of the epoch's network")
    if target is not None:
        twin.axhline(target * scale, color="k", lw=0.8, ls=":", label="target")
    twin.set_ylabel(f"runtime model ({unit})")
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title("loss and runtime")
    for ax, key, label in ((axes[0][1], "kernels", "kernel size"), (axes[1][0], "channels", "channel id")):
        grid = np.array([r[key] for r in paths]).T          # (positions, epochs)
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest",
                          extent=(epochs[0] - 0.5, epochs[-1] + 0.5, grid.shape[0] - 0.5, -0.5))
        fig.colorbar(image, ax=ax, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("position")
        ax.set_yticks(range(grid.shape[0]) if grid.shape[0] <= 20 else ax.get_yticks())
        ax.set_title(f"{label} of each position")
    if "se" in paths[0]:         # a space that searches SE: a dot where a position uses its SE
        on = [(r["epoch"], p) for r in paths for p, v in enumerate(r["se"]) if v]
        if on:
            axes[1][0].scatter(*zip(*on), s=14, color="w", edgecolors="k", lw=0.5, label="SE on")
            axes[1][0].legend(loc="upper right", fontsize=7)
    ax = axes[1][1]
    for p in range(len(paths[0]["thresholds"])):
        for kind, style in (("kernel", "-"), ("width", ":"), ("se", "--")):
            if kind not in paths[0]["thresholds"][p]:
                continue
            margins = np.array([np.subtract(r["thresholds"][p][f"{kind}_stat"], r["thresholds"][p][kind])
                                for r in paths])
            for j in range(margins.shape[1]):
                ax.plot(epochs, margins[:, j], ls=style, color=f"C{p % 10}", lw=0.8,
                        label=f"p{p} {kind}" if j == 0 else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("log RMS - log threshold (> 0: used)")
    ax.set_title("margins (solid: kernel shells, dotted: channel groups, dashed: SE)", fontsize=10)
    if len(paths[0]["thresholds"]) <= 8:
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_tradeoff(records, path, target, metric="latency_ms"):
    """The cost of each search's network against its lambda, with the target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return None
    scale, unit = (1.0, "ms") if metric == "latency_ms" else (1e-6, f"M {metric}")
    fig, ax = plt.subplots(figsize=(6, 4))
    lams = [max(r["lambda"], 1e-6) for r in records]
    ax.plot(lams, [r["cost"] * scale for r in records], "o", color="C0")
    for k, (lam, r) in enumerate(zip(lams, records)):
        ax.annotate(str(k), (lam, r["cost"] * scale), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(target * scale, color="k", ls=":", label="target")
    ax.set_xscale("log")
    ax.set_xlabel("lambda (order of the searches numbered)")
    ax.set_ylabel(f"found network ({unit})")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
