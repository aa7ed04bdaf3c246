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
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # run from anywhere without install

from oneshot_nas.cli import run, setup_logging  # noqa: E402
from oneshot_nas.cli.flags import (add_budget_flags, add_data_flags, add_search_split_flags,  # noqa: E402
                                   budget_from)
from oneshot_nas.cost.model import METRICS  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="search_supernet.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--supernet", required=True, help="SUPERNET.params (with SUPERNET.json beside it)")
    p.add_argument("--space", help="search space, only for a .params file without its .json")
    add_search_split_flags(add_data_flags(p, "data (default: the embedded digits)"))
    g = p.add_argument_group("devices")
    g.add_argument("--gpus", default="", help="GPU ids like 0,1; empty for the CPU")
    g.add_argument("--batch-size", type=int, default=128, help="images per device per step")
    g.add_argument("--kv-store", default="none", choices=("none", "dist_sync", "dist_device_sync"),
                   help="dist_*: each worker of MXNet's launcher scores its share of a generation")
    g = p.add_argument_group("strategy")
    g.add_argument("--strategy", default="genetic", choices=("genetic", "random"),
                   help="genetic: evolution in the SPOS style; random: the baseline")
    g.add_argument("--score", default="acc", choices=("acc", "bn"),
                   help="acc: top-1 after BN recalibration; bn: zero-cost BN-NAS score (no data), "
                        "then the best --rescore are scored by accuracy")
    g.add_argument("--rescore", type=int, default=10, help="with --score bn: how many to rescore")
    g.add_argument("--population", type=int, default=50, help="candidates per generation")
    g.add_argument("--generations", type=int, default=20, help="generations (a resume may add more)")
    g.add_argument("--topk", type=int, default=10, help="parents: the best K so far")
    g.add_argument("--random-select", type=int, default=0,
                   help="extra parents drawn at random from the rest (diversity)")
    g.add_argument("--crossover", type=int, default=25, help="children by crossover per generation")
    g.add_argument("--mutation", type=int, default=25, help="children by mutation per generation")
    g.add_argument("--mutation-prob", type=float, default=0.1, help="per-gene mutation probability")
    g.add_argument("--max-tries", type=int, default=10000, help="cap of every sampling loop")
    g.add_argument("--seed", type=int, default=0, help="every random draw of the search follows it")
    g.add_argument("--search", default="both", choices=("both", "blocks", "channels"),
                   help="which genes evolve; the other half is frozen")
    g.add_argument("--fix-blocks-from", help="freeze the block genes at those of this architecture")
    g.add_argument("--fix-channels-from", help="freeze the channel genes at those of this architecture "
                                               "(default for --search blocks: scale 1.0)")
    add_budget_flags(p)
    g = p.add_argument_group("objective")
    g.add_argument("--objective", default="acc", choices=("acc", "balanced"),
                   help="balanced: accuracy - weight x normalised cost (docs/search.md)")
    g.add_argument("--cost-metric", default="macs", choices=tuple(METRICS),
                   help="the cost the balanced objective trades accuracy against")
    g.add_argument("--cost-weight", type=float, default=0.1,
                   help="accuracy points the whole cost range is worth, as a fraction")
    g = p.add_argument_group("outputs")
    g.add_argument("--save-dir", help="the run folder (default: logs/search-SPACE)")
    g.add_argument("--models-dir", default="models", help="where the top architectures are saved")
    g.add_argument("--topk-save", type=int, default=5, help="architectures saved as MODELS/<run>-<i>.json")
    g.add_argument("--resume", action="store_true", help="continue the search in --save-dir")
    g.add_argument("--overwrite", action="store_true", help="start again in --save-dir")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p.parse_args(argv)


def settings_from(args):
    from oneshot_nas.search.run import SearchSettings
    keys = set(SearchSettings.__dataclass_fields__) - {"limits", "plots"}
    return SearchSettings(**{k: getattr(args, k) for k in keys}, limits=budget_from(args),
                          plots=not args.no_plots)


def main(argv=None):
    args = parse_args(argv)
    from oneshot_nas.runs.workers import Workers, contexts_from
    from oneshot_nas.search.run import SearchRun
    setup_logging()
    workers = Workers(args.kv_store)     # first: a worker that fails before joining hangs the others

    def prepare():                       # every check on every worker before anything is written
        search = SearchRun(settings_from(args), contexts_from(args.gpus), workers)
        return search.prepare().open(args.resume, args.overwrite, vars(args))
    search = workers.check_inputs(prepare)
    summary = search.execute()
    if workers.is_chief:
        print(search.table())
    return summary


if __name__ == "__main__":
    run(main)
