"""Finding the trade-off automatically: the lambda whose search result meets a cost target.

Single-Path Mobile AutoML's question: the loss CE + lambda * log(R) has one knob, and which lambda
gives a network of a given latency is not known in advance. The cost of the found network falls
(roughly) as lambda grows, so short searches per lambda are bracketed and bisected on a log scale:
1. from `start`, multiply (or divide) lambda by `factor` until one result meets the target and
   another misses it (or lambda is below `smallest`: the largest network already meets it);
2. bisect log(lambda) between the two;
3. stop once a result lands within `tolerance` below the target, or after `max_runs` searches.
The answer is the result closest to the target from below (meeting the target first, closeness
second); None when no result met it. `cost_of(lam, index)` runs one search; it is called with the
run's index so that a resumed search finds its finished runs again (the sequence of lambdas is a
function of the results alone).
"""
import math


def find_lambda(cost_of, target, start=1.0, factor=4.0, max_runs=8, tolerance=0.05, smallest=1e-3):
    """(best (lam, cost) or None, every (lam, cost) in order); see the module docstring."""
    if not (target > 0 and start > 0 and factor > 1 and max_runs >= 1 and 0 <= tolerance < 1):
        raise ValueError("need target > 0, start > 0, factor > 1, max_runs >= 1, 0 <= tolerance < 1")
    history = []
    over = under = None        # the largest lambda that missed the target, the smallest that met it
    lam = start
    while len(history) < max_runs:
        cost = cost_of(lam, len(history))
        history.append((lam, cost))
        if cost <= target:
            under = lam if under is None else min(under, lam)
            if cost >= target * (1 - tolerance):
                break
        else:
            over = lam if over is None else max(over, lam)
        if under is not None and over is not None and under <= over:
            break       # the cost is not monotone here: a lambda below one that missed met it
        if under is None:
            lam = lam * factor
        elif over is None:
            lam = lam / factor
            if lam < smallest:
                break   # even a negligible runtime loss meets the target
        else:
            lam = math.sqrt(over * under)
    met = [(lam, cost) for lam, cost in history if cost <= target]
    best = max(met, key=lambda item: (item[1], -item[0])) if met else None
    return best, history
