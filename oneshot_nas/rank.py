"""python -m oneshot_nas.rank truth|score: can the supernet's ranking be trusted? (docs/ranking.md)

    # the ground truth: K architectures stratified over the budget's MACs, S seeds each, trained
    # standalone with the retraining recipe of train_subnet.py (start it in several processes to share)
    python -m oneshot_nas.rank truth --max-macs 0.45M --archs 60 --seeds 3
    # how well a supernet's scores rank them: Kendall tau, Spearman rho, precision@k (bootstrap 95%)
    python -m oneshot_nas.rank score --supernet logs/supernet-tiny/supernet.params --truth logs/truth-tiny

The work is done by oneshot_nas.train.groundtruth (GroundTruthRun) and oneshot_nas.search.ranking
(RankingRun); this module only maps flags onto them.
"""
import sys

from .cli import ArgumentParser, run as run_command, setup_logging
from .cli.flags import (RETRAIN_DEFAULTS, add_budget_flags, add_data_flags, add_search_split_flags,
                        add_training_flags, budget_from, devices_from, finite, settings_from)
from .cost.model import METRICS
from .space import PRESETS


def build_parser():
    parser = ArgumentParser(prog="python -m oneshot_nas.rank", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="truth|score|compare")

    truth = commands.add_parser("truth", help="train the ground-truth table",
                                description="Train K architectures x S seeds standalone from scratch and write "
                                            "the ground-truth table (truth.jsonl) and its noise floor. Run the "
                                            "same command in several processes to share the work.")
    g = truth.add_argument_group("the table")
    g.add_argument("--space", default="tiny", choices=tuple(PRESETS), help="search space")
    g.add_argument("--archs", type=int, default=60, help="K: architectures drawn (besides --include)")
    g.add_argument("--seeds", type=int, default=3, help="S: seeds per architecture (--seed, --seed + 1, ...)")
    g.add_argument("--bins", type=int, help="equal-width cost bins the architectures are drawn from "
                                            "(default min(K, 10))")
    g.add_argument("--stratify", default="macs", choices=tuple(METRICS), help="the cost the bins divide")
    g.add_argument("--arch-seed", type=int, default=0, help="seed of the draw of the architectures")
    g.add_argument("--include", action="append", default=[], metavar="ARCH",
                   help="an architecture file (models/NAME.json) or string always in the table (repeatable)")
    g.add_argument("--reference", action="append", default=[], metavar="NET",
                   help="a reference net trained by the same recipe and seeds into references.jsonl, what a "
                        "searched architecture must beat: plain-8-16-32-64 (a plain CNN of those widths) or a "
                        "gluoncv model name, e.g. mobilenetv2_0.25 (repeatable)")
    g.add_argument("--cache", help="the shared cache of results, per recipe (default "
                                   "$ONESHOT_NAS_CACHE/groundtruth, else ~/.cache/oneshot-nas/groundtruth)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the shared cache")
    g.add_argument("--claim-timeout", type=finite, default=600.0,
                   help="seconds after which a claim of a process on another host that stopped touching it "
                        "is taken over")
    add_budget_flags(truth, device_blocks=False)
    add_training_flags(truth, **RETRAIN_DEFAULTS, save_dir=None, sessions=False)    # train_subnet.py's

    score = commands.add_parser("score", help="score a supernet's ranking against a table",
                                description="Score the table's architectures with every score of the search "
                                            "and compare each ranking with the true one.")
    score.add_argument("--supernet", required=True, help="SUPERNET.params (with SUPERNET.json beside it)")
    score.add_argument("--truth", required=True, help="the table (truth.jsonl) or its run folder")
    score.add_argument("--space", help="search space, only for a .params file without its .json")
    add_search_split_flags(add_data_flags(score, "data of the search split (default: the embedded digits)"))
    g = score.add_argument_group("devices")
    g.add_argument("--gpus", default="", help="GPU ids like 0,1; empty for the CPU")
    g.add_argument("--batch-size", type=int, default=128, help="images per device per step")
    g = score.add_argument_group("comparison")
    g.add_argument("--scores", help="comma-separated scores (default: supernet_top1, supernet_nll, bn_score, "
                                    "macs, params; also fox_predictor, FOX-NAS's linear predictor, when named)")
    g.add_argument("--top-k", help="k of precision@k: counts and percentages of the table (default 5,10%%,25%%, "
                                   "those below the table's size)")
    g.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the architectures")
    g.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap")
    g = score.add_argument_group("outputs")
    g.add_argument("--save-dir", help="the run folder (default logs/rank-<the supernet's folder>)")
    g.add_argument("--overwrite", action="store_true", help="start again in --save-dir")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    compare = commands.add_parser("compare", help="compare the rankings of several supernets against one table",
                                  description="One markdown table of several `score` run folders (one supernet "
                                              "each, one table): their training and the Kendall tau of every score.")
    compare.add_argument("rankings", nargs="+", metavar="FOLDER", help="run folders of the score command")
    compare.add_argument("--out", help="also write the table to this file")
    return parser


def truth_main(args):
    from .train.groundtruth import GroundTruthRun, TruthSettings
    settings = TruthSettings(
        space=args.space, num_classes=args.num_classes, archs=args.archs, seeds=args.seeds, bins=args.bins,
        arch_seed=args.arch_seed, stratify=args.stratify, include=tuple(args.include),
        references=tuple(args.reference), limits=budget_from(args),
        baseline=args.baseline, bits=args.bits, latency_table=args.latency_table, init=args.init,
        rec_train=args.rec_train, rec_train_idx=args.rec_train_idx, rec_val=args.rec_val,
        rec_val_idx=args.rec_val_idx, data_dir=args.data_dir, digits_view=args.digits_view, kv_store=args.kv_store,
        cache="" if args.no_cache else args.cache, claim_timeout=args.claim_timeout, save_dir=args.save_dir,
        progress=False if args.no_progress else None)
    table = GroundTruthRun(settings, settings_from(args), devices_from(args)).prepare()
    table.open(args.overwrite, vars(args))
    summary = table.execute()
    print(table.text(summary))
    return summary


def score_main(args):
    from .runs.workers import contexts_from
    from .search.ranking import RankingRun, RankingSettings, default_scores
    scores = tuple(s.strip() for s in args.scores.split(",") if s.strip()) if args.scores else default_scores()
    settings = RankingSettings(
        supernet=args.supernet, truth=args.truth, space=args.space, rec_train=args.rec_train,
        rec_train_idx=args.rec_train_idx, rec_val=args.rec_val, rec_val_idx=args.rec_val_idx,
        data_dir=args.data_dir, digits_view=args.digits_view, num_classes=args.num_classes, update_bn_images=args.update_bn_images,
        search_val_images=args.search_val_images, search_on_val=args.search_on_val, batch_size=args.batch_size,
        scores=scores, top_k=args.top_k or RankingSettings.top_k, top_k_given=args.top_k is not None,
        resamples=args.resamples, bootstrap_seed=args.bootstrap_seed, save_dir=args.save_dir,
        plots=not args.no_plots)
    ranking = RankingRun(settings, contexts_from(args.gpus)).prepare().open(args.overwrite, vars(args))
    summary = ranking.execute()
    print(ranking.markdown())
    return summary


def compare_main(args):
    from pathlib import Path
    from .search.ranking import compare
    text = compare(args.rankings)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return text


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging()
    return {"truth": truth_main, "score": score_main, "compare": compare_main}[args.command](args)


if __name__ == "__main__":
    run_command(main, sys.argv[1:])
