"""Search a trained supernet under budgets: python search_supernet.py --supernet SUPERNET.params [flags].

Joint evolution of the 20 block genes and 20 channel genes (or one half, the other frozen), every
candidate scored by top-1 on a split held out of the training set after exact BN recalibration, under
MACs / params / MicroNet-score / latency limits checked from lookup tables. Writes logs/<run>/
(args.json, settings.json, search.jsonl: one line per candidate, summary.json, plots) and the top-k
architectures as models/<run>-<rank>.json for the retrain and profile commands. --resume continues a
stopped search without re-scoring anything. Under MXNet's launcher (python -m oneshot_nas.launch -n N
-s S --launcher local|ssh ... python search_supernet.py --kv-store dist_sync ...) each worker scores
its share of every generation. See docs/search.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # run from anywhere without install

from oneshot_nas.cli import ArgumentParser, run, setup_logging  # noqa: E402
from oneshot_nas.cli.flags import (add_budget_flags, add_data_flags, add_search_split_flags, add_stage_flags,  # noqa: E402
                                   budget_from, finite, gpus_from)
from oneshot_nas.cost.model import METRICS  # noqa: E402
from oneshot_nas.search.settings import STRATEGIES, SearchSettings, default  # noqa: E402


def parse_args(argv):
    p = ArgumentParser(prog="search_supernet.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", required=True, help="SUPERNET.params (with SUPERNET.json beside it)")
    p.add_argument("--space", help="search space, only for a .params file without its .json")
    add_search_split_flags(add_data_flags(p, "data (default: the embedded digits)"))
    g = p.add_argument_group("devices")
    g.add_argument("--gpus", default="", help="GPU ids like 0,1; empty for the CPU")
    g.add_argument("--num-gpus", type=int, metavar="N", help="GPUs 0..N-1 (gluoncv's spelling of --gpus)")
    g.add_argument("--batch-size", type=int, default=128, help="images per device per step")
    g.add_argument("--kv-store", default="none", choices=("none", "dist_sync", "dist_device_sync"),
                   help="dist_*: each worker of MXNet's launcher scores its share of a generation")
    g = p.add_argument_group("strategy (docs/search.md)")
    g.add_argument("--strategy", "--search-mode", default=default("strategy"), choices=STRATEGIES,
                   help="genetic: evolution in the SPOS style; regularized: aging evolution; random: the baseline")
    g.add_argument("--score", default="acc", choices=("acc", "nll", "bn"),
                   help="acc: top-1 after BN recalibration; nll: minus the mean cross-entropy (finer than "
                        "top-1 on an easy split); bn: zero-cost BN-NAS score (no data), then the best "
                        "--rescore are scored by accuracy")
    g.add_argument("--rescore", type=int, default=default("rescore"), help="with --score bn: how many to rescore")
    g.add_argument("--population", "--population-size", type=int, default=default("population"),
                   help="candidates per generation (regularized: the population queue)")
    g.add_argument("--generations", "--search-iters", type=int, default=default("generations"),
                   help="generations (a resume may add more); regularized: a generation is --population children")
    g.add_argument("--max-candidates", type=int, default=default("max_candidates"), metavar="N",
                   help="stop after N scored candidates (cached ones count; default: no limit)")
    g.add_argument("--patience", type=int, default=default("patience"), metavar="G",
                   help="stop after G generations without a better best (default: never)")
    g.add_argument("--topk", type=int, default=default("topk"), help="genetic: parents are the best K so far")
    g.add_argument("--random-select", type=int, default=default("random_select"),
                   help="genetic: extra parents drawn at random from the rest (diversity)")
    g.add_argument("--crossover", type=int, default=default("crossover"),
                   help="genetic: children by crossover per generation")
    g.add_argument("--mutation", type=int, default=default("mutation"),
                   help="genetic: children by mutation per generation")
    g.add_argument("--mutation-prob", type=finite, default=default("mutation_prob"),
                   help="genetic: per-gene mutation probability (raised while the parents' neighbourhood runs dry)")
    g.add_argument("--sample-size", type=int, default=default("sample_size"),
                   help="regularized: members sampled per child; the best of them is its parent")
    g.add_argument("--children-per-step", type=int, default=default("children_per_step"),
                   help="regularized: children made and scored at once (e.g. the number of workers)")
    g.add_argument("--anneal-steps", type=int, default=default("anneal_steps"),
                   help="fox: moves of each simulated-annealing chain over the fitted predictor")
    g.add_argument("--rescore-top", type=int, default=default("rescore_top"), metavar="K",
                   help="re-score the best K on a second split; the winner is the best by the mean of both")
    g.add_argument("--rescore-images", type=int, default=default("rescore_images"), metavar="N",
                   help="images of the second split, the next of the fixed training order "
                        "(default: as many as the search split)")
    g.add_argument("--max-tries", type=int, default=default("max_tries"), help="cap of every sampling loop")
    g.add_argument("--seed", type=int, default=default("seed"), help="every random draw of the search follows it")
    g.add_argument("--search", default="both", choices=("both", "blocks", "channels"),
                   help="which genes evolve; the other half is frozen")
    g.add_argument("--fix-blocks-from", help="freeze the block genes at those of this architecture")
    g.add_argument("--fix-channels-from", help="freeze the channel genes at those of this architecture "
                                               "(default for --search blocks: scale 1.0)")
    add_budget_flags(p)
    add_stage_flags(p.add_argument_group("HURRICANE's two stages (scripts/hurricane.sh runs both)"))
    g = p.add_argument_group("objective")
    g.add_argument("--objective", default="acc", choices=("acc", "balanced"),
                   help="balanced: accuracy - weight x normalised cost (docs/search.md)")
    g.add_argument("--cost-metric", default="macs", choices=tuple(METRICS),
                   help="the cost the balanced objective trades accuracy against")
    g.add_argument("--cost-weight", type=finite, default=0.1,
                   help="accuracy points the whole cost range is worth, as a fraction")
    g = p.add_argument_group("outputs")
    g.add_argument("--save-dir", help="the run folder (default: logs/search-SPACE)")
    g.add_argument("--models-dir", default="models", help="where the top architectures are saved")
    g.add_argument("--topk-save", type=int, default=5, help="architectures saved as MODELS/<run>-<i>.json")
    g.add_argument("--resume", action="store_true", help="continue the search in --save-dir")
    g.add_argument("--overwrite", action="store_true", help="start again in --save-dir")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return p.parse_args(argv)


def settings_from(args):
    keys = set(SearchSettings.__dataclass_fields__) - {"limits", "plots", "progress"}
    return SearchSettings(**{k: getattr(args, k) for k in keys}, limits=budget_from(args),
                          plots=not args.no_plots, progress=not args.no_progress)


def main(argv=None):
    args = parse_args(argv)
    from oneshot_nas.runs.workers import Workers, contexts_from
    from oneshot_nas.search.run import SearchRun
    setup_logging()
    workers = Workers(args.kv_store)     # first: a worker that fails before joining hangs the others

    def prepare():                       # every check on every worker before anything is written
        search = SearchRun(settings_from(args), contexts_from(gpus_from(args)), workers)
        return search.prepare().open(args.resume, args.overwrite, vars(args))
    search = workers.check_inputs(prepare)
    summary = search.execute()
    if workers.is_chief:
        print(search.table())
    return summary


if __name__ == "__main__":
    run(main)
