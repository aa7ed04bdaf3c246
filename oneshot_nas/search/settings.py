"""Everything that decides a search, as one value (no MXNet: the CLI takes its defaults from here,
benchmarks configure the strategies from it). Its fingerprint (runs/fingerprint.py) decides whether
a search can be resumed: fields marked `free` may change on resume, every other one must stay."""
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..runs.fingerprint import free
from .strategies import (check_genetic, fox_search, genetic_search, random_search, regularized_search,
                         staged_search)

STRATEGIES = ("genetic", "regularized", "random", "learned", "fox", "hurricane")
OWN = {("genetic",): ("topk", "random_select", "crossover", "mutation", "mutation_prob"),
       ("regularized", "hurricane"): ("sample_size", "children_per_step"), ("fox",): ("anneal_steps",)}      # settings only that strategy uses
SCORES = ("acc", "nll", "bn")
HALVES = ("both", "blocks", "channels")


@dataclass(frozen=True)
class SearchSettings:
    """Everything that decides a search. Fields marked free may change when a search is resumed."""
    supernet: str
    space: str = None                    # only for a supernet file without its .json
    rec_train: str = None                # data (none: the embedded digits)
    rec_train_idx: str = None
    rec_val: str = None
    rec_val_idx: str = None
    data_dir: str = None
    digits_view: str = "default"       # the view of the embedded digits (data/sources.DIGITS_VIEWS)
    num_classes: int = None
    update_bn_images: int = None         # BN calibration images (default min(20000, the rest))
    search_val_images: int = None        # the held-out split (default min(10000, 1/5 of training))
    search_on_val: bool = False
    batch_size: int = 128                # per device
    strategy: str = "regularized"        # measured best: docs/search.md, python -m oneshot_nas.bench strategies
    score: str = "acc"                   # 'acc' (top-1), 'nll' (-cross-entropy) or the zero-cost 'bn' score
    rescore: int = free(10)              # with score 'bn': how many of the best are scored by accuracy
    population: int = 50                 # genetic, random: per generation; regularized: the queue
    generations: int = free(20)          # a resumed search may run longer
    max_candidates: int = free(None)     # stop after this many scored candidates (None: no limit)
    patience: int = free(None)           # stop after this many generations without a better best
    topk: int = 10                       # genetic: parents
    random_select: int = 0
    crossover: int = 25
    mutation: int = 25
    mutation_prob: float = 0.1
    sample_size: int = 10                # regularized: members sampled per child (the best is its parent)
    children_per_step: int = 1           # regularized: children scored at once
    anneal_steps: int = 300              # fox: moves of each simulated-annealing chain over the predictor
    rescore_top: int = 0                 # the best K re-scored on a second split; winner by the mean
    rescore_images: int = None           # the second split (default: as many as the search split)
    max_tries: int = 10000
    seed: int = 0
    search: str = "both"                 # which genes evolve: both, blocks or channels
    fix_blocks_from: str = None          # an architecture whose blocks (channels) are frozen
    fix_channels_from: str = None
    limits: dict = field(default_factory=dict)     # {cost: (lo, hi)}
    baseline: str = "mobilenetv2-1.4"    # MicroNet score baseline and precision
    bits: int = 32
    latency_table: str = None
    device_blocks: int = None            # HURRICANE: only the K blocks per position fastest on the table's device
    free_positions: str = None           # HURRICANE's stages: only positions A..B-1 ("A:B") are searched,
    fixed_from: str = None               # the others hold this architecture's genes
    objective: str = "acc"
    cost_metric: str = "macs"
    cost_weight: float = 0.1
    save_dir: str = free(None)           # default logs/search-SPACE
    models_dir: str = free("models")
    topk_save: int = free(5)
    plots: bool = free(True)
    progress: bool = free(True)          # progress bars (on a terminal only, and on the chief worker)

    def __post_init__(self):
        for name, value, allowed in (("strategy", self.strategy, STRATEGIES), ("score", self.score, SCORES),
                                     ("search", self.search, HALVES)):
            if value not in allowed:
                raise UserError(f"{name} {value!r} is unknown; choose one of {', '.join(allowed)}")
        if self.objective == "balanced" and self.score != "acc":
            raise UserError("the balanced objective needs accuracies; it cannot rank by the BN score")
        for name, least in (("batch_size", 1), ("max_tries", 1), ("topk_save", 0), ("rescore", 0)):
            if getattr(self, name) < least:
                raise UserError(f"{name.replace('_', ' ')} {getattr(self, name)}: give {least} or more",
                                settings=name)
        for name in ("max_candidates", "patience", "rescore_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{name} is {getattr(self, name)}; give at least 1 (or leave it unset: "
                                "no limit, or the default)", settings=name)
        check_genetic(self.population, self.generations, self.topk, self.crossover, self.mutation,
                      self.random_select, self.mutation_prob)
        if self.device_blocks is not None and not self.latency_table:
            raise UserError("--device-blocks picks the fastest blocks of a device: give its --latency-table PATH "
                            "(python profiling/latency_table.py measures one)", settings="latency_table")
        if self.anneal_steps < 1:
            raise UserError(f"anneal_steps {self.anneal_steps} must be at least 1", settings="anneal_steps")
        if self.sample_size < 1 or self.children_per_step < 1 or self.rescore_top < 0:
            raise UserError("sample_size and children_per_step must be at least 1, rescore_top >= 0",
                            settings=("sample_size", "children_per_step", "rescore_top"))
        for owners, names in OWN.items():
            owner, choose = ((f"the {owners[0]} strategy", owners[0]) if len(owners) == 1 else
                             (f"the {' and '.join(owners)} strategies", "one of them"))
            changed = [n for n in names if self.strategy not in owners and getattr(self, n) != default(n)]
            if changed:
                raise UserError(f"{', '.join(changed)} belong{'s' * (len(changed) == 1)} to {owner}, "
                                f"but the strategy is {self.strategy}: choose {choose} or leave "
                                f"{'it' if len(changed) == 1 else 'them'} at the default",
                                settings=("strategy", *changed))
        if self.rescore_top and self.score == "bn" and not self.rescore:
            raise UserError("re-scoring the best on a second split compares accuracies; with the BN score "
                            "also rescore the best by accuracy first (rescore > 0)", settings="rescore")


def default(name):
    """The default of a SearchSettings field (what a CLI flag defaults to)."""
    return SearchSettings.__dataclass_fields__[name].default


def run_strategy(settings, choices, positions=None, **kwargs):
    """The History of the strategy `settings` name over `choices`, with its parameters from
    `settings` and the rest (score_many or score_fn, constraint_fn, key_fn, cache, callbacks) from
    `kwargs`. `positions` (the space's, whose genes are groups of one gene per position) gives
    hurricane its stages: the later half of the positions first, then the earlier half."""
    s = settings
    common = dict(population=s.population, generations=s.generations, max_candidates=s.max_candidates,
                  patience=s.patience, max_tries=s.max_tries, **kwargs)
    rng = np.random.default_rng(s.seed)
    if s.strategy in ("random", "learned"):     # learned: kwargs carry the distribution's draw
        return random_search(choices, rng, **common)
    if s.strategy == "fox":          # kwargs may carry the predictor (features beyond the genes)
        return fox_search(choices, rng, anneal_steps=s.anneal_steps, **common)
    if s.strategy == "hurricane":
        if positions is None:
            raise ValueError("the hurricane strategy needs the number of positions")
        later = [k for k in range(len(choices)) if k % positions >= positions // 2]
        earlier = [k for k in range(len(choices)) if k % positions < positions // 2]
        return staged_search(choices, rng, stages=[later, earlier], sample_size=s.sample_size,
                             step=s.children_per_step, **common)
    if s.strategy == "regularized":
        return regularized_search(choices, rng, sample_size=s.sample_size, step=s.children_per_step, **common)
    return genetic_search(choices, rng, topk=s.topk, crossover_num=s.crossover, mutation_num=s.mutation,
                          mutation_prob=s.mutation_prob, random_select=s.random_select, **common)
