"""REPORT.md of a pipeline run (`sh scripts/quickstart.sh`), made from the records each step left.

    python -m oneshot_nas.report logs/quickstart

Reads ROOT/steps.jsonl (step timings), ROOT/supernet/ (metrics.jsonl, paths.jsonl, curves.png),
ROOT/search/ (summary.json, search.jsonl, plots), ROOT/subnet/ (metrics.jsonl, the model JSON,
curves.png), ROOT/profile.json (profiling/score.py --format json) and ROOT/export/*-export.json,
and writes ROOT/REPORT.md plus ROOT/sampled_paths.png. Missing parts are reported as missing.
"""
import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..cli import run, setup_logging
from ..errors import UserError
from .rundir import read_jsonl
from ..space import SearchSpace, load_architecture

log = logging.getLogger(__name__)


def pct(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


def millions(value):
    return f"{value / 1e6:.3f}M" if value < 1e7 else f"{value / 1e6:.1f}M"


def plot_sampled_paths(rows, space, out):
    """What supernet training sampled: MACs x params of every trained path (coloured by epoch), and
    how often each block and each channel scale was drawn at each position."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    epochs = np.concatenate([[r["epoch"]] * len(r["macs"]) for r in rows])
    macs = np.concatenate([r["macs"] for r in rows]) / 1e6
    params = np.concatenate([r["params"] for r in rows]) / 1e6
    points = axes[0].scatter(macs, params, c=epochs, s=6, cmap="viridis", alpha=0.6)
    fig.colorbar(points, ax=axes[0], label="epoch")
    axes[0].set(xlabel="paper MACs (M)", ylabel="params (M)", title=f"{len(macs)} trained paths")
    for ax, key, labels, title in (
            (axes[1], "block_counts", list(space.blocks), "block choices"),
            (axes[2], "channel_counts", [f"{s:g}" for s in space.channel_scales], "channel scales")):
        counts = np.sum([np.asarray(r[key]) for r in rows], axis=0).T      # (choices, positions)
        image = ax.imshow(counts / counts.sum(axis=0, keepdims=True), aspect="auto", cmap="magma",
                          origin="lower")
        ax.set(xlabel="position", title=f"{title} drawn per position (share)")
        ax.set_yticks(range(len(labels)), labels)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def _image(lines, root, path, caption):
    if Path(path).is_file():
        lines.append(f"![{caption}]({Path(path).relative_to(root)})\n")


def build_report(root):
    """Write ROOT/REPORT.md; returns its path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} does not exist: run sh scripts/quickstart.sh first")
    steps = read_jsonl(root / "steps.jsonl")
    supernet = read_jsonl(root / "supernet" / "metrics.jsonl")
    paths = read_jsonl(root / "supernet" / "paths.jsonl")
    summary = _read_json(root / "search" / "summary.json")
    search_rows = read_jsonl(root / "search" / "search.jsonl")
    subnet = read_jsonl(root / "subnet" / "metrics.jsonl")
    models = sorted((root / "subnet").glob("*.json")) if (root / "subnet").is_dir() else []
    model_json = next((m for m in models if m.name != "args.json"), None)
    profile = _read_json(root / "profile.json")
    exports = sorted((root / "export").glob("*-export.json")) if (root / "export").is_dir() else []
    export = _read_json(exports[0]) if exports else None

    lines = ["# oneshot-nas pipeline report\n",
             f"Made {time.strftime('%Y-%m-%d %H:%M')} from the records in `{root}` by "
             "`python -m oneshot_nas.report`. Every number below is read from a file the step wrote.\n"]
    lines += ["## Headline\n", "| | |", "|---|---|"]
    if supernet:
        last = supernet[-1]
        lines.append(f"| supernet: random paths, val top-1 after {len(supernet)} epochs | "
                     f"{pct(last.get('val_top1_mean'))} mean ({pct(last.get('val_top1_min'))} - "
                     f"{pct(last.get('val_top1_max'))}) over {len(last.get('val_paths', {}))} paths; chance 10% |")
    if search_rows:
        best = max(search_rows, key=lambda r: r.get("score", -1))
        lines.append(f"| search: best of {len(search_rows)} candidates | `{best['arch']}` |")
        lines.append(f"| its search-split top-1, paper MACs, params | {pct(best.get('accuracy'))}, "
                     f"{millions(best['macs'])}, {millions(best['params'])} |")
    if model_json:
        arch, record = load_architecture(model_json, with_record=True)
        lines.append(f"| retrained from scratch: val top-1 / top-5 | {pct(record.get('top1'))} / "
                     f"{pct(record.get('top5'))} |")
    if profile:
        scores = {s["precision"]: s["score"] for s in profile["scores"]}
        lines.append(f"| MicroNet score (fp32 / fp16 / int8) vs MobileNetV2-1.4 | "
                     f"{scores.get('fp32', 0):.4f} / {scores.get('fp16', 0):.4f} / {scores.get('int8', 0):.4f} |")
    if export:
        lines += _export_headline(export)
    if steps:
        total = sum(s["seconds"] for s in steps)
        lines.append(f"| wall clock, all steps | {total / 60:.1f} min |")
    lines.append("")

    if steps:
        lines += ["## Steps\n", "| step | seconds | command |", "|---|---|---|"]
        lines += [f"| {s['step']} | {s['seconds']:.0f} | `{s.get('command', '')}` |" for s in steps]
        lines.append("")

    lines.append("## 1. Supernet training\n")
    if supernet:
        lines.append("| epoch | stage | scales | loss | train top-1 | val top-1 mean (min-max) | ref path top-1 | s |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in supernet:
            stage = "one path (inheritance)" if r.get("path") else "uniform paths"
            scales = r.get("scales") or []
            lines.append(
                f"| {r['epoch']} | {stage} | {min(scales):.1f}-{max(scales):.1f} | {r['loss']:.3f} | "
                f"{pct(r.get('train_top1'))} | {pct(r.get('val_top1_mean'))} ({pct(r.get('val_top1_min'))}-"
                f"{pct(r.get('val_top1_max'))}) | {pct(r.get('ref_top1'))} | "
                f"{r['seconds'] + r.get('val_seconds', 0):.1f} |")
        lines.append("")
        _image(lines, root, root / "supernet" / "curves.png", "supernet curves")
        meta = _read_json(root / "supernet" / "supernet.json")
        if paths and meta:
            space = SearchSpace.from_dict(meta["space_config"])
            out = plot_sampled_paths(paths, space, root / "sampled_paths.png")
            _image(lines, root, out, "sampled architectures")
    else:
        lines.append("(no supernet record found)\n")

    lines.append("## 2. Search\n")
    if summary and search_rows:
        lines.append(f"Budget: {summary.get('budget', 'n/a')}. Top candidates by search-split top-1:\n")
        lines += ["| rank | architecture | top-1 | paper MACs | params |", "|---|---|---|---|---|"]
        top = sorted(search_rows, key=lambda r: -r.get("score", -1))[:5]
        lines += [f"| {i + 1} | `{r['arch']}` | {pct(r.get('accuracy'))} | {millions(r['macs'])} | "
                  f"{millions(r['params'])} |" for i, r in enumerate(top)]
        lines.append("")
        _image(lines, root, root / "search" / "search_front.png", "search front")
        _image(lines, root, root / "search" / "search_progress.png", "search progress")
    else:
        lines.append("(no search record found)\n")

    lines.append("## 3. Retraining the winner\n")
    if subnet and model_json:
        lines.append(f"`{arch}` trained from scratch for {len(subnet)} epochs: val top-1 "
                     f"{pct(record.get('top1'))}, top-5 {pct(record.get('top5'))} "
                     f"(model `{model_json.with_suffix('.params').relative_to(root)}`).\n")
        _image(lines, root, root / "subnet" / "curves.png", "retraining curves")
    else:
        lines.append("(no retraining record found)\n")

    lines.append("## 4. Profile\n")
    if profile:
        t = profile["totals"]
        lines += ["| metric | value |", "|---|---|",
                  f"| paper MACs | {t['macs']:,} |", f"| MicroNet FLOPs (mults + adds) | {t['flops']:,} |",
                  f"| params (BN folded) / paper params | {t['params']:,} / {t['paper_params']:,} |", ""]
        lines.append("Per-block profile: `profile.md` (`python profiling/score.py MODEL.params`).\n")
    else:
        lines.append("(no profile found)\n")

    lines.append("## 5. Export\n")
    md = exports[0].with_suffix(".md") if exports else None
    if md is not None and md.is_file():
        lines.append(md.read_text().split("\n", 1)[1])
    else:
        lines.append("(no export summary found)\n")
    out = root / "REPORT.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _export_headline(export):
    checks = export.get("checks", {})
    rows = []
    same = [name for name, c in checks.items() if isinstance(c, dict) and "max_abs_error" in c]
    if same:
        worst = max(checks[n]["max_abs_error"] for n in same)
        ok = all(checks[n].get("ok", False) for n in same)
        rows.append(f"| exports ({', '.join(same)}) reproduce the network | {'yes' if ok else 'NO'}, "
                    f"largest logit difference {worst:.1e} |")
    q = checks.get("int8")
    if isinstance(q, dict) and "fp32" in q:
        rows.append(f"| int8 vs fp32: val top-1; CPU latency batch 1 / 32 | {pct(q['int8']['top1'])} vs "
                    f"{pct(q['fp32']['top1'])}; {q['int8']['latency_ms_batch1']:.2f} / "
                    f"{q['int8']['latency_ms_batch32']:.2f} ms vs {q['fp32']['latency_ms_batch1']:.2f} / "
                    f"{q['fp32']['latency_ms_batch32']:.2f} ms |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.report", description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default="logs/quickstart")
    args = parser.parse_args(argv)
    setup_logging()
    out = build_report(args.root)
    log.info("wrote %s", out)
    return out


if __name__ == "__main__":
    run(main)
