"""Search strategies over any discrete gene space: genetic (evolution), regularized (aging)
evolution, random search, and FOX-NAS's predictor-guided simulated annealing.

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

Every strategy stops early, with `History.stopped` saying why, when `max_candidates` candidates are
scored (cached ones count; the last batch is cut to fit), when `patience` generations in a row bring
no better best, or when no unseen feasible candidate is left. Every record says how it was made
(`origin`: random, mutation, crossover), and `History.notes` keeps per generation how many draws hit
candidates seen before and whether the children's neighbourhood ran dry (see genetic_search).
"""
import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..agreement import kendall_tau
from ..errors import UserError
from ..cost.limits import Verdict
from ..sample.genes import crossover, free_genes, mutate, mutate_some, random_genes

log = logging.getLogger(__name__)
# A child draw that hits this many candidates seen before, and nothing new, finds the unseen part
# of its parents' neighbourhood exhausted (under 1% of its draws are new): it gives up and the
# strategy widens the neighbourhood, instead of spending max_tries draws on a dry well.
DRY_DRAWS = 100


def as_verdict(result):
    return result if isinstance(result, Verdict) else Verdict(bool(result), violation=0.0 if result else 1.0)


def default_key(genes):
    return ",".join(str(g) for g in genes)


@dataclass
class History:
    """Everything a search scored, in order: `records` (one dict per candidate: key, genes,
    generation, origin, score and the score function's other fields), `generations` (lists of
    records), `notes` ({generation: what happened while drawing it}) and why it `stopped` early."""
    records: list = field(default_factory=list)
    generations: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    stopped: str = ""                 # why the search ended early ('' if it ran every generation)

    def ranked(self):
        return sorted(self.records, key=lambda r: -r["score"])

    def top(self, k):
        return self.ranked()[:k]

    @property
    def best(self):
        return self.ranked()[0] if self.records else None

    def summary(self):
        """Best and mean score per generation, with its notes (seen draws, dry neighbourhoods)."""
        rows, best = [], float("-inf")
        for g, recs in enumerate(self.generations):
            if not recs:
                continue
            best = max(best, *(r["score"] for r in recs))
            rows.append({"generation": g, "candidates": len(recs), "best": max(r["score"] for r in recs),
                         "mean": sum(r["score"] for r in recs) / len(recs), "best_so_far": best,
                         **self.notes.get(g, {})})
        return rows


class _Run:
    """The state every strategy shares: what was drawn, what is cached, how to score, when to stop."""

    def __init__(self, choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries,
                 on_scored, on_generation, max_candidates=None, patience=None):
        if (score_fn is None) == (score_many is None):
            raise ValueError("give exactly one of score_fn (one candidate) or score_many (a list)")
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if max_candidates is not None and max_candidates < 1 or patience is not None and patience < 1:
            raise UserError("max_candidates and patience must be at least 1 (or None: no limit)")
        self.choices = list(choices)
        self.score_many = score_many or (lambda batch: [score_fn(g) for g in batch])
        self.constraint_fn, self.key_fn = constraint_fn or (lambda genes: True), key_fn or default_key
        self.cache, self.max_tries = dict(cache or {}), max_tries
        self.on_scored, self.on_generation = on_scored, on_generation
        self.max_candidates, self.patience = max_candidates, patience
        self.seen = set()
        self.history = History()
        self.current, self.seen_draws, self.dry = [], 0, []
        self.best, self.best_generation = float("-inf"), 0
        self.make = lambda rng: random_genes(self.choices, rng)     # how a random candidate is drawn

    def draw(self, make, rng, what, strict=False, dry_after=None):
        """A new feasible candidate from `make(rng)`, at most `max_tries` draws, or None. With
        `dry_after`, None as soon as that many draws hit seen candidates (the neighbourhood is dry).
        With `strict` (the first draws of a search), a loop that saw nothing feasible at all raises,
        naming the nearest candidate seen; otherwise running dry only ends that step."""
        nearest, duplicates = None, 0
        for _ in range(self.max_tries):
            genes = tuple(make(rng))
            key = self.key_fn(genes)
            if key in self.seen:
                duplicates += 1
                self.seen_draws += 1
                if dry_after and duplicates >= dry_after:
                    return None
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

    @property
    def room(self):
        """How many more candidates the budget allows (None: no limit)."""
        return None if self.max_candidates is None else self.max_candidates - len(self.history.records)

    def score(self, batch, generation, origins):
        """Records for `batch` (genes drawn in this generation, each made as `origins[i]`), scoring
        only what is not cached; a batch larger than the budget's room is cut to fit."""
        if self.room is not None:
            batch, origins = batch[:self.room], origins[:self.room]
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
            record.update(key=keys[i], genes=list(batch[i]), generation=generation, origin=origins[i])
            record["score"] = float(record["score"])
            new[i] = record
        records = [new[i] if i in new else {**self.cache[key], "key": key, "genes": list(batch[i]),
                                            "generation": generation, "origin": origins[i]}
                   for i, key in enumerate(keys)]
        if new and self.on_scored:
            self.on_scored([new[i] for i in sorted(new)])
        self.history.records += records
        self.current += records
        return records

    def close(self, generation, last, **note):
        """End `generation`: keep its records and notes, report it, and say whether to stop (the
        budget is spent, or `patience` generations brought no better best; not after the `last`)."""
        records, self.current = self.current, []
        self.history.generations.append(records)
        note = {"seen_draws": self.seen_draws, **({"dry": self.dry} if self.dry else {}), **note}
        self.history.notes[generation] = note
        if self.dry:
            log.info("generation %d: %s ran dry, the parents' unseen neighbourhood is exhausted (%d draws "
                     "hit candidates seen before); %s", generation, " and ".join(self.dry), self.seen_draws,
                     note.get("response", "nothing to widen"))
        self.seen_draws, self.dry = 0, []
        if records and self.on_generation:
            self.on_generation(generation, records, self.history)
        top = max((r["score"] for r in records), default=float("-inf"))
        if top > self.best:
            self.best, self.best_generation = top, generation
        if self.room is not None and self.room <= 0:
            return self.stop(f"the budget of {self.max_candidates} scored candidates is spent")
        if self.patience is not None and not last and generation - self.best_generation >= self.patience:
            plural = "s" * (self.patience > 1)
            return self.stop(f"no better candidate in {self.patience} generation{plural} (the best, "
                             f"{self.best:.4g}, came in generation {self.best_generation})")
        return False

    def stop(self, why):
        self.history.stopped = why
        log.info("search stopped early: %s", why)
        return True

    def randoms(self, count, rng, strict=False):
        out = []
        for _ in range(count):
            genes = self.draw(self.make, rng, "random candidates",
                              strict and not out)
            if genes is None:
                break
            out.append(genes)
        return out

    def start(self, population, rng):
        """Generation 0: `population` random feasible candidates; True if the search must stop."""
        batch = self.randoms(population, rng, strict=True)
        return not self.score(batch, 0, ["random"] * len(batch)) or self.close(0, last=False)


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


def _exhausted(run, generation):
    return run.stop(f"generation {generation}: no unseen feasible candidate is left")


def check_genetic(population, generations, topk, crossover, mutation, random_select, mutation_prob):
    """The genetic search's numbers, checked (by the search, and by SearchSettings before a run
    folder is written)."""
    if population < 1 or generations < 1 or topk < 1:
        raise UserError("population, generations and topk must be at least 1",
                        settings=("population", "generations", "topk"))
    if crossover < 0 or mutation < 0 or random_select < 0 or not 0 <= mutation_prob <= 1:
        raise UserError("the crossover, mutation and random-select counts must be >= 0 and the mutation "
                        "probability in [0, 1]",
                        settings=("crossover", "mutation", "random_select", "mutation_prob"))


def genetic_search(choices, rng, *, score_fn=None, score_many=None, constraint_fn=None,
                   population=50, generations=20, topk=10, crossover_num=25, mutation_num=25,
                   mutation_prob=0.1, random_select=0, key_fn=None, cache=None, max_tries=10000,
                   max_candidates=None, patience=None, on_scored=None, on_generation=None):
    """Evolution in the SPOS style. Generation 0 is `population` random feasible candidates. Each
    later generation draws its parents from the `topk` best candidates scored so far plus
    `random_select` others picked at random (for diversity), then makes `mutation_num` mutants
    (each gene redrawn with probability `mutation_prob`) and `crossover_num` uniform crossovers of
    two parents, all feasible and never seen before, and fills up to `population` with random
    candidates.

    When the parents converge, their unseen neighbourhood runs dry (DRY_DRAWS draws in a row hit
    seen candidates). Crossovers that run dry give their place to mutants; mutants that run dry
    double the mutation probability (up to 1) and try again, and it halves back towards
    `mutation_prob` after each generation that did not run dry. The generation's note says so.
    Why this and not a wider parent pool or a restart: the children stay next to the best
    candidates found (which is what evolution exploits), only as far away as it takes to find new
    ones, and nothing of the population is thrown away; filling with random candidates instead
    turns a converged search into random search. Returns the History."""
    check_genetic(population, generations, topk, crossover_num, mutation_num, random_select, mutation_prob)
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation, max_candidates, patience)
    if run.start(population, rng):
        return run.history
    prob, free = mutation_prob, len(free_genes(run.choices))
    for generation in range(1, generations):
        parents = _parents(run.history, topk, random_select, rng)
        start_prob = prob

        def mutants(count):
            """`count` mutants of random parents, widening the mutation while it runs dry."""
            nonlocal prob
            out = []
            make = lambda r: mutate(parents[r.integers(len(parents))], run.choices, r, prob)  # noqa: E731
            for _ in range(count):
                child = run.draw(make, rng, "mutations", dry_after=DRY_DRAWS)
                while child is None and prob < 1:
                    run.dry += [] if "mutations" in run.dry else ["mutations"]
                    prob = min(1.0, max(2 * prob, 1 / max(free, 1)))
                    child = run.draw(make, rng, "mutations", dry_after=DRY_DRAWS)
                if child is None:
                    break
                out.append(child)
            return out
        batch = mutants(mutation_num)
        origins = ["mutation"] * len(batch)
        if len(parents) > 1:
            crosses = []
            for _ in range(crossover_num):
                child = run.draw(lambda r: _cross(parents, r), rng, "crossovers", dry_after=DRY_DRAWS)
                if child is None:
                    run.dry.append("crossovers")
                    break
                crosses.append(child)
            extra = mutants(crossover_num - len(crosses)) if len(batch) == mutation_num else []
            batch += crosses + extra
            origins += ["crossover"] * len(crosses) + ["mutation"] * len(extra)
        fill = run.randoms(max(0, population - len(batch)), rng)
        batch += fill
        origins += ["random"] * len(fill)
        if not batch:
            _exhausted(run, generation)
            break
        note = {}
        if run.dry:
            note = {"mutation_prob": prob, "response": f"mutation probability {start_prob:g} -> {prob:g}"
                    if prob != start_prob else f"mutation probability stays {prob:g}"}
            if "mutations" not in run.dry:
                note["response"] = f"mutants take their place (mutation probability {prob:g})"
            if fill:
                note["response"] += f"; {len(fill)} random candidates fill the generation"
        if "mutations" not in run.dry:
            prob = max(mutation_prob, prob / 2)
        run.score(batch, generation, origins)
        if run.close(generation, last=generation == generations - 1, **note):
            break
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


def regularized_search(choices, rng, *, score_fn=None, score_many=None, constraint_fn=None,
                       population=50, generations=20, sample_size=10, step=1, key_fn=None, cache=None,
                       max_tries=10000, max_candidates=None, patience=None, on_scored=None,
                       on_generation=None):
    """Regularized (aging) evolution (Real et al., 2019). The population is a queue of `population`
    candidates, at first random and feasible. Each child samples `sample_size` members of the
    queue, takes the best and changes one of its genes (to another allowed value): a feasible child
    never seen before. It joins the queue and the oldest member leaves, whatever its score, so an
    architecture that scored well once by luck does not stay a parent forever.

    Children are scored `step` at a time (1: the sequential algorithm; N workers score N children
    at once with step N, as the paper's asynchronous workers do). A generation of the History is
    `population` children: one full turnover of the queue. When a parent's unseen neighbourhood
    runs dry, the child changes 2, 4, ... genes instead of one. Returns the History."""
    if population < 1 or generations < 1 or sample_size < 1 or step < 1:
        raise UserError("population, generations, sample_size and step must be at least 1")
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation, max_candidates, patience)
    if not run.start(population, rng):
        ended = _age(run, rng, deque(run.history.records), population, sample_size, step, range(1, generations),
                     generations - 1)
        if ended and ended[0] == "exhausted":
            _exhausted(run, ended[1])
    return run.history


def _age(run, rng, queue, population, sample_size, step, generations, last):
    """Regularized evolution's generations over `run.choices` from the queue `queue` (oldest
    first). Returns None after the last, ("stop", g) when the search must stop (budget, patience)
    and ("exhausted", g) when no unseen candidate is left in generation g."""
    free = len(free_genes(run.choices))

    def child():
        """A mutant of the best of `sample_size` members, or None when nothing unseen is left."""
        picks = rng.choice(len(queue), size=min(sample_size, len(queue)), replace=False)
        parent = tuple(max((queue[i] for i in picks), key=lambda r: r["score"])["genes"])
        changes = 1
        while True:
            genes = run.draw(lambda r: mutate_some(parent, run.choices, r, changes), rng, "mutations",
                             dry_after=DRY_DRAWS)
            if genes is not None or changes >= free:
                return genes, changes
            run.dry += [] if "mutations" in run.dry else ["mutations"]
            changes = min(free, 2 * changes)

    for generation in generations:
        made, widest, exhausted = 0, 1, False
        while made < population and not exhausted and (run.room is None or run.room > 0):
            batch = []
            for _ in range(min(step, population - made)):
                genes, changes = child()
                widest = max(widest, changes)
                if genes is None:
                    exhausted = True
                    break
                batch.append(genes)
            for record in run.score(batch, generation, ["mutation"] * len(batch)):
                queue.append(record)                  # the child joins, the oldest member leaves
                queue.popleft()
                made += 1
        note = {"response": f"children changed up to {widest} genes instead of 1"} if run.dry else {}
        stop = bool(run.current) and run.close(generation, last=generation == last, **note)
        if stop:
            return "stop", generation
        if exhausted:
            return "exhausted", generation
    return None


def staged_search(choices, rng, *, stages, score_fn=None, score_many=None, constraint_fn=None, population=50,
                  generations=20, sample_size=10, step=1, key_fn=None, cache=None, max_tries=10000,
                  max_candidates=None, patience=None, on_scored=None, on_generation=None):
    """HURRICANE's stages as a search: `stages` lists the gene indices each stage searches (e.g. the
    later positions' genes, then the earlier ones'). Generation 0 scores `population` random
    candidates over every gene; each stage then holds the other genes at the best candidate so far,
    scores `population` random candidates of its own genes and runs regularized evolution on them
    for its share of the generations (`generations` - 1 split evenly, the rest to the last stage).
    Returns the History."""
    if population < 1 or generations < len(stages) + 1 or sample_size < 1 or step < 1:
        raise UserError("population, sample_size and step must be at least 1, and generations more than the stages")
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation, max_candidates, patience)
    if run.start(population, rng):
        return run.history
    full, generation = list(run.choices), 1
    share = (generations - 1) // len(stages)
    for s, genes in enumerate(stages):       # a stage whose few genes run out of unseen values just ends
        held, free = run.history.best["genes"], set(genes)
        run.choices = [c if k in free else (held[k],) for k, c in enumerate(full)]
        count = share if s < len(stages) - 1 else generations - generation
        batch = []
        for _ in range(population):
            genes = run.draw(lambda r: random_genes(run.choices, r), rng, "random candidates", dry_after=DRY_DRAWS)
            if genes is None:
                break
            batch.append(genes)
        ended = None
        if batch:
            run.score(batch, generation, ["random"] * len(batch))
            if run.close(generation, last=generation == generations - 1, stage=s + 1):
                break
            ended = _age(run, rng, deque(run.history.generations[-1]), population, sample_size, step,
                         range(generation + 1, generation + count), generations - 1)
        if ended and ended[0] == "stop":
            break
        generation = (ended[1] if ended else generation + count - 1) + 1
    else:
        if generation < generations:
            _exhausted(run, generation - 1)
    run.choices = full
    return run.history


def random_search(choices, rng, *, score_fn=None, score_many=None, constraint_fn=None,
                  population=50, generations=20, key_fn=None, cache=None, max_tries=10000,
                  max_candidates=None, patience=None, on_scored=None, on_generation=None, draw=None):
    """The baseline: `population` x `generations` distinct random feasible candidates, scored in
    batches of `population` (a 'generation' here is only a batch). Returns the History. `draw(rng)`
    -> genes replaces the uniform draw (e.g. a learned distribution's; it must respect `choices`)."""
    if population < 1 or generations < 1:
        raise UserError("population and generations must be at least 1")
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation, max_candidates, patience)
    if draw is not None:
        run.make = draw
    if run.start(population, rng):
        return run.history
    for generation in range(1, generations):
        batch = run.randoms(population, rng)
        if not batch:
            _exhausted(run, generation)
            break
        run.score(batch, generation, ["random"] * len(batch))
        if run.close(generation, last=generation == generations - 1):
            break
    return run.history


def accept(delta, temperature, u):
    """Simulated annealing's rule: a better (or equal) move always, a worse one with probability
    exp(delta / temperature); `u` is a uniform draw in [0, 1)."""
    return delta >= 0 or (temperature > 0 and u < math.exp(delta / temperature))


def temperature(step, steps, start, end):
    """Geometric cooling from `start` at step 0 to `end` at the last step."""
    return start * (end / start) ** (step / max(steps - 1, 1))


def fox_search(choices, rng, *, score_fn=None, score_many=None, constraint_fn=None, population=50,
               generations=20, anneal_steps=300, predictor=None, key_fn=None, cache=None, max_tries=10000,
               max_candidates=None, patience=None, on_scored=None, on_generation=None):
    """FOX-NAS (predictor-guided): generation 0 scores `population` random feasible candidates;
    each later generation fits a linear predictor (`predictor()` -> search.predictor.LinearPredictor,
    default: on the genes alone) to every candidate scored so far, runs `population` simulated-
    annealing chains of `anneal_steps` one-gene moves over the predictor (chain j starts from the
    j-th best candidate so far; temperature from the scores' standard deviation down to a hundredth
    of it, geometrically; only feasible moves), and scores the `population` best predicted
    candidates the chains visited that were never scored. History.notes of each generation keep
    how many were proposed by the predictor and `predictor_tau`, the Kendall tau of its predictions
    against their scores (candidates it was not fitted on). Returns the History."""
    from .predictor import LinearPredictor
    if population < 1 or generations < 1 or anneal_steps < 1:
        raise UserError("population, generations and anneal_steps must be at least 1")
    run = _Run(choices, score_fn, score_many, constraint_fn, key_fn, cache, max_tries, on_scored,
               on_generation, max_candidates, patience)
    if run.start(population, rng):
        return run.history
    make = predictor or (lambda: LinearPredictor(run.choices))
    for generation in range(1, generations):
        records = run.history.records
        model = make().fit([r["genes"] for r in records], [r["score"] for r in records])
        start = float(np.std([r["score"] for r in records])) or 1e-3
        visited = {}
        for parent in sorted(records, key=lambda r: -r["score"])[:population]:
            state = tuple(parent["genes"])
            value = float(model.predict([state])[0])
            for step in range(anneal_steps):
                move = mutate_some(state, run.choices, rng, 1)
                if move == state or not as_verdict(run.constraint_fn(move)).ok:
                    continue
                guess = visited.get(move)
                if guess is None:
                    guess = visited[move] = float(model.predict([move])[0])
                if accept(guess - value, temperature(step, anneal_steps, start, start / 100), rng.random()):
                    state, value = move, guess
        batch = []
        for genes in sorted(visited, key=lambda g: -visited[g]):
            key = run.key_fn(genes)
            if key not in run.seen:
                run.seen.add(key)
                batch.append(genes)
                if len(batch) == population:
                    break
        origins = ["predicted"] * len(batch)
        if len(batch) < population:                     # the chains found too few new candidates
            extra = run.randoms(population - len(batch), rng)
            batch, origins = batch + extra, origins + ["random"] * len(extra)
        if not batch:
            _exhausted(run, generation)
            break
        scored = run.score(batch, generation, origins)
        # how well the predictor ranked what it proposed, once scored (held out from its fit)
        held_out = float(kendall_tau(model.predict([r["genes"] for r in scored]), [r["score"] for r in scored]))
        if run.close(generation, last=generation == generations - 1, predicted=origins.count("predicted"),
                     predictor_tau=None if held_out != held_out else round(held_out, 4)):
            break
    return run.history

