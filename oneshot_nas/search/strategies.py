"""Search strategies over any discrete gene space: genetic (evolution) search and random search.

A strategy knows only genes, a score function and a constraint function, never a network:
- `choices[i]` is the number of values gene i can take (0..n-1), or a sequence of allowed values
  (a one-value sequence freezes the gene);
- `score_many(list of genes) -> list of scores` (higher is better); a score is a float or a dict
  with a 'score' key and any other fields to keep in the history. `score_fn(genes)` scores one at a
  time when batching does not matter;
- `constraint_fn(genes) -> bool | Verdict`; a Verdict also says how far outside the budget a
  candidate is, so an infeasible budget fails with the nearest values seen.

Each candidate is scored once: candidates are keyed by `key_fn(genes)` (the canonical architecture
string for architectures), a key is never drawn twice in one run, and a `cache` of earlier records
(a stopped run's history) is consulted before scoring. The strategies draw from `rng` the same way
whether a score came from the cache or not, so a resumed run replays the stopped one exactly and
continues from where it stopped without re-scoring anything.
"""
import logging
from dataclasses import dataclass, field

from ..errors import UserError
from ..cost.limits import Verdict
from ..sample.genes import crossover, mutate, random_genes

log = logging.getLogger(__name__)


def as_verdict(result):
    return result if isinstance(result, Verdict) else Verdict(bool(result), violation=0.0 if result else 1.0)


def default_key(genes):
    return ",".join(str(g) for g in genes)


@dataclass
class History:
    """Everything a search scored, in order: `records` (one dict per candidate: key, genes,
    generation, score and the score function's other fields) and `generations` (lists of records)."""
    records: list = field(default_factory=list)
    generations: list = field(default_factory=list)
    stopped: str = ""                 # why the search ended early ('' if it ran every generation)

    def ranked(self):
        return sorted(self.records, key=lambda r: -r["score"])

    def top(self, k):
        return self.ranked()[:k]

    @property
    def best(self):
        return self.ranked()[0] if self.records else None

    def summary(self):
        """Best and mean score per generation."""
        return [{"generation": g, "candidates": len(recs),
                 "best": max(r["score"] for r in recs), "mean": sum(r["score"] for r in recs) / len(recs),
                 "best_so_far": max(r["score"] for gen in self.generations[:g + 1] for r in gen)}
                for g, recs in enumerate(self.generations) if recs]


class _Run:
    """The state shared by both strategies: what was drawn, what is cached, how to score."""

    def __init__(self, choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries,
                 on_scored, on_generation):
        if (score_fn is None) == (score_many is None):
            raise ValueError("give exactly one of score_fn (one candidate) or score_many (a list)")
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        self.choices = list(choices)
        self.score_many = score_many or (lambda batch: [score_fn(g) for g in batch])
        self.constraint_fn, self.key_fn = constraint_fn or (lambda genes: True), key_fn or default_key
        self.cache, self.max_tries = dict(cache or {}), max_tries
        self.on_scored, self.on_generation = on_scored, on_generation
        self.seen = set()
        self.history = History()

    def draw(self, make, rng, what, strict=False):
        """A new feasible candidate from `make(rng)`, at most `max_tries` draws, or None. With
        `strict` (the first draws of a search), a loop that saw nothing feasible at all raises,
        naming the nearest candidate seen; otherwise running dry only ends that step."""
        nearest, duplicates = None, 0
        for _ in range(self.max_tries):
            genes = tuple(make(rng))
            key = self.key_fn(genes)
            if key in self.seen:
                duplicates += 1
                continue
            verdict = as_verdict(self.constraint_fn(genes))
            if verdict.ok:
                self.seen.add(key)
                return genes
            if nearest is None or verdict.violation < nearest.violation:
                nearest = verdict
        if not strict or duplicates or nearest is None:
            return None
        raise UserError(_infeasible_message(self.max_tries, what, nearest))

    def score(self, batch, generation):
        """Records for `batch` (genes drawn this generation), scoring only what is not cached."""
        keys = [self.key_fn(g) for g in batch]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        fresh = self.score_many([batch[i] for i in todo]) if todo else []
        if len(fresh) != len(todo):
            raise ValueError(f"the score function returned {len(fresh)} scores for {len(todo)} candidates")
        new = {}
        for i, result in zip(todo, fresh):
            record = dict(result) if isinstance(result, dict) else {"score": result}
            if "score" not in record:
                raise ValueError("a score dict needs a 'score' key")
            record.update(key=keys[i], genes=list(batch[i]), generation=generation)
            record["score"] = float(record["score"])
            new[i] = record
        records = []
        for i, key in enumerate(keys):
            record = new[i] if i in new else {**self.cache[key], "key": key, "genes": list(batch[i]),
                                              "generation": generation}
            records.append(record)
        if new and self.on_scored:
            self.on_scored([new[i] for i in sorted(new)])
        self.history.records += records
        self.history.generations.append(records)
        if self.on_generation:
            self.on_generation(generation, records, self.history)
        return records

    def randoms(self, count, rng, strict=False):
        out = []
        for _ in range(count):
            genes = self.draw(lambda r: random_genes(self.choices, r), rng, "random candidates",
                              strict and not out)
            if genes is None:
                break
            out.append(genes)
        return out


def _infeasible_message(tries, what, nearest):
    values = ", ".join(f"{k} {_fmt(v)}" for k, v in nearest.values.items())
    reasons = "; ".join(nearest.reasons) or "the constraints"
    return (f"gave up after {tries} {what}: none met {reasons}. The nearest seen had "
            f"{values or 'no recorded values'}; widen the budget or free more genes")


def _fmt(value):
    """Counts in millions, small numbers as they are."""
    if isinstance(value, (int, float)) and abs(value) >= 1e4:
        return f"{value / 1e6:.2f}M"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def first_feasible(choices, rng, constraint_fn, max_tries=10000):
    """A random feasible candidate, or the 'gave up ... nearest seen' UserError: a cheap check of
    a joint budget before any scoring starts."""
    run = _Run(choices, lambda genes: 0.0, None, constraint_fn, None, None, max_tries, None, None)
    return run.draw(lambda r: random_genes(run.choices, r), rng, "random candidates", strict=True)


def genetic_search(choices, rng, *, score_fn=None, score_many=None, constraint_fn=None,
                   population=50, generations=20, topk=10, crossover_num=25, mutation_num=25,
                   mutation_prob=0.1, random_select=0, key_fn=None, cache=None, max_tries=10000,
                   on_scored=None, on_generation=None):
    """Evolution in the SPOS style. Generation 0 is `population` random feasible candidates. Each
    later generation draws its parents from the `topk` best candidates scored so far plus
    `random_select` others picked at random (for diversity), then makes `mutation_num` mutants
    (each gene redrawn with probability `mutation_prob`) and `crossover_num` uniform crossovers of
    two parents, all feasible and never seen before, and fills up to `population` with random
    candidates. Returns the History."""
    if population < 1 or generations < 1 or topk < 1:
        raise UserError("population, generations and topk must be at least 1")
    if crossover_num < 0 or mutation_num < 0 or random_select < 0 or not 0 <= mutation_prob <= 1:
        raise UserError("crossover and mutation counts must be >= 0 and the mutation probability in [0, 1]")
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation)
    run.score(run.randoms(population, rng, strict=True), 0)
    for generation in range(1, generations):
        parents = _parents(run.history, topk, random_select, rng)
        batch = []
        for _ in range(mutation_num):
            child = run.draw(lambda r: mutate(parents[r.integers(len(parents))], run.choices, r,
                                              mutation_prob), rng, "mutations")
            if child is None:
                break
            batch.append(child)
        if len(parents) > 1:
            for _ in range(crossover_num):
                child = run.draw(lambda r: _cross(parents, r), rng, "crossovers")
                if child is None:
                    break
                batch.append(child)
        batch += run.randoms(max(0, population - len(batch)), rng)
        if not batch:
            run.history.stopped = f"generation {generation}: no unseen feasible candidate is left"
            log.info("search stopped early: %s", run.history.stopped)
            break
        run.score(batch, generation)
    return run.history


def _parents(history, topk, random_select, rng):
    ranked = history.ranked()
    parents = [tuple(r["genes"]) for r in ranked[:topk]]
    rest = ranked[topk:]
    if random_select and rest:
        picks = rng.choice(len(rest), size=min(random_select, len(rest)), replace=False)
        parents += [tuple(rest[i]["genes"]) for i in sorted(picks)]
    return parents


def _cross(parents, rng):
    i, j = rng.choice(len(parents), size=2, replace=False)
    return crossover(parents[i], parents[j], rng)


def random_search(choices, rng, *, score_fn=None, score_many=None, constraint_fn=None,
                  population=50, generations=20, key_fn=None, cache=None, max_tries=10000,
                  on_scored=None, on_generation=None):
    """The baseline: `population` x `generations` distinct random feasible candidates, scored in
    batches of `population` (a 'generation' here is only a batch). Returns the History."""
    if population < 1 or generations < 1:
        raise UserError("population and generations must be at least 1")
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation)
    for generation in range(generations):
        batch = run.randoms(population, rng, strict=generation == 0)
        if not batch:
            run.history.stopped = f"batch {generation}: no unseen feasible candidate is left"
            break
        run.score(batch, generation)
    return run.history
