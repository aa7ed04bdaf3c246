"""Training curves from a run's metrics.jsonl (the record, not the live objects), drawn to PNG."""
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

log = logging.getLogger(__name__)


def plot_training_curves(rows, path, title=""):
    """Loss, validation top-1 (mean with the min-max band over paths) and learning rate per epoch."""
    if not rows:
        return None
    epochs = [r["epoch"] + 1 for r in rows]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4))
    ax_loss.plot(epochs, [r.get("loss") for r in rows], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("training loss")

    def column(key):
        return [r.get(key) if r.get(key) is not None else float("nan") for r in rows]
    ax_acc.plot(epochs, column("train_top1"), marker=".", label="train top-1")
    if any(r.get("val_top1_mean") is not None for r in rows):
        ax_acc.plot(epochs, column("val_top1_mean"), marker="o", label="val top-1 (mean of paths)")
        ax_acc.fill_between(epochs, column("val_top1_min"), column("val_top1_max"), alpha=0.25,
                            label="val top-1 min-max")
        ax_acc.plot(epochs, column("val_top5_mean"), marker="^", label="val top-5 (mean)")
    if any(r.get("val_top1") is not None for r in rows):
        ax_acc.plot(epochs, column("val_top1"), marker="o", label="val top-1")
        ax_acc.plot(epochs, column("val_top5"), marker="^", label="val top-5")
    if any(r.get("ref_top1") is not None for r in rows):
        ax_acc.plot(epochs, column("ref_top1"), marker="s", label="val top-1 (reference arch)")
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
