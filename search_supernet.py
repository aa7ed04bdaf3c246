"""Search a trained supernet under budgets: python search_supernet.py --supernet SUPERNET.params [flags].

Joint evolution of the 20 block genes and 20 channel genes (or one half, the other frozen), every
candidate scored by top-1 on a split held out of the training set after exact BN recalibration, under
MACs / params / MicroNet-score / latency limits checked from lookup tables. Writes logs/<run>/
(args.json, search.jsonl: one line per candidate, summary.json, plots) and the top-k architectures
as models/<run>-<rank>.json for the retrain and profile commands. --resume continues a stopped
search without re-scoring anything. Under MXNet's launcher (python -m oneshot_nas.launch -n N -s S
--launcher local|ssh ... python search_supernet.py --kv-store dist_sync ...) each worker scores its
share of every generation. See docs/search.md.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # run from anywhere without install

from oneshot_nas.cli import run, setup_logging  # noqa: E402
from oneshot_nas.errors import UserError  # noqa: E402

log = logging.getLogger("search")
# flags that change what a candidate scores or which candidates are drawn: a resumed search must
# keep them (generations may grow; where the outputs go and how many are saved may change)
REPLAY_FLAGS = ("supernet", "space", "rec_train", "rec_train_idx", "rec_val", "rec_val_idx", "data_dir",
                "num_classes", "batch_size",
                "update_bn_images", "search_val_images", "search_on_val", "score", "strategy",
                "population", "topk", "crossover", "mutation", "mutation_prob", "random_select",
                "seed", "max_tries", "search", "fix_blocks_from", "fix_channels_from", "max_flops",
                "min_flops", "max_params", "min_params", "max_score", "baseline", "bits",
                "max_latency_ms", "latency_table", "objective", "cost_metric", "cost_weight")


def number(text):
    """'330M', '3.5e6', '1.2G', '800K' -> float."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(str(text)[-1:].upper(), 1)
    try:
        return float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (suffixes K, M, G allowed)") from None


def parse_args(argv):
    p = argparse.ArgumentParser(prog="search_supernet.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--supernet", required=True, help="SUPERNET.params (with SUPERNET.json beside it)")
    p.add_argument("--space", help="search space, only for a .params file without its .json")
    g = p.add_argument_group("data (none: the embedded digits)")
    for flag in ("rec-train", "rec-train-idx", "rec-val", "rec-val-idx", "data-dir"):
        g.add_argument(f"--{flag}")
    g.add_argument("--num-classes", type=int, help="default: the space's")
    g.add_argument("--update-bn-images", type=int,
                   help="training images for BN recalibration (default min(20000, all not held out))")
    g.add_argument("--search-val-images", type=int,
                   help="images held out of the training set to rank candidates (default "
                        "min(10000, 1/5 of the training set))")
    g.add_argument("--search-on-val", action="store_true",
                   help="rank on the validation set instead (the final validation figure is then optimistic)")
    g = p.add_argument_group("devices")
    g.add_argument("--gpus", default="", help="GPU ids like 0,1; empty for the CPU")
    g.add_argument("--batch-size", type=int, default=128, help="images per device per step")
    g.add_argument("--kv-store", default="none", choices=("none", "dist_sync", "dist_device_sync"),
                   help="dist_*: each worker of MXNet's launcher scores its share of a generation")
    g = p.add_argument_group("strategy")
    g.add_argument("--strategy", default="genetic", choices=("genetic", "random"))
    g.add_argument("--score", default="acc", choices=("acc", "bn"),
                   help="acc: top-1 after BN recalibration; bn: zero-cost BN-NAS score (no data), "
                        "then the best --rescore are scored by accuracy")
    g.add_argument("--rescore", type=int, default=10, help="with --score bn: how many to rescore")
    g.add_argument("--population", type=int, default=50)
    g.add_argument("--generations", type=int, default=20)
    g.add_argument("--topk", type=int, default=10, help="parents: the best K so far")
    g.add_argument("--random-select", type=int, default=0,
                   help="extra parents drawn at random from the rest (diversity)")
    g.add_argument("--crossover", type=int, default=25, help="children by crossover per generation")
    g.add_argument("--mutation", type=int, default=25, help="children by mutation per generation")
    g.add_argument("--mutation-prob", type=float, default=0.1, help="per-gene mutation probability")
    g.add_argument("--max-tries", type=int, default=10000, help="cap of every sampling loop")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--search", default="both", choices=("both", "blocks", "channels"),
                   help="which genes evolve; the other half is frozen")
    g.add_argument("--fix-blocks-from", help="freeze the block genes at those of this architecture JSON")
    g.add_argument("--fix-channels-from", help="freeze the channel genes at those of this architecture "
                                               "JSON (default for --search blocks: scale 1.0)")
    g = p.add_argument_group("budget (from lookup tables)")
    g.add_argument("--max-flops", type=number, help="paper MACs per image, e.g. 330M")
    g.add_argument("--min-flops", type=number, help="paper MACs per image")
    g.add_argument("--max-params", type=number, help="paper parameters, e.g. 3.5M")
    g.add_argument("--min-params", type=number)
    g.add_argument("--max-score", type=float, help="MicroNet score against --baseline")
    g.add_argument("--baseline", default="mobilenetv2-1.4",
                   choices=("oneshot", "mobilenetv2-1.4", "mobilenetv3-large"))
    g.add_argument("--bits", type=int, default=32, choices=(32, 16, 8), help="MicroNet precision")
    g.add_argument("--max-latency-ms", type=float, help="needs --latency-table")
    g.add_argument("--latency-table", help="latency table JSON of this space and device")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", default="acc", choices=("acc", "balanced"),
                   help="balanced: accuracy - weight x normalised cost (docs/search.md)")
    g.add_argument("--cost-metric", default="macs", choices=("macs", "params", "score", "latency_ms"))
    g.add_argument("--cost-weight", type=float, default=0.1)
    g = p.add_argument_group("outputs")
    g.add_argument("--save-dir", help="the run folder (default: logs/search-SPACE)")
    g.add_argument("--models-dir", default="models")
    g.add_argument("--topk-save", type=int, default=5, help="architectures saved as models/<run>-<i>.json")
    g.add_argument("--resume", action="store_true", help="continue the search in --save-dir")
    g.add_argument("--overwrite", action="store_true", help="start again in --save-dir")
    g.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.max_latency_ms is not None and not args.latency_table:
        p.error("--max-latency-ms needs --latency-table PATH")
    if args.objective == "balanced" and args.score == "bn":
        p.error("--objective balanced needs accuracies; it cannot be used with --score bn")
    return args


# ----- setting up -----------------------------------------------------------------------------------
def load_supernet(path, contexts, space_name=None):
    """The trained SuperNet at `path` on `contexts`; any mismatch is one clear message."""
    from oneshot_nas.runs.modelfile import build_model, json_beside, load_parameters, read_meta
    from oneshot_nas.space import get_space
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--supernet {path} does not exist; train one with train_supernet.py")
    if json_beside(path).is_file():
        meta = read_meta(path)
        if meta.get("kind") != "supernet":
            raise UserError(f"{path} holds a {meta.get('kind')} ({json_beside(path).name} says so), not a "
                            "supernet; search needs the weight-sharing supernet")
        if space_name and space_name != meta["space"]:
            raise UserError(f"--space {space_name} disagrees with {json_beside(path).name}, which says the "
                            f"supernet is of space {meta['space']!r}; drop --space")
    elif space_name:
        meta = {"kind": "supernet", "space": get_space(space_name).name}
    else:
        raise UserError(f"{path} has no {json_beside(path).name} beside it saying which space it is; "
                        "pass --space NAME")
    net = build_model(meta)
    load_parameters(net, path, contexts[:1])   # weights are read from one device; paths are copied
    return net


def gene_choices(space, search, fix_blocks_from=None, fix_channels_from=None):
    """Per gene: the number of values, or a one-value tuple for a frozen gene."""
    from oneshot_nas.space import load_architecture
    n = space.num_positions
    blocks, channels = [space.num_blocks] * n, [space.num_scales] * n
    if search == "blocks" and fix_blocks_from or search == "channels" and fix_channels_from:
        raise UserError(f"--search {search} evolves the {search}; it cannot also freeze them "
                        f"(drop --fix-{search}-from)")
    for flag, path, half in (("--fix-blocks-from", fix_blocks_from, "blocks"),
                             ("--fix-channels-from", fix_channels_from, "channels")):
        if path:
            arch = load_architecture(path)
            if arch.space != space:
                raise UserError(f"{flag} {path} is an architecture of space {arch.space.name!r}, "
                                f"but the supernet is of space {space.name!r}")
            frozen = [(v,) for v in getattr(arch, half)]
            blocks, channels = (frozen, channels) if half == "blocks" else (blocks, frozen)
    if search == "channels" and not fix_blocks_from:
        raise UserError("--search channels freezes the blocks: give them with "
                        "--fix-blocks-from models/NAME.json")
    if search == "blocks" and not fix_channels_from:
        if 1.0 not in space.channel_scales:
            raise UserError("--search blocks: this space has no channel scale 1.0 to freeze the "
                            "channels at; give them with --fix-channels-from")
        channels = [(space.channel_scales.index(1.0),)] * n
    if all(isinstance(c, tuple) for c in blocks + channels):
        raise UserError("every gene is frozen (blocks and channels both fixed): nothing to search")
    return blocks + channels


def budget_limits(args):
    limits = {"macs": (args.min_flops, args.max_flops), "params": (args.min_params, args.max_params),
              "score": (None, args.max_score), "latency_ms": (None, args.max_latency_ms)}
    return {k: v for k, v in limits.items() if v != (None, None)}


def previous_records(args):
    """The records of a stopped search in --save-dir (for --resume), after checking that the flags
    that decide scores and draws are the ones it ran with."""
    from oneshot_nas.runs.rundir import read_jsonl
    folder = Path(args.save_dir)
    if not args.resume or not (folder / "args.json").is_file():
        return []          # (RunDir.create explains a --resume without a run)
    original = json.loads((folder / "args.json").read_text())
    changed = [k for k in REPLAY_FLAGS if original.get(k) != vars(args).get(k)]
    if changed:
        flags = ", ".join(f"--{k.replace('_', '-')} (was {original.get(k)!r}, now {vars(args).get(k)!r})"
                          for k in changed)
        raise UserError(f"--resume continues the same search, but these flags differ from "
                        f"{folder / 'args.json'}: {flags}; use the original values or another --save-dir")
    return read_jsonl(folder / "search.jsonl")


# ----- running ----------------------------------------------------------------------------------
def setup(args, contexts, workers):
    """Everything checked before the run folder is touched: the supernet, the genes, the budget
    (exactly feasible per limit, then jointly by sampling), the objective and the split. Returns a
    dict of them."""
    import numpy as np
    from oneshot_nas.cost.constraints import Constraints, CostModel, LatencyModel, Objective, micronet_reference
    from oneshot_nas.data.sources import resolve_dataset
    from oneshot_nas.search.evaluate import plan_search_split
    from oneshot_nas.search.strategies import first_feasible
    supernet = load_supernet(args.supernet, contexts, args.space)
    space = supernet.space
    choices = gene_choices(space, args.search, args.fix_blocks_from, args.fix_channels_from)
    latency = LatencyModel.load(args.latency_table, space) if args.latency_table else None
    costs = CostModel(space, reference=micronet_reference(args.baseline), bits=args.bits, latency=latency)
    constraints = Constraints(costs, budget_limits(args))
    constraints.check_feasible(choices)           # each limit alone, exactly
    first_feasible(choices, np.random.default_rng(args.seed), constraints, args.max_tries)   # jointly
    objective = Objective.make(args.objective, constraints, choices, args.cost_metric, args.cost_weight)
    dataset = plan = None
    if args.score == "acc" or args.rescore > 0:
        if workers.rank > 0:
            workers.barrier()       # the chief packs the embedded data alone (same cache folder)
        try:
            dataset = resolve_dataset(
                rec_train=args.rec_train, rec_train_idx=args.rec_train_idx, rec_val=args.rec_val,
                rec_val_idx=args.rec_val_idx, data_dir=args.data_dir,
                num_classes=args.num_classes or space.num_classes)
        finally:                    # (even when it fails: the others then fail the same way)
            if workers.rank == 0 and workers.size > 1:
                workers.barrier()
        plan = plan_search_split(dataset, args.update_bn_images, args.search_val_images, args.search_on_val)
    return dict(supernet=supernet, space=space, choices=choices, costs=costs, constraints=constraints,
                objective=objective, dataset=dataset, plan=plan)


def open_run(args, chief):
    """The run folder (only the chief worker writes), with the log file."""
    from oneshot_nas.runs.rundir import RunDir
    if not chief:
        return RunDir(args.save_dir)
    run = RunDir.create(args.save_dir, vars(args), resume=args.resume, overwrite=args.overwrite)
    if args.overwrite and not args.resume:
        for name in ("search.jsonl", "summary.json"):
            run.file(name).unlink(missing_ok=True)
    setup_logging(run.file("search.log"))
    return run


def main(argv=None):
    args = parse_args(argv)
    from oneshot_nas.runs.workers import contexts_from
    from oneshot_nas.search.evaluate import CandidateEvaluator, SupernetScorer, Workers, load_search_data
    from oneshot_nas.search.zero_cost import BNScores

    setup_logging()
    workers = Workers(_kvstore(args.kv_store))
    chief = workers.rank == 0
    contexts = contexts_from(args.gpus)       # (devices.py: the same --gpus as training)
    error = None
    try:       # bad input stops every worker, not only the one that sees it
        s = setup(args, contexts, workers)
        args.save_dir = args.save_dir or f"logs/search-{s['space'].name}"
        records = previous_records(args)
        run = open_run(args, chief)
    except UserError as err:
        error = err
    if not workers.all_ok(error is None):
        raise error or UserError("another worker stopped on bad input (see its message)")
    log.info("%ssearching %s (%s): budget %s; objective %s", _who(workers), args.supernet, s["space"].name,
             s["constraints"].describe(), s["objective"].describe())
    evaluator = None
    if s["plan"] is not None:
        data = load_search_data(s["dataset"], s["plan"], s["space"].input_size, progress=chief)
        evaluator = CandidateEvaluator(s["supernet"], data, contexts, args.batch_size * len(contexts))
    s["bn_scores"] = BNScores(s["supernet"])
    scorer = SupernetScorer(s["space"], s["costs"], s["objective"], s["bn_scores"],
                            evaluator if args.score == "acc" else None, workers, progress=chief)
    started = time.time()
    history = evolve(args, s, scorer, records, run if chief else None, workers)
    ranked = history.ranked()
    if args.score == "bn" and args.rescore > 0:
        ranked = _rescore(ranked[:args.rescore], records, run if chief else None, s, evaluator, workers)
    tau = _tau(ranked if args.score == "bn" else history.records)
    summary = _summary(args, history, ranked, tau, s["constraints"], s["objective"], time.time() - started)
    log.info("%sbest: %s score %.4f", _who(workers), ranked[0]["arch"], ranked[0]["score"])
    if chief:
        summary["saved"] = [str(p) for p in _save_models(ranked[:args.topk_save], args, s["space"])]
        run.file("summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if not args.no_plots:
            from oneshot_nas.search.plots import plot_search
            plot_search(run.read("search.jsonl"), run.path, title=f"{run.path.name}: {s['space'].name}")
        print(_table(ranked[:max(args.topk_save, 1)], tau, args))
    return summary


def evolve(args, s, scorer, records, run, workers):
    """Run the strategy; new records go to search.jsonl as they come (when `run` is given)."""
    import numpy as np
    from oneshot_nas.search.strategies import genetic_search, random_search
    who, space = _who(workers), s["space"]

    def on_scored(new):
        if run is not None:    # the arch string says all the genes do
            for r in new:
                run.append({"stage": "search", **{k: v for k, v in r.items() if k not in ("key", "genes")}},
                           "search.jsonl")

    def on_generation(g, recs, history):
        best = max(recs, key=lambda r: r["score"])
        log.info("%sgeneration %d: %d candidates, best score %.4f (%s), mean %.4f", who, g, len(recs),
                 best["score"], best["arch"], np.mean([r["score"] for r in recs]))
        scorer.label = f"generation {g + 1}"

    cache = {r["arch"]: r for r in records if r.get("stage") == "search"}
    if cache:
        log.info("%sresuming: %d candidates already scored will not be scored again", who, len(cache))
    scorer.label = "generation 0"
    common = dict(score_many=scorer, constraint_fn=s["constraints"], population=args.population,
                  generations=args.generations, key_fn=lambda g: str(_arch(space, g)), cache=cache,
                  max_tries=args.max_tries, on_scored=on_scored, on_generation=on_generation)
    rng = np.random.default_rng(args.seed)
    if args.strategy == "random":
        return random_search(s["choices"], rng, **common)
    return genetic_search(s["choices"], rng, topk=args.topk, crossover_num=args.crossover,
                          mutation_num=args.mutation, mutation_prob=args.mutation_prob,
                          random_select=args.random_select, **common)


def _who(workers):
    return f"[worker {workers.rank}/{workers.size}] " if workers.size > 1 else ""


def _kvstore(kind):
    if kind == "none":
        return None
    if "DMLC_ROLE" not in os.environ:
        raise UserError(f"--kv-store {kind} needs MXNet's launcher, e.g. python -m oneshot_nas.launch -n 2 "
                        "-s 1 --launcher local python search_supernet.py ...; without it, drop --kv-store")
    import mxnet as mx
    return mx.kv.create(kind)


def _arch(space, genes):
    from oneshot_nas.sample.sampling import genes_arch
    return genes_arch(space, genes)


def _rescore(top, records, run, s, evaluator, workers):
    """Score the best candidates by BN score again by accuracy (cached across --resume)."""
    from oneshot_nas.search.evaluate import SupernetScorer
    from oneshot_nas.space import Architecture
    done = {r["arch"]: r for r in records if r.get("stage") == "rescore"}
    todo = [r for r in top if r["arch"] not in done]
    scorer = SupernetScorer(s["space"], s["costs"], s["objective"], s["bn_scores"], evaluator, workers,
                            progress=run is not None)
    scorer.label = "rescoring by accuracy"
    fresh = scorer([_genes(Architecture.from_str(r["arch"], s["space"])) for r in todo]) if todo else []
    for old, new in zip(todo, fresh):
        new["generation"] = old["generation"]
        done[new["arch"]] = new
        if run is not None:
            run.append({"stage": "rescore", **new}, "search.jsonl")
    return sorted((done[r["arch"]] for r in top), key=lambda r: -r["score"])


def _genes(arch):
    return tuple(arch.blocks) + tuple(arch.channels)


def _tau(records):
    from oneshot_nas.search.zero_cost import kendall_tau
    pairs = [(r["bn_score"], r["accuracy"]) for r in records if r.get("accuracy") is not None]
    result = kendall_tau(*zip(*pairs)) if len(pairs) >= 3 else None
    return None if result is None else {"tau": result[0], "p_value": result[1], "candidates": len(pairs)}


def _summary(args, history, ranked, tau, constraints, objective, seconds):
    keep = ("arch", "score", "accuracy", "macs", "params", "micronet_score", "latency_ms", "bn_score",
            "generation")
    return {"candidates": len(history.records), "generations": len(history.generations),
            "stopped_early": history.stopped or None, "budget": constraints.describe(),
            "objective": objective.describe(), "score": args.score,
            "kendall_tau_bn_vs_accuracy": tau, "seconds": round(seconds, 2),
            "progress": history.summary(), "top": [{k: r.get(k) for k in keep} for r in ranked[:10]]}


def _save_models(top, args, space):
    from oneshot_nas.space import Architecture, save_architecture
    name = Path(args.save_dir).resolve().name
    paths = []
    for i, r in enumerate(top, 1):
        record = {k: r.get(k) for k in ("accuracy", "score", "macs", "params", "micronet_score",
                                        "latency_ms", "bn_score", "generation")}
        record.update(rank=i, source_run=str(args.save_dir), supernet=str(args.supernet),
                      search_split="validation" if args.search_on_val else "held-out training",
                      micronet_baseline=args.baseline, objective=args.objective)
        paths.append(save_architecture(Path(args.models_dir) / f"{name}-{i}.json",
                                       Architecture.from_str(r["arch"], space), record))
    return paths


def _table(rows, tau, args):
    lines = [f"{'#':>2} {'architecture':58s} {'score':>7s} {'top-1':>6s} {'MACs':>8s} {'params':>7s} "
             f"{'MicroNet':>8s} {'ms':>6s}"]
    for i, r in enumerate(rows, 1):
        top1 = "n/a" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f}%"
        ms = "" if r.get("latency_ms") is None else f"{r['latency_ms']:.2f}"
        lines.append(f"{i:>2} {r['arch']:58s} {r['score']:7.4f} {top1:>6s} {r['macs'] / 1e6:7.1f}M "
                     f"{r['params'] / 1e6:6.2f}M {r['micronet_score']:8.4f} {ms:>6s}")
    if tau:
        lines.append(f"Kendall tau (BN score vs accuracy) on {tau['candidates']} candidates: "
                     f"{tau['tau']:.3f} (p = {tau['p_value']:.2g})")
    lines.append(f"MicroNet score against {args.baseline} at {args.bits} bits; MACs and params as the "
                 "papers count them")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
