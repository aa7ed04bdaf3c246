"""Training curves from a run's metrics.jsonl (the record, not the live objects), drawn to PNG."""
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

log = logging.getLogger(__name__)


def stages(rows):
    """[(first epoch, last epoch, label)] of the runs of epochs trained the same way: the one-path
    warm start, block search at the widest channels, each channel warm-up stage, all widths."""
    spans = []
    for r in rows:
        scales = r.get("scales") or []
        if r.get("path"):
            label = "one path"
        elif not scales:
            label = ""
        elif len(scales) == 1:
            label = f"blocks @{scales[0]:g}"
        else:
            label = f"scales {min(scales):g}-{max(scales):g}"
        if spans and spans[-1][2] == label:
            spans[-1] = (spans[-1][0], r["epoch"], label)
        else:
            spans.append((r["epoch"], r["epoch"], label))
    return [s for s in spans if s[2]]


def _mark_stages(ax, spans, labels):
    """Shade alternate stages; with `labels`, name each (vertically, at the top of the axes)."""
    for k, (first, last, label) in enumerate(spans):
        if k % 2 == 0:
            ax.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
        if labels:
            ax.text((first + last) / 2, 0.98, label, transform=ax.get_xaxis_transform(), ha="center",
                    va="top", fontsize=7, rotation=90, color="0.35")


def plot_training_curves(rows, path, title=""):
    """Loss, validation top-1 (mean with the min-max band over paths) and learning rate per epoch,
    with the stages of supernet training (warm start, channel warm-up) marked. Epochs count from 0,
    as in the logs and records."""
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4))
    spans = stages(rows)
    if len(spans) > 1:
        for ax in (ax_loss, ax_acc, ax_lr):
            _mark_stages(ax, spans, labels=ax is ax_loss)
    ax_loss.plot(epochs, [r.get("loss") for r in rows], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("training loss")

    def column(key, rows=rows):
        return [r.get(key) if r.get(key) is not None else float("nan") for r in rows]
    ax_acc.plot(epochs, column("train_top1"), marker=".", label="train top-1")
    for mean, label in (("val_top1_mean", "val top-1 (mean of paths)"), ("val_top1", "val top-1"),
                        ("ref_top1", "val top-1 (reference arch)")):
        scored = [r for r in rows if r.get(mean) is not None]     # --val-every skips epochs
        if not scored:
            continue
        xs = [r["epoch"] for r in scored]
        ax_acc.plot(xs, column(mean, scored), marker="s" if mean == "ref_top1" else "o", label=label)
        if mean == "val_top1_mean":
            ax_acc.fill_between(xs, column("val_top1_min", scored), column("val_top1_max", scored),
                                alpha=0.25, label="val top-1 min-max")
        if mean != "ref_top1":
            top5 = mean.replace("top1", "top5")
            ax_acc.plot(xs, column(top5, scored), marker="^", label=label.replace("top-1", "top-5")
                        .replace("mean of paths", "mean"))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.set_title("accuracy")
    ax_acc.legend(fontsize=8)
    ax_lr.plot(epochs, column("lr"), marker="o")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    ax_lr.set_title("learning rate")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(run, title):
    """Curves of a whole run, read back from its metrics.jsonl, to curves.png; None without a run."""
    if run is None:
        return None
    path = plot_training_curves(run.read(), run.file("curves.png"), title)
    if path:
        log.info("curves: %s", path)
    return path
