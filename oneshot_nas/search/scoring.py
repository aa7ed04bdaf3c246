"""The score function of a search: supernet paths scored on a held-out split, with their costs.

Per candidate, the path is taken out of the supernet as one static graph (nn/pathgraph.py: BN
recalibrated exactly on a fixed slice of training images, then top-1 on the search split), so both
passes run at the speed of a hybridized standalone network. The images of both slices are decoded
once (data/slices.py) and reused for every candidate. By default the search split is held out of
the TRAINING set, so the validation set stays an honest final report.
"""
import time

import numpy as np

from ..cost.model import METRICS
from ..nn.pathgraph import PathGraph, PathPieces
from ..runs.progress import progress as _progress
from ..runs.workers import Workers


class CandidateEvaluator:
    """Top-1 of supernet paths on a search split after exact BN recalibration, on `contexts`."""

    def __init__(self, supernet, data, contexts, batch_size=128):
        self.supernet, self.data, self.contexts = supernet, data, list(contexts)
        self.batch_size = batch_size
        self.pieces = PathPieces(supernet, frozen=True)      # (the supernet does not train while searched)

    def evaluate(self, arch, also=None):
        """{accuracy, correct, images, extract_seconds, recal_seconds, eval_seconds} of `arch`;
        `also` ({name: ImageSlice}) adds the top-1 `accuracy_<name>` on each of those slices, with
        the same recalibrated graph (eval_seconds covers the split only)."""
        t0 = time.perf_counter()
        graph = PathGraph(self.supernet, arch, self.contexts, self.pieces)
        t1 = time.perf_counter()
        graph.calibrate(self.data.calibration.batches(self.batch_size))
        t2 = time.perf_counter()
        right, _, seen, nll = graph.counts(self.data.split.batches(self.batch_size), k=1, nll=True)
        t3 = time.perf_counter()
        result = {"accuracy": right / seen, "nll": nll / seen, "correct": right, "images": seen,
                  "extract_seconds": t1 - t0, "recal_seconds": t2 - t1, "eval_seconds": t3 - t2}
        for name, images in (also or {}).items():
            right, _, seen = graph.counts(images.batches(self.batch_size), k=1)
            result[f"accuracy_{name}"] = right / seen
        return result


FIELDS = ("accuracy", "correct", "images", "bn_score", "extract_seconds", "recal_seconds",
          "eval_seconds", "seconds", "nll")


class SupernetScorer:
    """`score_many` for search.genetic_search / random_search over architecture genes.

    Each worker scores its share of a batch (accuracy after recalibration with `evaluator`, or only
    the zero-cost BN score when `evaluator` is None), the rows are gathered so every worker has
    every score, and each candidate becomes a record: arch, macs, params, micronet_score,
    latency_ms, accuracy, bn_score, score (the objective), seconds, worker.
    """

    def __init__(self, space, costs, objective, bn_scores, evaluator=None, workers=None, progress=True,
                 by_nll=False):
        self.space, self.costs, self.objective = space, costs, objective
        self.by_nll = by_nll            # rank by -cross-entropy on the split instead of top-1
        self.bn_scores, self.evaluator = bn_scores, evaluator
        self.workers = workers or Workers()
        self.progress = progress
        self.label = "scoring"          # the progress bar's title (the caller names the generation)

    def __call__(self, genes_list):
        archs = [self.space.decode(g) for g in genes_list]
        rows = np.zeros((len(archs), len(FIELDS) + 1))
        mine = self.workers.mine(len(archs))
        for i in _progress(mine, self.progress and self.evaluator is not None, self.label):
            start = time.perf_counter()
            result = self.evaluator.evaluate(archs[i]) if self.evaluator else {}
            result["bn_score"] = self.bn_scores.score(archs[i])
            result["seconds"] = time.perf_counter() - start
            rows[i, :-1] = [result.get(f, np.nan) for f in FIELDS]
            rows[i, -1] = self.workers.rank + 1
        rows = self.workers.gather(np.nan_to_num(rows, nan=-1.0))
        return [self._record(arch, row) for arch, row in zip(archs, rows)]

    def _record(self, arch, row):
        values = self.costs.measure(arch)
        result = dict(zip(FIELDS, row[:-1]))
        accuracy = float(result["accuracy"]) if self.evaluator else None
        quality = -float(result["nll"]) if self.by_nll and self.evaluator else accuracy
        score = self.objective(quality, values) if self.evaluator else float(result["bn_score"])
        counts = {k: int(round(v)) for k, v in values.items() if METRICS[k].unit == "count"}
        record = {"arch": str(arch), **values, **counts, "accuracy": accuracy,
                  "bn_score": float(result["bn_score"]), "score": score,
                  "seconds": round(float(result["seconds"]), 4), "worker": int(row[-1]) - 1}
        if self.evaluator:
            record.update(correct=int(result["correct"]), images=int(result["images"]),
                          nll=round(float(result["nll"]), 6),
                          **{k: round(float(result[k]), 4) for k in FIELDS[4:7]})
        return record
