"""How well a trained supernet ranks architectures: its scores against a ground-truth table.

Every score the search offers is a function `arch -> float` (higher: expected more accurate),
registered in SCORES with `@score(name, description)`; a new score is one function here:
- `supernet_top1`: top-1 on the search split after exact BN recalibration, the search's own score
  (search/scoring.CandidateEvaluator on the slices data/slices.plan_search_split chooses);
- `bn_score`: BN-NAS's zero-cost score (search/zero_cost.BNScores);
- `macs`, `params`: the baselines a score must beat (bigger networks tend to be more accurate);
- `fox_predictor` (only when named): FOX-NAS's linear predictor fitted on random architectures'
  supernet top-1 (search/predictor.py).
`RankingRun` scores the table's architectures with each, and compares with the table's mean top-1
(agreement.agreement: Kendall tau, Spearman rho, precision@k, each with a bootstrap 95% interval),
next to the table's noise floor. It writes args.json, scores.jsonl (one line per architecture),
ranking.json, ranking.md and one PNG per score (score against true accuracy, tau in the title).
"""
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import agreement
from ..cost.model import CostModel
from ..data.slices import load_search_data, plan_search_split
from ..data.sources import resolve_dataset
from ..errors import UserError
from ..runs.modelfile import load_model
from ..runs.progress import progress as progress_bar
from ..runs.rundir import open_run
from ..train.truthtable import read_table
from .scoring import CandidateEvaluator
from .zero_cost import BNScores

log = logging.getLogger(__name__)
OUTPUTS = ("scores.jsonl", "ranking.json", "ranking.md", "ranking.log")


@dataclass(frozen=True)
class Score:
    name: str
    description: str
    needs_data: bool     # True: it scores paths on images (the search split), so the data is loaded
    make: object         # make(context) -> fn(arch) -> float
    default: bool        # among the scores computed when none are named


SCORES = {}


def score(name, description, needs_data=False, default=True):
    """Register a score: `make(context)` gets a ScoreContext and returns `fn(arch) -> float`."""
    def register(make):
        SCORES[name] = Score(name, description, needs_data, make, default)
        return make
    return register


@dataclass
class ScoreContext:
    """What a score may use: the supernet, the cost model of its space, and (when a score needs
    data) the evaluator of the search split."""
    supernet: object
    costs: CostModel
    evaluator: CandidateEvaluator = None
    memo: dict = field(default_factory=dict)


def _evaluated(context, arch):
    """The evaluator's result for `arch`, once per architecture (the scores below share it)."""
    key = str(arch)
    if key not in context.memo:
        context.memo[key] = context.evaluator.evaluate(arch)
    return context.memo[key]


@score("supernet_top1", "top-1 on the search split after BN recalibration (what the search ranks by)",
       needs_data=True)
def _supernet_top1(context):
    return lambda arch: _evaluated(context, arch)["accuracy"]


@score("supernet_nll", "minus the mean cross-entropy on the search split after BN recalibration "
       "(search --score nll)", needs_data=True)
def _supernet_nll(context):
    return lambda arch: -_evaluated(context, arch)["nll"]


@score("bn_score", "BN-NAS: mean |gamma| of the path's BatchNorms in the supernet (zero-cost, no data)")
def _bn_score(context):
    return BNScores(context.supernet).score


@score("macs", "multiply-accumulates (baseline: bigger networks tend to be more accurate)")
def _macs(context):
    return lambda arch: context.costs.measure(arch)["macs"]


@score("params", "parameters (baseline)")
def _params(context):
    return lambda arch: context.costs.measure(arch)["params"]


PREDICTOR_SAMPLES = 100


@score("fox_predictor", f"FOX-NAS: a linear predictor fitted on the supernet top-1 of {PREDICTOR_SAMPLES} random "
       "architectures (seeded, not the table's); costs those evaluations (not computed unless named)",
       needs_data=True, default=False)
def _fox_predictor(context):
    from ..sample.samplers import UniformSampler
    from .predictor import for_space
    space = context.supernet.space
    rng, draw = np.random.default_rng(0), UniformSampler(space)
    archs = [draw(rng) for _ in range(PREDICTOR_SAMPLES)]
    scores = [_evaluated(context, a)["accuracy"] for a in archs]
    model = for_space(space, space.gene_choices(), context.costs).fit([a.genes for a in archs], scores)
    return lambda arch: float(model.predict([arch.genes])[0])


def default_scores():
    return tuple(name for name, s in SCORES.items() if s.default)


@dataclass(frozen=True)
class RankingSettings:
    supernet: str
    truth: str                           # the table (truth.jsonl) or its run folder
    space: str = None                    # only for a supernet file without its .json
    rec_train: str = None                # the data of the search split (none: the embedded digits)
    rec_train_idx: str = None
    rec_val: str = None
    rec_val_idx: str = None
    data_dir: str = None
    digits_view: str = "default"
    num_classes: int = None
    update_bn_images: int = None         # as the search: min(20000, the rest)
    search_val_images: int = None        # as the search: min(10000, 1/5 of training)
    search_on_val: bool = False
    batch_size: int = 128                # per device
    scores: tuple = field(default_factory=default_scores)
    top_k: str = "5,10%,25%"
    top_k_given: bool = False            # a given top-k that does not fit the table is refused, not dropped
    resamples: int = 2000
    bootstrap_seed: int = 0
    save_dir: str = None                 # default logs/rank-<supernet run folder>
    plots: bool = True

    def __post_init__(self):
        unknown = [s for s in self.scores if s not in SCORES]
        if unknown or not self.scores:
            what = f"unknown score {unknown[0]}" if unknown else "no score given"
            raise UserError(f"{what}; choose from {', '.join(SCORES)}", settings="scores")
        if self.resamples < 100:
            raise UserError(f"{self.resamples} bootstrap resamples are too few for a 95% interval; use "
                            "1000 or more", settings="resamples")
        if self.batch_size < 1:
            raise UserError("the batch size must be at least 1", settings="batch_size")


class RankingRun:
    """Scores of one supernet against one table (see the module docstring)."""

    def __init__(self, settings, contexts=None):
        import mxnet as mx
        self.settings = settings
        self.contexts = list(contexts or [mx.cpu()])
        self.run = None

    def prepare(self):
        """Check everything before anything is written: the table, the supernet (its space is the
        table's, its weights finite), top-k, the data and the split."""
        s = self.settings
        rows = read_table(s.truth)
        self.supernet, _ = load_model(s.supernet, kind="supernet", space=s.space, ctx=self.contexts[:1])
        space = self.supernet.space
        self.rows = [r for r in rows if r.seeds]
        if len(self.rows) < 3:
            raise UserError(f"the table {s.truth} has results for {len(self.rows)} architectures; a ranking "
                            "needs at least 3")
        table_space = self.rows[0].arch.space
        try:
            self.archs = [r.arch.on(space) for r in self.rows]
        except UserError:
            raise UserError(f"the table {s.truth} holds architectures of space {table_space.name!r}, but the "
                            f"supernet {s.supernet} is of space {space.name!r}; score a table of its space"
                            ) from None
        for name, param in self.supernet.collect_params().items():
            if not np.isfinite(param.data(self.contexts[0]).asnumpy()).all():
                raise UserError(f"the supernet {s.supernet} holds NaN or infinite weights ({name}): its training "
                                "diverged; train it again (e.g. with a lower learning rate)")
        self.truth = np.array([r.top1_mean for r in self.rows])
        self.ks = agreement.resolve_ks(s.top_k, len(self.rows), explicit=s.top_k_given)
        self.costs = CostModel(space)
        self.dataset = self.plan = None
        if any(SCORES[name].needs_data for name in s.scores):
            self.dataset = resolve_dataset(rec_train=s.rec_train, rec_train_idx=s.rec_train_idx, rec_val=s.rec_val,
                                           rec_val_idx=s.rec_val_idx, data_dir=s.data_dir, digits_view=s.digits_view,
                                           num_classes=s.num_classes or space.num_classes)
            self.plan = plan_search_split(self.dataset, s.update_bn_images, s.search_val_images, s.search_on_val)
            trained_on = self.rows[0].recipe.get("dataset", {}).get("name")
            if trained_on and trained_on != self.dataset.name:
                log.warning("the table was trained on %r, the supernet is scored on %r", trained_on,
                            self.dataset.name)
        self.save_dir = Path(s.save_dir or f"logs/rank-{Path(s.supernet).resolve().parent.name}")
        return self

    def open(self, overwrite=False, args=None):
        self.run = open_run(self.save_dir, args or asdict(self.settings), False, overwrite, log_name="ranking.log",
                            outputs=OUTPUTS + tuple(f"{name}.png" for name in SCORES))
        return self

    def scores(self):
        """{score name: array over the table's architectures}."""
        s = self.settings
        context = ScoreContext(self.supernet, self.costs)
        if self.plan is not None:
            data = load_search_data(self.dataset, self.plan, self.supernet.space.input_size, progress=True)
            context.evaluator = CandidateEvaluator(self.supernet, data, self.contexts,
                                                   s.batch_size * len(self.contexts))
        out = {}
        for name in s.scores:
            fn = SCORES[name].make(context)
            values = np.array([float(fn(a)) for a in progress_bar(self.archs, True, name)])
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise UserError(f"the score {name} of {self.archs[bad[0]]} is {values[bad[0]]}: the supernet "
                                f"{s.supernet} does not give finite {name} scores; check its training")
            out[name] = values
            log.info("%s scored %d architectures", name, len(values))
        return out

    def execute(self):
        """Score, compare, write the records; returns the summary (also ranking.json)."""
        s = self.settings
        scores = self.scores()
        rng = np.random.default_rng(s.bootstrap_seed)
        seeds = max(len(r.seeds) for r in self.rows)
        full = [r.top1 for r in self.rows if len(r.seeds) == seeds]       # the rows with every seed
        noise = (agreement.noise_floor(full, np.random.default_rng(s.bootstrap_seed), s.resamples)
                 if len(full) >= 2 else None)
        results = {name: agreement.agreement(values, self.truth, self.ks, rng, s.resamples)
                   for name, values in scores.items()}
        summary = {"supernet": s.supernet, "truth": s.truth, "architectures": len(self.rows),
                   "seeds_per_architecture": sorted({len(r.seeds) for r in self.rows}),
                   "recipe_key": self.rows[0].recipe_key, "ks": self.ks, "resamples": s.resamples,
                   "search_split": None if self.plan is None else {
                       "images": len(self.plan.split_keys), "calibration_images": len(self.plan.calibration_keys),
                       "source": self.plan.source},
                   "scores": results, "noise_floor": noise}
        self.summary = summary
        if self.run is not None:
            for i, row in enumerate(self.rows):
                self.run.append({"arch": str(row.arch), "true_top1_mean": row.top1_mean,
                                 "true_top1_std": row.top1_std, "seeds": list(row.seeds),
                                 **{n: float(v[i]) for n, v in scores.items()}}, "scores.jsonl")
            self.run.file("ranking.json").write_text(json.dumps(_finite(summary), indent=2) + "\n")
            self.run.file("ranking.md").write_text(self.markdown() + "\n")
            if s.plots:
                from .plots import plot_score_vs_truth
                std = np.array([r.top1_std or 0.0 for r in self.rows])
                for name, values in scores.items():
                    plot_score_vs_truth(values, self.truth, std, name, results[name]["kendall_tau"],
                                        self.run.file(f"{name}.png"), unit=_unit(name))
        return summary

    def markdown(self):
        """The comparison as a markdown table (ranking.md, and what the command prints)."""
        summary = self.summary
        ks = summary["ks"]
        head = ["score", "Kendall tau", "Spearman rho"] + [f"precision@{k}" for k in ks]
        lines = [f"Scores of `{summary['supernet']}` against the mean top-1 of `{summary['truth']}` "
                 f"({summary['architectures']} architectures; 95% bootstrap intervals over {summary['resamples']} "
                 "resamples of the architectures)", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for name, r in summary["scores"].items():
            cells = [f"`{name}`", _cell(r["kendall_tau"]), _cell(r["spearman_rho"])]
            cells += [_cell(r["precision_at_k"][str(k)]) for k in ks]
            lines.append("| " + " | ".join(cells) + " |")
        noise = summary["noise_floor"]
        if noise and noise["tau_resampled"]:
            boot, pair = noise["tau_resampled"], noise["tau_between_seeds"]
            cells = ["noise floor (seed bootstrap)", _cell({"value": boot["mean"], **boot}), "", *[""] * len(ks)]
            lines.append("| " + " | ".join(cells) + " |")
            lines += ["", f"Noise floor ({noise['architectures']} architectures x {noise['seeds']} seeds): a "
                      f"perfect score reaches a Kendall tau of about {boot['mean']:.3f} against this table (its "
                      "mean top-1 against a bootstrap of its own seeds)"
                      + (f"; two single seeds agree to tau {pair['mean']:.3f}" if pair else "")
                      + f". Seed std of top-1 per architecture: mean {100 * noise['seed_std_mean']:.2f} points; "
                      f"spread of the mean top-1 across architectures: {100 * noise['spread']:.2f} points."]
        elif noise:
            lines += ["", "Noise floor: one seed per architecture, so seed noise is not measured."]
        split = summary["search_split"]
        if split:
            source = {"val": "validation", "search": "search-file (never trained on)"}.get(split["source"],
                                                                                     "held-out training")
            lines += ["", f"Search split: {split['images']} {source} images, BN recalibrated on "
                      f"{split['calibration_images']} training images."]
        return "\n".join(lines)


def compare(folders):
    """Several rankings against one table (the run folders of `rank score`, one supernet each) as a
    markdown table: each supernet's training (epochs, seconds, the training process's peak resident
    memory, its random paths' last val top-1), the Kendall tau of every score and the precision@k
    of the first (the search's), with their intervals. What docs/ranking.md's table of supernet
    recipes is made of (scripts/supernet_recipes.sh)."""
    runs = []
    for folder in map(Path, folders):
        summary = folder / "ranking.json"
        if not summary.is_file():
            raise UserError(f"{folder} holds no ranking.json: give folders of python -m oneshot_nas.rank score")
        runs.append((folder, json.loads(summary.read_text())))
    keys = {r["recipe_key"] for _, r in runs}
    if len(keys) > 1:
        raise UserError(f"these rankings are against {len(keys)} different tables ({', '.join(sorted(keys))}); "
                        "compare supernets against one table")
    names = list(dict.fromkeys(n for _, r in runs for n in r["scores"]))
    first, ks = names[0], runs[0][1]["ks"]
    head = (["supernet", "epochs", "training s", "peak MB", "random paths, last val top-1"]
            + [f"tau `{n}`" for n in names] + [f"P@{k} `{first}`" for k in ks])
    lines = [f"Kendall tau and precision@k against the mean top-1 of `{runs[0][1]['truth']}` "
             f"({runs[0][1]['architectures']} architectures; 95% bootstrap intervals)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for folder, r in runs:
        run_dir = Path(r["supernet"]).parent
        epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                  if line.strip()] if (run_dir / "metrics.jsonl").is_file() else []
        validated = [e for e in epochs if e.get("val_top1_mean") is not None]
        seconds = sum(e.get("seconds", 0) + e.get("val_seconds", 0) for e in epochs)
        peak = max((e["peak_rss_mb"] for e in epochs if "peak_rss_mb" in e), default=None)
        cells = [f"`{run_dir.name}`", str(len(epochs)) if epochs else "?", f"{seconds:.0f}" if epochs else "?",
                 f"{peak:.0f}" if peak else "?", f"{100 * validated[-1]['val_top1_mean']:.1f}%" if validated else "n/a"]
        cells += [_cell(r["scores"][n]["kendall_tau"]) if n in r["scores"] else "" for n in names]
        at_k = r["scores"].get(first, {}).get("precision_at_k", {})
        cells += [_cell(at_k[str(k)]) if str(k) in at_k else "" for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(r):
    """'0.571 [-0.120, 1.000]'; n/a where a ranking is constant (a score equal for all, say)."""
    value, lo, hi = r["value"], r["lo"], r["hi"]
    if value != value:
        return "n/a"
    return f"{value:.3f}" + ("" if lo != lo else f" [{lo:.3f}, {hi:.3f}]")


def _finite(value):
    """`value` with NaN floats as None, so the JSON stays JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def _unit(name):
    return {"macs": "MACs", "params": "params"}.get(name)

