"""Search strategies against a table that scores every member of a small space, with noise.

    python -m oneshot_nas.bench strategies [--table benchmarks/strategies-tiny.jsonl] [--seeds 100]
    python -m oneshot_nas.bench strategies --make-table --supernet X.params --out PATH

The table (a separate, resumable step: 50 minutes on 2 shared cores) scores every architecture of a
subspace of `tiny`: the quickstart's winner with 5 block genes free (4 blocks each) and 2 channel
genes free (2 scales each), 4,096 members. Each member is scored as a search with `--rescore-top`
scores it: top-1 on the search split after exact BN recalibration (search.scoring.CandidateEvaluator,
default split, second split and calibration of data.slices.plan_search_split). A seeded sample of
members is also scored on the second split and on as many validation images: the spread of one
member's three scores (each slice's mean shift removed) is the noise of a score.

The benchmark itself is table look-ups (no MXNet, seconds to minutes): each strategy (random,
genetic, regularized) runs once per seed over the same 40 genes a search sees (the frozen ones as
one-value genes); a query returns the member's table score plus Gaussian noise of the measured
size. Reported, with bootstrap 95% intervals over seeds: queries until a member of the top 1% and
of the top 0.1% (by table score) has been scored, and the regret after 100 and 300 queries (the
best table score minus the table score of the candidate the strategy would pick, the best by its
noisy scores, in top-1 points). Seeds 0..N-1 are the benchmark's; tuning used 1000-1399
(--seed-base 1000 --seeds 400). Results and how they were read: docs/search.md.
"""
import argparse
import hashlib
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..space import Architecture, get_space

log = logging.getLogger(__name__)
FORMAT = "oneshot-nas-strategy-table-v1"
TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "strategies-tiny.jsonl"
BASE = "tiny_B1201-0110-30311133-1203_C1020-1844-37369491-2859"    # the quickstart's winner
FREE_BLOCKS = (0, 4, 8, 12, 16)             # every block choice at the first block of each stage, and 12
FREE_CHANNELS = {9: (2, 7), 17: (2, 7)}      # channel scales 0.6 and 1.6
NOISE_SAMPLE = 512                           # members scored on two more slices (the noise estimate)


def subspace():
    """(space, choices): the 40 genes of the table's subspace, frozen ones as one-value genes."""
    space = get_space("tiny")
    base = Architecture.from_str(BASE, space)
    blocks = [tuple(range(space.num_blocks)) if p in FREE_BLOCKS else b for p, b in enumerate(base.blocks)]
    channels = [FREE_CHANNELS.get(p, c) for p, c in enumerate(base.channels)]
    return space, space.gene_choices(blocks=blocks, channels=channels)


def members(choices):
    """Every gene tuple of the subspace, in a fixed order."""
    return list(itertools.product(*[c if isinstance(c, (tuple, list)) else range(c) for c in choices]))


# ----- the table (MXNet) -------------------------------------------------------------------------------
def make_table(supernet, out, batch_size=128, noise_sample=NOISE_SAMPLE, data=None):
    """Score every member of the subspace into `out` (JSONL: a header, then one line per member),
    continuing a table that was stopped. `data` holds resolve_dataset's keyword arguments."""
    import mxnet as mx
    from ..data.slices import load_search_data, plan_search_split, val_slice
    from ..data.sources import resolve_dataset
    from ..runs.modelfile import load_model
    from ..search.scoring import CandidateEvaluator

    space, choices = subspace()
    net, _ = load_model(supernet, kind="supernet")
    if net.space.to_dict() != space.to_dict():
        raise UserError(f"the strategy table's subspace belongs to the tiny space; {supernet} is a supernet "
                        f"of space {net.space.name!r}; train one with sh scripts/train_supernet.sh")
    dataset = resolve_dataset(**(data or {}), num_classes=space.num_classes)
    plan = plan_search_split(dataset, second_split=True)
    slices = load_search_data(dataset, plan, space.input_size)
    val = val_slice(dataset, min(len(plan.split_keys), len(dataset.val.keys())), space.input_size)
    everyone = members(choices)
    sample = set(np.random.default_rng(0).choice(len(everyone), min(noise_sample, len(everyone)),
                                                 replace=False).tolist())
    header = {"format": FORMAT, "space": space.name, "base": BASE, "choices": choices,
              "members": len(everyone), "supernet": str(supernet),
              "supernet_md5": hashlib.md5(Path(supernet).read_bytes()).hexdigest(),
              "split_images": len(slices.split), "second_images": len(slices.second),
              "val_images": len(val), "calibration_images": len(slices.calibration),
              "noise_sample": len(sample)}
    out = Path(out)
    done = _resume_table(out, header)
    evaluator = CandidateEvaluator(net, slices, [mx.cpu()], batch_size)
    todo = [i for i, genes in enumerate(everyone) if str(space.decode(genes)) not in done]
    log.info("table %s: %d of %d members scored, %d to go", out, len(everyone) - len(todo), len(everyone),
             len(todo))
    start = time.perf_counter()
    with open(out, "a") as f:
        for n, i in enumerate(todo, 1):
            arch = space.decode(everyone[i])
            result = evaluator.evaluate(arch, also={"second": slices.second, "val": val} if i in sample else None)
            row = {"arch": str(arch), "accuracy": result["accuracy"], "correct": result["correct"]}
            if i in sample:
                row.update(second=result["accuracy_second"], val=result["accuracy_val"])
            f.write(json.dumps(row) + "\n")
            f.flush()
            if n % 50 == 0 or n == len(todo):
                rate = (time.perf_counter() - start) / n
                log.info("%d/%d members, %.2f s each, %.0f min to go", n, len(todo), rate,
                         rate * (len(todo) - n) / 60)
    return out


def _resume_table(out, header):
    """The archs already in `out` (after checking its header), or {} after writing the header."""
    if out.is_file() and out.stat().st_size:
        lines = out.read_text().splitlines()
        old, new = json.loads(lines[0]), json.loads(json.dumps(header))
        old["supernet"] = new["supernet"]          # the same file (by md5) may have moved
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise UserError(f"{out} is a table made differently ({', '.join(changed)} differ); give "
                            "another --out or remove it")
        rows = []
        for line in lines[1:]:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:      # the line being written when it stopped
                break
        out.write_text("\n".join(lines[:1 + len(rows)]) + "\n")
        return {r["arch"] for r in rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(header) + "\n")
    return set()


# ----- the benchmark (table look-ups, no MXNet) ------------------------------------------------------
class Table:
    """A finished table: every member's genes and score, and the noise of a score."""

    def __init__(self, path):
        lines = Path(path).read_text().splitlines()
        header = json.loads(lines[0])
        if header.get("format") != FORMAT:
            raise UserError(f"{path} is not a strategy table (made by --make-table)")
        rows = [json.loads(line) for line in lines[1:]]
        if len(rows) != header["members"]:
            raise UserError(f"{path} scores {len(rows)} of {header['members']} members; continue it with "
                            "--make-table (same --supernet and --out)")
        space = get_space(header["space"])
        self.header, self.path = header, Path(path)
        self.choices = [tuple(c) if isinstance(c, list) else c for c in header["choices"]]
        self.genes = [space.encode(Architecture.from_str(r["arch"], space)) for r in rows]
        self.index = {g: i for i, g in enumerate(self.genes)}
        self.truth = np.array([r["accuracy"] for r in rows])
        repeats = np.array([[r["accuracy"], r["second"], r["val"]] for r in rows if "second" in r])
        self.repeats = len(repeats)
        repeats -= repeats.mean(axis=0) - repeats[:, 0].mean()   # a slice's shift of every score ranks nothing
        self.noise = float(np.sqrt(repeats.var(axis=1, ddof=1).mean()))   # pooled per-member spread
        ranked = np.sort(self.truth)[::-1]
        self.best = ranked[0]
        self.top = {f: self.truth >= ranked[int(np.ceil(f * len(ranked))) - 1] for f in (0.01, 0.001)}


class _Enough(Exception):
    """Raised by the score function once a run has seen what the benchmark measures."""


def run_once(table, settings, seed, noise, horizon=300, rescore_top=0):
    """One search of the table: {queries_1, queries_0.1, regret_100, regret_300[, regret_rescored]}.
    Each query scores the member's table score plus N(0, noise); the run ends once it has made
    `horizon` queries and scored a top-0.1% member (or the space is exhausted)."""
    noise_rng = np.random.default_rng([seed, 1])
    queried, observed = [], []
    found = {f: None for f in table.top}

    def score(genes):
        i = table.index[genes]
        queried.append(i)
        observed.append(table.truth[i] + noise * noise_rng.standard_normal())
        for f, top in table.top.items():
            if found[f] is None and top[i]:
                found[f] = len(queried)
        if len(queried) >= horizon and found[0.001] is not None:
            raise _Enough
        return observed[-1]
    from dataclasses import replace
    from ..search.settings import run_strategy
    staged = settings.strategy == "hurricane"       # its stages split its generations: keep them
    extra = {"positions": get_space("tiny").num_positions} if staged else {}
    try:
        run_strategy(replace(settings, seed=seed, generations=settings.generations if staged else 10 ** 9,
                             max_candidates=len(table.truth), patience=None), table.choices, score_fn=score, **extra)
    except _Enough:
        pass
    out = {f"queries_{f * 100:g}%": found[f] or len(queried) for f in table.top}
    obs, truth = np.array(observed), table.truth[np.array(queried)]
    for n in (100, horizon):
        out[f"regret_{n}"] = 100 * (table.best - truth[np.argmax(obs[:n])])
    if rescore_top:           # the best K of the first `horizon` scored again, the winner by the mean
        top = np.argsort(-obs[:horizon], kind="stable")[:rescore_top]
        again = truth[top] + noise * noise_rng.standard_normal(len(top))
        out[f"regret_{horizon}_rescored"] = 100 * (table.best - truth[top[np.argmax((obs[top] + again) / 2)]])
    out["censored"] = found[0.001] is None
    return out


def bootstrap(values, rng, draws=10000):
    """(mean, low, high): the mean and its bootstrap 95% interval."""
    values = np.asarray(values, dtype=float)
    means = values[rng.integers(0, len(values), (draws, len(values)))].mean(axis=1)
    return values.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)


def parse_spec(spec):
    """'genetic' or 'genetic:topk=5,mutation_prob=0.2' -> SearchSettings (the CLI's defaults otherwise)."""
    from ..search.settings import SearchSettings, default
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in SearchSettings.__dataclass_fields__:
            raise UserError(f"{spec}: {key!r} is not a search setting")
        kind = type(default(key)) if default(key) is not None else int
        overrides[key] = kind(value)
    return SearchSettings(supernet="table", strategy=name, **overrides)


def benchmark(table, specs, seeds=100, seed_base=0, noise=None, horizon=300, rescore_top=10):
    """[(spec, {metric: (mean, low, high)}, censored runs)] over `seeds` seeds from `seed_base`."""
    noise = table.noise if noise is None else noise
    rows = []
    for spec in specs:
        settings = parse_spec(spec)
        runs = [run_once(table, settings, seed, noise, horizon, rescore_top)
                for seed in range(seed_base, seed_base + seeds)]
        boot = np.random.default_rng(0)
        metrics = {k: bootstrap([r[k] for r in runs], boot) for k in runs[0] if k != "censored"}
        rows.append((spec, metrics, sum(r["censored"] for r in runs)))
    return rows


def print_table(table, rows, seeds, seed_base, noise):
    h = table.header
    print(f"table {table.path.name}: {len(table.truth)} members of {h['space']} around {h['base']}, "
          f"scored by {h['supernet']} (md5 {h['supernet_md5'][:8]}) on {h['split_images']} held-out "
          f"images after BN recalibration on {h['calibration_images']}")
    print(f"best {100 * table.best:.2f}%; top 1% >= {100 * table.truth[table.top[0.01]].min():.2f}% "
          f"({table.top[0.01].sum()} members), top 0.1% >= {100 * table.truth[table.top[0.001]].min():.2f}% "
          f"({table.top[0.001].sum()}); noise of a score {100 * noise:.2f} points (pooled spread of "
          f"{table.repeats} members over 3 slices of {h['split_images']} images, slice shifts removed); "
          f"seeds {seed_base}..{seed_base + seeds - 1}; mean [95% bootstrap interval]")
    names = list(rows[0][1])
    print(f"{'strategy':24s} " + " ".join(f"{n:>22s}" for n in names) + "  not found")
    for spec, metrics, censored in rows:
        cells = [f"{m:8.1f} [{lo:5.1f}, {hi:5.1f}]" if n.startswith("queries") else
                 f"{m:8.2f} [{lo:5.2f}, {hi:5.2f}]" for n, (m, lo, hi) in metrics.items()]
        print(f"{spec:24s} " + " ".join(f"{c:>22s}" for c in cells) + f"  {censored:9d}")


def main(argv=None):
    from ..cli import run, setup_logging
    from ..cli.flags import add_data_flags
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench strategies",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-table", action="store_true", help="score every member into --out")
    parser.add_argument("--supernet", help="with --make-table: the tiny supernet (.params with its .json)")
    parser.add_argument("--out", help="with --make-table: the JSONL table (continued if it exists)")
    parser.add_argument("--batch-size", type=int, default=128, help="with --make-table")
    add_data_flags(parser, "with --make-table: data (default: the embedded digits)")
    parser.add_argument("--table", default=str(TABLE), help="the table to benchmark against")
    parser.add_argument("--strategies", nargs="+", default=["random", "genetic", "regularized"],
                        help="strategies, each with its search_supernet.py defaults unless changed, "
                             "e.g. genetic:topk=5,mutation_prob=0.2")
    parser.add_argument("--seeds", type=int, default=100, help="runs per strategy")
    parser.add_argument("--seed-base", type=int, default=0,
                        help="first seed (the reported figures use 0; tuning used 1000 and up)")
    parser.add_argument("--noise", type=float, help="noise of a score (default: the table's estimate)")
    parser.add_argument("--rescore-top", type=int, default=10,
                        help="also the regret when the best K are scored again and ranked by the mean")
    args = parser.parse_args(argv)
    setup_logging()

    def go(_):
        if args.make_table:
            if not args.supernet or not args.out:
                raise UserError("--make-table needs --supernet X.params and --out PATH")
            data = {k: getattr(args, k) for k in ("rec_train", "rec_train_idx", "rec_val", "rec_val_idx",
                                                  "data_dir")}
            make_table(args.supernet, args.out, args.batch_size, data=data)
            return
        logging.getLogger("oneshot_nas.search").setLevel(logging.WARNING)   # thousands of runs
        table = Table(args.table)
        noise = table.noise if args.noise is None else args.noise
        rows = benchmark(table, args.strategies, args.seeds, args.seed_base, noise, rescore_top=args.rescore_top)
        print_table(table, rows, args.seeds, args.seed_base, noise)
    run(go)
