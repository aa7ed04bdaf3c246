"""A search run: a trained supernet searched under a budget, with the records it leaves behind.

`SearchSettings` holds everything that decides a search; `SearchRun` checks it all before anything
is written (`prepare`), opens or resumes the run folder (`open`), then runs the strategy (`run`):
every candidate is scored by top-1 on the search split after exact BN recalibration (or by its
zero-cost BN score), under limits checked from the cost model. The folder gets args.json,
settings.json (the fingerprint a resume must match), search.jsonl (one line per candidate, written as
they come, so a stopped search resumes without re-scoring anything), summary.json and plots; the top
architectures go to MODELS/<run>-<rank>.json. The CLI (search_supernet.py) only parses flags into
SearchSettings; tests and benchmarks drive SearchRun directly.
"""
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..agreement import kendall_tau_test
from ..cost.latency import LatencyTable
from ..cost.limits import Limits
from ..cost.model import CostModel, format_value
from ..data.slices import load_search_data, plan_search_split
from ..data.sources import resolve_dataset
from ..errors import UserError
from ..runs.fingerprint import check_same, fingerprint
from ..runs.modelfile import load_model
from ..runs.rundir import open_run, read_jsonl
from ..runs.workers import Workers
from ..sample.learned import LearnedDistribution
from ..sample.stages import fixed_positions, hold
from ..space import Architecture, load_architecture, save_architecture
from .objective import Objective
from .scoring import CandidateEvaluator, SupernetScorer
from .settings import SearchSettings, run_strategy  # noqa: F401  (SearchSettings: importable from here)
from .strategies import first_feasible
from .zero_cost import BNScores

log = logging.getLogger(__name__)
OUTPUTS = ("search.jsonl", "summary.json", "search.log")   # what starting again in a folder removes
SECOND_SPLIT = "second-split"      # the stage of re-scoring records in search.jsonl
SECOND_FIELDS = ("first_score", "second_score", "first_accuracy", "second_accuracy")


def learned_distribution(meta, space, choices, path):
    """The path distribution the supernet learned in training (--learn-sampling), on `choices`."""
    state = (meta.get("record") or {}).get("distribution")
    if state is None:
        raise UserError(f"--strategy learned draws candidates from the distribution a supernet learned in "
                        f"training, and {path} has none: train it with --learn-sampling, or choose another "
                        "strategy", settings="strategy")
    dist = LearnedDistribution(space)
    dist.load_state_dict(state)
    dist.allow(choices)
    return dist


def gene_choices(space, search, fix_blocks_from=None, fix_channels_from=None, device_blocks=None):
    """What each gene may take (SearchSpace.gene_choices) for a search of `search` ('both',
    'blocks' or 'channels'), with the other half frozen at an architecture's genes; free blocks
    only among `device_blocks` (a tuple of ids per position) if given."""
    if search == "blocks" and fix_blocks_from or search == "channels" and fix_channels_from:
        raise UserError(f"a search of the {search} cannot also freeze them", settings=f"fix_{search}_from")
    allowed = {}
    for half, path in (("blocks", fix_blocks_from), ("channels", fix_channels_from)):
        if path:
            arch = load_architecture(path)
            if arch.space != space:
                raise UserError(f"{path} is an architecture of space {arch.space.name!r}, but the "
                                f"supernet is of space {space.name!r}")
            allowed[half] = list(getattr(arch, half))
    if search == "channels" and not fix_blocks_from:
        raise UserError("a search of the channels freezes the blocks: give an architecture to take "
                        "them from", settings="fix_blocks_from")
    if search == "blocks" and not fix_channels_from:
        if 1.0 not in space.channel_scales:
            raise UserError("a search of the blocks freezes the channels at scale 1.0, which this space "
                            "lacks; give an architecture to take them from", settings="fix_channels_from")
        allowed["channels"] = (space.channel_scales.index(1.0),)
    if device_blocks is not None and "blocks" not in allowed:
        allowed["blocks"] = list(device_blocks)
    if len(allowed) == len(space.gene_groups):
        raise UserError("every gene is frozen (blocks and channels both fixed): nothing to search")
    return space.gene_choices(**allowed)


class SearchRun:
    """One search of a supernet (see the module docstring). `contexts` score the candidates;
    `workers` (runs.workers.Workers) share every generation out across processes."""

    def __init__(self, settings, contexts=None, workers=None):
        import mxnet as mx
        self.settings = settings
        self.contexts = list(contexts or [mx.cpu()])
        self.workers = workers or Workers()
        self.run = None
        self.records = []

    # ----- before anything is written ------------------------------------------------------------
    def prepare(self):
        """Check everything: the supernet, the genes, the budget (exactly feasible per limit, then
        jointly by sampling), the objective and the split. Bad input raises one UserError."""
        s = self.settings
        self.supernet, meta = load_model(s.supernet, kind="supernet", space=s.space, ctx=self.contexts[:1])
        self.space = space = self.supernet.space
        latency = LatencyTable.load(s.latency_table, space) if s.latency_table else None
        device = latency.fastest_blocks(s.device_blocks) if s.device_blocks is not None else None
        self.choices = gene_choices(space, s.search, s.fix_blocks_from, s.fix_channels_from, device)
        self.choices = hold(space, self.choices, fixed_positions(space, s.free_positions, s.fixed_from))
        self.learned = None
        if s.strategy == "learned":
            self.learned = learned_distribution(meta, space, self.choices, s.supernet)
        self.costs = CostModel(space, latency=latency, reference=s.baseline, bits=s.bits)
        self.limits = Limits(self.costs, s.limits)
        self.limits.check_feasible(self.choices)                       # each limit alone, exactly
        first_feasible(self.choices, np.random.default_rng(s.seed), self.limits, s.max_tries)  # jointly
        self.objective = Objective.make(s.objective, self.limits, self.choices, s.cost_metric, s.cost_weight)
        self.dataset = self.plan = None
        if s.score != "bn" or s.rescore > 0:
            self.dataset = resolve_dataset(rec_train=s.rec_train, rec_train_idx=s.rec_train_idx,
                                           rec_val=s.rec_val, rec_val_idx=s.rec_val_idx, data_dir=s.data_dir, digits_view=s.digits_view,
                                           num_classes=s.num_classes or space.num_classes,
                                           input_size=space.input_size)
            self.plan = plan_search_split(self.dataset, s.update_bn_images, s.search_val_images,
                                          s.search_on_val, second_split=s.rescore_top > 0,
                                          second_split_images=s.rescore_images)
        self.save_dir = Path(s.save_dir or f"logs/search-{space.name}")
        return self

    def open(self, resume=False, overwrite=False, args=None):
        """The run folder (written by the chief worker only) and, to resume, the records of the
        stopped search, after checking that it was started with the same settings."""
        settings_file = self.save_dir / "settings.json"
        if resume:
            if not settings_file.is_file():
                raise UserError(f"cannot resume {self.save_dir}: it has no settings.json (it was made by an "
                                "older version, or did not start); start it again")
            check_same(json.loads(settings_file.read_text()), fingerprint(self.settings),
                       f"the search in {self.save_dir}")
            self.records = read_jsonl(self.save_dir / "search.jsonl")
        if self.workers.is_chief:
            self.run = open_run(self.save_dir, args or asdict(self.settings), resume, overwrite,
                                log_name="search.log", outputs=OUTPUTS)
            if not resume:
                settings_file.write_text(json.dumps(fingerprint(self.settings), indent=2) + "\n")
        return self

    # ----- the search ------------------------------------------------------------------------------
    def search(self):
        """Score candidates with the strategy; returns (history, ranked records)."""
        s, who = self.settings, self.workers.who()
        log.info("%ssearching %s (%s) by %s search: budget %s; objective %s", who, s.supernet, self.space.name,
                 s.strategy, self.limits.describe(), self.objective.describe())
        if s.strategy == "regularized" and self.workers.num_workers > s.children_per_step:
            log.warning("%sregularized evolution scores %d children at a time, so %d of the %d workers wait at "
                        "every step; make children_per_step %d", who, s.children_per_step,
                        self.workers.num_workers - s.children_per_step, self.workers.num_workers,
                        self.workers.num_workers)
        evaluator = None
        if self.plan is not None:
            data = load_search_data(self.dataset, self.plan, self.space.input_size,
                                    progress=self.workers.is_chief and s.progress)
            evaluator = CandidateEvaluator(self.supernet, data, self.contexts, s.batch_size * len(self.contexts))
        self.bn_scores = BNScores(self.supernet)
        scorer = SupernetScorer(self.space, self.costs, self.objective, self.bn_scores,
                                evaluator if s.score != "bn" else None, self.workers,
                                progress=self.workers.is_chief and s.progress, by_nll=s.score == "nll")
        history = self._evolve(scorer)
        ranked = history.ranked()
        if s.score == "bn" and s.rescore > 0:
            ranked = self._rescore(ranked[:s.rescore], evaluator)
        if s.rescore_top > 0:
            second = CandidateEvaluator(self.supernet, data.on_second_split(), self.contexts,
                                        s.batch_size * len(self.contexts))
            ranked = self._second_split(ranked, second)
        return history, ranked

    def _evolve(self, scorer):
        s, who = self.settings, self.workers.who()

        def on_scored(new):
            if self.run is not None:    # the arch string says all the genes do
                for r in new:
                    self.run.append({"stage": "search", **{k: v for k, v in r.items() if k not in ("key", "genes")}},
                                    "search.jsonl")

        def on_generation(g, recs, history):
            best = max(recs, key=lambda r: r["score"])
            log.info("%sgeneration %d: %d candidates, best score %.4f (%s), mean %.4f", who, g, len(recs),
                     best["score"], best["arch"], np.mean([r["score"] for r in recs]))
            scorer.label = f"generation {g + 1}"

        cache = {r["arch"]: r for r in self.records if r.get("stage") == "search"}
        if cache:
            log.info("%sresuming: %d candidates already scored will not be scored again", who, len(cache))
        scorer.label = "generation 0"
        extra = {"draw": self.learned.sample} if self.learned is not None else {}   # what a strategy needs
        if s.strategy == "fox":
            extra = {"predictor": self.predictor}
        if s.strategy == "hurricane":
            extra = {"positions": self.space.num_positions}
        common = dict(score_many=scorer, constraint_fn=self.limits, **extra,
                      key_fn=lambda g: str(self.space.decode(g)), cache=cache, on_scored=on_scored,
                      on_generation=on_generation)
        return run_strategy(s, self.choices, **common)

    def predictor(self):
        """FOX-NAS's predictor for this search's space and genes (search/predictor.for_space)."""
        from .predictor import for_space
        return for_space(self.space, self.choices, self.costs)

    def _explain(self, records):
        """predictor.md and predictor.png: the fitted predictor's coefficients (FOX-NAS's explanation)."""
        from ..agreement import kendall_tau
        model = self.predictor().fit([r["genes"] for r in records], [r["score"] for r in records])
        coefs = model.coefficients()
        tau = float(kendall_tau(model.predict([r["genes"] for r in records]), [r["score"] for r in records]))
        lines = [f"# What the predictor learned ({len(records)} scored candidates)", "",
                 "A ridge regression of the search score on these features (search/predictor.py); each "
                 "weight is what one unit of the feature adds to the predicted score, all else equal (an "
                 "indicator: choosing that value). Largest effect first. Kendall tau of its predictions "
                 f"against the scores it was fitted on: {tau:.3f}.", "",
                 "| feature | weight |", "|---|---|"] + [f"| {name} | {w:+.4f} |" for name, w in coefs]
        self.run.file("predictor.md").write_text("\n".join(lines) + "\n")
        if self.settings.plots:
            from .plots import plot_coefficients
            plot_coefficients(coefs[:24], self.run.file("predictor.png"), f"{self.space.name}: predictor weights")

    def _rescore(self, top, evaluator):
        """Score the best candidates by BN score again by accuracy (cached across a resume)."""
        done = {r["arch"]: r for r in self.records if r.get("stage") == "rescore"}
        todo = [r for r in top if r["arch"] not in done]
        scorer = SupernetScorer(self.space, self.costs, self.objective, self.bn_scores, evaluator,
                                self.workers, progress=self.run is not None and self.settings.progress)
        scorer.label = "rescoring by accuracy"
        fresh = scorer([Architecture.from_str(r["arch"], self.space).genes for r in todo]) if todo else []
        for old, new in zip(todo, fresh):
            new["generation"] = old["generation"]
            done[new["arch"]] = new
            if self.run is not None:
                self.run.append({"stage": "rescore", **new}, "search.jsonl")
        return sorted((done[r["arch"]] for r in top), key=lambda r: -r["score"])

    def _second_split(self, ranked, evaluator):
        """Score the best `rescore_top` again on the second split (cached across a resume); they come
        first, ranked by the mean of both scores, the winner among them; the others follow."""
        s = self.settings
        top, rest = ranked[:s.rescore_top], ranked[s.rescore_top:]
        done = {r["arch"]: r for r in self.records if r.get("stage") == SECOND_SPLIT}
        todo = [r for r in top if r["arch"] not in done]
        scorer = SupernetScorer(self.space, self.costs, self.objective, self.bn_scores, evaluator,
                                self.workers, progress=self.run is not None and s.progress, by_nll=s.score == "nll")
        scorer.label = f"re-scoring the best {len(top)} on the second split"
        fresh = scorer([Architecture.from_str(r["arch"], self.space).genes for r in todo]) if todo else []
        for old, new in zip(todo, fresh):
            new["generation"] = old["generation"]
            done[new["arch"]] = new
            if self.run is not None:
                self.run.append({"stage": SECOND_SPLIT, **new}, "search.jsonl")
        both = [{**r, "first_score": r["score"], "second_score": done[r["arch"]]["score"],
                 "first_accuracy": r["accuracy"], "second_accuracy": done[r["arch"]]["accuracy"],
                 "score": (r["score"] + done[r["arch"]]["score"]) / 2,
                 "accuracy": (r["accuracy"] + done[r["arch"]]["accuracy"]) / 2} for r in top]
        both.sort(key=lambda r: -r["score"])
        log.info("%sre-scored the best %d on the second split (%d images): the winner by the mean of both "
                 "scores is %s (%.4f, %.4f); the best on the search split alone was %s", self.workers.who(),
                 len(top), len(evaluator.data.split), both[0]["arch"], both[0]["first_score"],
                 both[0]["second_score"], top[0]["arch"])
        return both + rest

    def execute(self):
        """Search, then write summary.json, the top architectures and the plots; returns the summary."""
        s = self.settings
        started = time.time()
        history, ranked = self.search()
        tau = _tau(ranked if s.score == "bn" else history.records)
        keep = ("arch", "score", "accuracy", *self.costs.metrics, "bn_score", "generation", *SECOND_FIELDS)
        summary = {"candidates": len(history.records), "generations": len(history.generations),
                   "stopped_early": history.stopped or None, "strategy": s.strategy,
                   "rescored_on_second_split": s.rescore_top, "budget": self.limits.describe(),
                   "limits": self.limits.to_dict(),
                   "objective": self.objective.describe(), "score": s.score,
                   "kendall_tau_bn_vs_accuracy": tau, "seconds": round(time.time() - started, 2),
                   "progress": history.summary(),
                   "top": [{k: r[k] for k in keep if k in r} for r in ranked[:10]]}
        log.info("%sbest: %s score %.4f", self.workers.who(), ranked[0]["arch"], ranked[0]["score"])
        self.ranked, self.tau = ranked, tau
        if self.run is not None:
            summary["saved"] = [str(p) for p in self._save_models(ranked[:s.topk_save])]
            self.run.file("summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            if s.strategy == "fox":
                self._explain(history.records)
            if s.plots:
                from .plots import plot_search
                plot_search(self.run.read("search.jsonl"), self.run.path,
                            title=f"{self.run.path.name}: {self.space.name}")
        return summary

    def _save_models(self, top):
        s, name = self.settings, self.save_dir.resolve().name
        paths = []
        for i, r in enumerate(top, 1):
            record = {k: r.get(k) for k in ("accuracy", "score", *self.costs.metrics, "bn_score", "generation")}
            record.update({k: r[k] for k in SECOND_FIELDS if k in r})
            record.update(rank=i, source_run=str(self.save_dir), supernet=str(s.supernet),
                          search_split="validation" if s.search_on_val else "held-out training",
                          micronet_baseline=s.baseline, objective=s.objective)
            paths.append(save_architecture(Path(s.models_dir) / f"{name}-{i}.json",
                                           Architecture.from_str(r["arch"], self.space), record))
        return paths

    def table(self, rows=None):
        """The best candidates as a text table (what the CLI prints at the end)."""
        rows = self.ranked[:max(self.settings.topk_save, 1)] if rows is None else rows
        latency = "latency_ms" in self.costs.metrics
        bitops = "bitops" in self.costs.metrics
        lines = [f"{'#':>2} {'architecture':58s} {'score':>7s} {'top-1':>6s} {'MACs':>8s} {'params':>7s} "
                 f"{'MicroNet':>8s}" + (f" {'ms':>6s}" if latency else "") + (f" {'BitOps':>8s}" if bitops else "")]
        for i, r in enumerate(rows, 1):
            top1 = "n/a" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f}%"
            lines.append(f"{i:>2} {r['arch']:58s} {r['score']:7.4f} {top1:>6s} "
                         f"{format_value(r['macs'], 'macs'):>8s} {format_value(r['params'], 'params'):>7s} "
                         f"{r['micronet_score']:8.4f}" + (f" {r['latency_ms']:6.2f}" if latency else "")
                         + (f" {format_value(r['bitops'], 'bitops'):>8s}" if bitops else ""))
        if self.tau:
            lines.append(f"Kendall tau (BN score vs accuracy) on {self.tau['candidates']} candidates: "
                         f"{self.tau['tau']:.3f} (p = {self.tau['p_value']:.2g})")
        lines.append(f"MicroNet score against {self.settings.baseline} at {self.settings.bits} bits; "
                     "MACs and params as the papers count them")
        return "\n".join(lines)


def _tau(records):
    pairs = [(r["bn_score"], r["accuracy"]) for r in records if r.get("accuracy") is not None]
    result = kendall_tau_test(*zip(*pairs)) if len(pairs) >= 3 else None
    return None if result is None else {"tau": result[0], "p_value": result[1], "candidates": len(pairs)}
