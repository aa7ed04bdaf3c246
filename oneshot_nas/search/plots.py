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
