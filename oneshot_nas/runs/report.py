"""REPORT.md of a pipeline run (`sh scripts/quickstart.sh`), made from the records each step left.

    python -m oneshot_nas.report logs/quickstart

ROOT/steps.jsonl lists the steps that ran, one JSON line each: {"step", "seconds", "command", "run"},
where "run" is the folder (or file) the step wrote, relative to ROOT. The steps the report knows:
supernet (a supernet training run: metrics.jsonl, paths.jsonl, curves.png, supernet.json), search
(summary.json, search.jsonl, plots), retrain (a subnet training run and its model JSON), ranking
(python -m oneshot_nas.rank score: ranking.json / .md), profile (profiling/score.py --format json)
and export (*-export.json / .md). A step missing from steps.jsonl is looked for in its usual folder
under ROOT (supernet/, search/, subnet/, ranking/, profile.json, export/). Each section reads only
its own step's record; a missing part is reported as missing.

With a ground-truth table (--truth, python -m oneshot_nas.rank truth), the report puts the retrained
winner next to the table's architectures within the search's budget, trained by the same recipe,
and next to the table's reference nets: whether the search beat a random pick. Writes
ROOT/REPORT.md and ROOT/sampled_paths.png.
"""
import json
import logging
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from ..cli import ArgumentParser, setup_logging
from ..cost.limits import Limits
from ..cost.model import CostModel
from ..errors import UserError
from ..train.truthtable import read_references, read_table
from ..space import SearchSpace, load_architecture
from .rundir import read_jsonl

log = logging.getLogger(__name__)
USUAL = {"supernet": "supernet", "search": "search", "retrain": "subnet", "ranking": "ranking",
         "profile": "profile.json", "export": "export"}


def pct(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


def millions(value):
    return f"{value / 1e6:.3g}M"


def _read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


class Records:
    """What the steps of one pipeline run left behind, read once."""

    def __init__(self, root, truth=None):
        self.root = Path(root)
        self.truth = Path(truth) if truth else None
        self.steps = read_jsonl(self.root / "steps.jsonl")
        where = {s["step"]: s["run"] for s in self.steps if s.get("run")}
        self.path = {step: self.root / where.get(step, usual) for step, usual in USUAL.items()}
        supernet, search, retrain = self.path["supernet"], self.path["search"], self.path["retrain"]
        self.supernet = read_jsonl(supernet / "metrics.jsonl")
        self.paths = read_jsonl(supernet / "paths.jsonl")
        self.supernet_meta = _read_json(supernet / "supernet.json")
        self.summary = _read_json(search / "summary.json")
        self.search = [r for r in read_jsonl(search / "search.jsonl") if r.get("stage", "search") == "search"]
        self.retrain = read_jsonl(retrain / "metrics.jsonl")
        models = sorted(p for p in retrain.glob("*.json") if p.name not in ("args.json", "settings.json")
                        and not p.name.startswith("args.")) if retrain.is_dir() else []
        self.model = load_architecture(models[0], with_record=True) if models else None
        self.model_path = models[0].with_suffix(".params") if models else None
        self.profile = _read_json(self.path["profile"])
        exports = sorted(self.path["export"].glob("*-export.json")) if self.path["export"].is_dir() else []
        self.export = _read_json(exports[0]) if exports else None
        self.export_md = exports[0].with_suffix(".md") if exports else None
        self.ranking_md = self.path["ranking"] / "ranking.md"

    @cached_property
    def comparison(self):
        """The winner against the ground-truth table (compare_with_truth), computed once."""
        return compare_with_truth(self)

    @property
    def space(self):
        meta = self.supernet_meta
        return SearchSpace.from_dict(meta["space_config"]) if meta and meta.get("space_config") else None

    def image(self, path, caption):
        path = Path(path)
        return [f"![{caption}]({path.relative_to(self.root)})\n"] if path.is_file() else []


# ----- sections ------------------------------------------------------------------------------------
def headline(r):
    lines = ["## Headline\n", "| | |", "|---|---|"]
    if r.supernet:
        last, space = r.supernet[-1], r.space
        chance = f"; chance {pct(1 / space.num_classes)}" if space else ""
        lines.append(f"| supernet: random paths, val top-1 after {len(r.supernet)} epochs | "
                     f"{pct(last.get('val_top1_mean'))} mean ({pct(last.get('val_top1_min'))} - "
                     f"{pct(last.get('val_top1_max'))}) over {len(last.get('val_paths', {}))} paths{chance} |")
    if r.search:
        best = max(r.search, key=lambda row: row.get("score", -1))
        lines.append(f"| search: best of {len(r.search)} candidates | `{best['arch']}` |")
        lines.append(f"| its search-split top-1, paper MACs, params | {pct(best.get('accuracy'))}, "
                     f"{millions(best['macs'])}, {millions(best['params'])} |")
    if r.model:
        record = r.model[1]
        lines.append(f"| retrained from scratch: val top-1 / top-5 | {pct(record.get('top1'))} / "
                     f"{pct(record.get('top5'))} |")
    c = r.comparison
    if "mine" in c:
        beaten, n = int((c["theirs"] < c["mine"]).sum()), len(c["theirs"])
        refs = "".join(f"; `{ref.name}` {pct(ref.top1_mean)}" for ref in c["references"])
        own, theirs = c["own"], c["means"]
        means = ""
        if theirs is not None:
            means = (f"; by the mean of {len(own.seeds)} seeds {pct(own.top1_mean)}, beats "
                     f"{int((theirs < own.top1_mean).sum())} of {len(theirs)} (median {pct(float(np.median(theirs)))})")
        lines.append(f"| the winner vs the table's random architectures of its budget (same recipe; section 4) | "
                     f"seed {c['seed']}: beats {beaten} of {n} (median {pct(float(np.median(c['theirs'])))})"
                     f"{means}{refs} |")
    if r.profile:
        scores = {s["precision"]: s["score"] for s in r.profile["scores"]}
        lines.append(f"| MicroNet score (fp32 / fp16 / int8) vs MobileNetV2-1.4 | "
                     f"{scores.get('fp32', 0):.4f} / {scores.get('fp16', 0):.4f} / {scores.get('int8', 0):.4f} |")
    if r.export:
        lines += _export_headline(r.export)
    if r.steps:
        lines.append(f"| wall clock, all steps | {sum(s['seconds'] for s in r.steps) / 60:.1f} min |")
    return lines + [""]


def steps(r):
    if not r.steps:
        return []
    return (["## Steps\n", "| step | seconds | command |", "|---|---|---|"]
            + [f"| {s['step']} | {s['seconds']:.0f} | `{s.get('command', '')}` |" for s in r.steps] + [""])


def supernet(r):
    lines = ["## 1. Supernet training\n"]
    if not r.supernet:
        return lines + ["(no supernet record found)\n"]
    lines += ["| epoch | stage | scales | loss | train top-1 | val top-1 mean (min-max) | ref path top-1 | s |",
              "|---|---|---|---|---|---|---|---|"]
    rows, previous = [], None
    for i, row in enumerate(r.supernet):      # validated epochs, the last, and each stage's first
        stage = "one path (inheritance)" if row.get("path") else "uniform paths"
        if row.get("val_top1_mean") is not None or i == len(r.supernet) - 1 or stage != previous:
            rows.append((stage, row))
        previous = stage
    for stage, row in rows:
        val = (f"{pct(row['val_top1_mean'])} ({pct(row.get('val_top1_min'))}-{pct(row.get('val_top1_max'))})"
               if row.get("val_top1_mean") is not None else "n/a")
        scales = row.get("scales") or [0]
        lines.append(
            f"| {row['epoch']} | {stage} | {min(scales):.1f}-{max(scales):.1f} | {row['loss']:.3f} | "
            f"{pct(row.get('train_top1'))} | {val} | {pct(row.get('ref_top1'))} | "
            f"{row['seconds'] + row.get('val_seconds', 0):.1f} |")
    if len(rows) < len(r.supernet):
        lines.append(f"\n({len(r.supernet) - len(rows)} epochs without validation left out: every epoch is "
                     f"in `{r.path['supernet'].relative_to(r.root)}/metrics.jsonl`.)")
    lines += [""] + r.image(r.path["supernet"] / "curves.png", "supernet curves")
    if r.paths and r.space:
        lines += r.image(plot_sampled_paths(r.paths, r.space, r.root / "sampled_paths.png"),
                         "sampled architectures")
    return lines


def search(r):
    lines = ["## 2. Search\n"]
    if not (r.summary and r.search):
        return lines + ["(no search record found)\n"]
    lines += [f"Budget: {r.summary.get('budget', 'n/a')}. Top candidates by search-split top-1:\n",
              "| rank | architecture | top-1 | paper MACs | params |", "|---|---|---|---|---|"]
    top = sorted(r.search, key=lambda row: -row.get("score", -1))[:5]
    lines += [f"| {i + 1} | `{row['arch']}` | {pct(row.get('accuracy'))} | {millions(row['macs'])} | "
              f"{millions(row['params'])} |" for i, row in enumerate(top)]
    return (lines + [""] + r.image(r.path["search"] / "search_front.png", "search front")
            + r.image(r.path["search"] / "search_progress.png", "search progress"))


def retrain(r):
    lines = ["## 3. Retraining the winner\n"]
    if not (r.retrain and r.model):
        return lines + ["(no retraining record found)\n"]
    arch, record = r.model
    return lines + [f"`{arch}` trained from scratch for {len(r.retrain)} epochs: val top-1 "
                    f"{pct(record.get('top1'))}, top-5 {pct(record.get('top5'))} "
                    f"(model `{r.model_path.relative_to(r.root)}`).\n"] + \
        r.image(r.path["retrain"] / "curves.png", "retraining curves")


def compare_with_truth(r):
    """The retrained winner against the table's architectures of the search's budget, trained by
    the same recipe and seed: {'intro', 'note'} when there is nothing to compare, else also
    'mine', 'theirs' (their top-1 with that seed), 'budget', 'seed', 'own' (the winner's row of
    the table, if it has one), 'means' (the budget's mean top-1s, when the winner's row has
    several seeds to compare with them; else None), 'references' and 'floor'."""
    if r.truth is None:
        return {"intro": "", "note": "no ground-truth table given: `python -m oneshot_nas.report ROOT --truth TABLE`; "
                                    "make one with `sh scripts/truth_table.sh` (docs/ranking.md)"}
    try:
        rows = read_table(r.truth)
    except UserError as err:
        return {"intro": "", "note": f"the ground-truth table is not read: {err}"}
    key = rows[0].recipe_key
    seeds = sorted({s for row in rows for s in row.seeds})
    out = {"intro": f"Ground truth `{r.truth}`: {len(rows)} architectures of `{rows[0].arch.space.name}`, each "
                    f"trained from scratch with seeds {', '.join(map(str, seeds))} (recipe `{key}`)."}
    if not r.model:
        return {**out, "note": "no retrained winner to compare"}
    arch, record = r.model
    if record.get("recipe_key") != key:
        why = ("it started from the supernet's weights" if record.get("start", "scratch") != "scratch"
               else "its training recipe differs from the table's")
        return {**out, "note": f"the winner cannot be compared with this table: {why} (recipe "
                               f"`{record.get('recipe_key')}`). Retrain it with the table's flags "
                               "(scripts/train_subnet.sh trains by scripts/truth_table.sh's recipe)"}
    seed = record.get("seed", 0)
    try:
        budget = Limits(CostModel(rows[0].arch.space), (r.summary or {}).get("limits") or {})
        within = [row for row in rows if budget(row.arch.genes).ok and row.arch != arch]
    except UserError as err:        # e.g. a latency budget without its table
        return {**out, "note": f"the search's budget cannot be applied to the table: {err}"}
    others = [row for row in within if seed in row.seeds]
    if not others:
        return {**out, "note": f"no architecture of the table is within the budget ({budget.describe()}) "
                               f"with seed {seed}"}
    noise = r.truth / "noise_floor.json" if r.truth.is_dir() else r.truth.parent / "noise_floor.json"
    own = next((row for row in rows if row.arch == arch), None)
    means = np.array([row.top1_mean for row in within]) if own is not None and len(own.seeds) > 1 else None
    return {**out, "mine": record["top1"], "seed": seed, "budget": budget.describe(),
            "theirs": np.array([row.top1[row.seeds.index(seed)] for row in others]), "own": own,
            "means": means, "references": read_references(r.truth, key), "floor": _read_json(noise)}


def verdict(mine, median, floor, seeds=1):
    """One sentence: did the search beat a random pick of its budget, against the seed noise?
    `mine` and `median` are top-1s of one seed, or means of `seeds` seeds (noise / sqrt(seeds))."""
    noise = (floor or {}).get("seed_std_mean")
    gap = 100 * (mine - median)
    what = "the winner" if seeds == 1 else f"the winner's mean of {seeds} seeds"
    if noise is None:
        return f"{what.capitalize()} is {gap:+.1f} points from the median random architecture (no seed noise known)."
    noise = 100 * noise / seeds ** 0.5
    unit = "one seed's noise" if seeds == 1 else f"the noise of a mean of {seeds} seeds"
    if abs(gap) <= noise:
        return (f"**Verdict: no better than a random pick.** {what.capitalize()} is {gap:+.1f} points from "
                f"the median random architecture of its budget, within {unit} ({noise:.2f} points).")
    if gap > 0:
        return (f"**Verdict: the search beat a random pick**: {what} is {gap:+.1f} points over the median "
                f"random architecture of its budget ({unit}: {noise:.2f} points).")
    return (f"**Verdict: worse than a random pick**: {what} is {gap:+.1f} points from the median random "
            f"architecture of its budget ({unit}: {noise:.2f} points).")


def versus_random(r):
    """Section 4: the winner next to random architectures of its budget and the reference nets."""
    lines = ["## 4. Does the search beat a random pick?\n"]
    c = r.comparison
    if c["intro"]:
        lines.append(c["intro"] + "\n")
    if "note" in c:
        return lines + [f"({c['note']})\n"]
    theirs, mine = c["theirs"], c["mine"]
    beaten = int((theirs < mine).sum())
    q1, median, q3 = np.percentile(theirs, [25, 50, 75])
    lines += [f"The same recipe and seed ({c['seed']}) for the winner and for the table's {len(theirs)} architectures "
              f"within the search's budget ({c['budget']}); top-1 on the validation set:\n",
              "| | top-1 |", "|---|---|",
              f"| the winner, retrained | **{pct(mine)}** |",
              f"| random architectures of the budget: median (quartiles) | {pct(median)} ({pct(q1)} - {pct(q3)}) |",
              f"| random architectures of the budget: worst / best | {pct(theirs.min())} / {pct(theirs.max())} |",
              f"| the winner beats | {beaten} of {len(theirs)} ({100 * beaten / len(theirs):.0f}%) |"]
    own, means = c["own"], c["means"]
    if means is not None:
        lines.append(f"| the winner in the table: mean of {len(own.seeds)} seeds (its rank among the budget's "
                     f"means) | {pct(own.top1_mean)} ± {100 * own.top1_std:.1f} (beats "
                     f"{int((means < own.top1_mean).sum())} of {len(means)}) |")
    for ref in c["references"]:
        spread = f" ± {100 * ref.top1_std:.1f}" if ref.top1_std is not None else ""
        lines.append(f"| reference net `{ref.name}` ({millions(ref.macs)} MACs, {millions(ref.params)} params), "
                     f"mean of {len(ref.seeds)} seeds | {pct(ref.top1_mean)}{spread} |")
    floor = c["floor"]
    if floor and floor.get("seed_std_mean") is not None:
        lines.append(f"| seed noise of one architecture (std, mean over the table) | "
                     f"{100 * floor['seed_std_mean']:.2f} points |")
    if means is not None:     # the fairer comparison: means against means
        said = verdict(own.top1_mean, np.median(means), floor, len(own.seeds))
    else:
        said = verdict(mine, median, floor)
    lines += ["", said, ""]
    if r.ranking_md.is_file():
        lines += ["How well the supernet ranks the table's architectures "
                  "(`python -m oneshot_nas.rank score`):\n", r.ranking_md.read_text()]
    return lines


def profile(r):
    lines = ["## 5. Profile\n"]
    if not r.profile:
        return lines + ["(no profile found)\n"]
    t = r.profile["totals"]
    return lines + ["| metric | value |", "|---|---|", f"| paper MACs | {t['macs']:,} |",
                    f"| MicroNet FLOPs (mults + adds) | {t['flops']:,} |",
                    f"| params (BN folded) / paper params | {t['params']:,} / {t['paper_params']:,} |", "",
                    "Per-block profile: `profile.md` (`python profiling/score.py MODEL.params`).\n"]


def export(r):
    lines = ["## 6. Export\n"]
    if r.export_md is None or not r.export_md.is_file():
        return lines + ["(no export summary found)\n"]
    return lines + [r.export_md.read_text().split("\n", 1)[1]]


SECTIONS = (headline, steps, supernet, search, retrain, versus_random, profile, export)


def build_report(root, truth=None):
    """Write ROOT/REPORT.md from the records of the run in ROOT (and the ground-truth table
    `truth`, a truth.jsonl or its folder); returns its path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} does not exist: run sh scripts/quickstart.sh first")
    if truth is not None and not Path(truth).exists():
        raise UserError(f"ground-truth table {truth} does not exist; make one with sh scripts/truth_table.sh "
                        "or leave --truth out")
    records = Records(root, truth)
    lines = ["# oneshot-nas pipeline report\n",
             f"Made {time.strftime('%Y-%m-%d %H:%M')} from the records in `{root}` by "
             "`python -m oneshot_nas.report`. Every number below is read from a file the step wrote.\n"]
    for section in SECTIONS:
        lines += section(records)
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


def plot_sampled_paths(rows, space, out):
    """What supernet training sampled: MACs x params of every trained path (coloured by epoch), and
    how often each block and each channel scale was drawn at each position."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    epochs = np.concatenate([[row["epoch"]] * len(row["macs"]) for row in rows])
    macs = np.concatenate([row["macs"] for row in rows]) / 1e6
    params = np.concatenate([row["params"] for row in rows]) / 1e6
    points = axes[0].scatter(macs, params, c=epochs, s=6, cmap="viridis", alpha=0.6)
    fig.colorbar(points, ax=axes[0], label="epoch")
    axes[0].set(xlabel="paper MACs (M)", ylabel="params (M)", title=f"{len(macs)} trained paths")
    for ax, key, labels, title in (
            (axes[1], "block_counts", list(space.blocks), "block choices"),
            (axes[2], "channel_counts", [f"{s:g}" for s in space.channel_scales], "channel scales")):
        counts = np.sum([np.asarray(row[key]) for row in rows], axis=0).T      # (choices, positions)
        image = ax.imshow(counts / counts.sum(axis=0, keepdims=True), aspect="auto", cmap="magma",
                          origin="lower", vmin=0)
        ax.set(xlabel="position", title=f"{title} drawn per position (share)")
        ax.set_yticks(range(len(labels)), labels)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None):
    parser = ArgumentParser(prog="python -m oneshot_nas.report", description=__doc__)
    parser.add_argument("root", nargs="?", default="logs/quickstart", help="the pipeline run's folder")
    parser.add_argument("--truth", help="a ground-truth table (truth.jsonl or its folder) to put the winner "
                                        "next to random architectures of its budget")
    args = parser.parse_args(argv)
    setup_logging()
    out = build_report(args.root, args.truth)
    log.info("wrote %s", out)
    return out
