"""How far two rankings of the same architectures agree, how sure that is, and how far seed noise lets them.

- `kendall_tau`: Kendall's tau-b (ties counted as scipy.stats.kendalltau counts them), and
  `kendall_tau_test` with its p-value (the search's BN score against accuracy);
- `spearman_rho`: Spearman's rho, the Pearson correlation of average ranks;
- `precision_at_k`: the fraction of one scoring's k best that are among the other's k best;
- `agreement`: all three, each with a percentile bootstrap 95% interval (architectures resampled
  with replacement by a seeded Generator);
- `noise_floor`: of a table of per-seed accuracies (architectures x seeds): the seeds' standard
  deviation per architecture, the tau between two seeds' accuracies of the same architectures, and
  the tau between the table's mean accuracies and their bootstrap over seeds (docs/ranking.md).
Every statistic takes arrays whose last axis runs over architectures and whose leading axes are
independent samples, so a bootstrap of thousands of resamples is a few array operations. numpy and
scipy only (no MXNet).
"""
import math

import numpy as np

from .errors import UserError

CHUNK_PAIRS = 2_000_000      # pair signs held at once (int8) when many resamples are scored


def _signs(x):
    """sign(x_i - x_j) for every pair i < j along the last axis, as int8."""
    i, j = np.triu_indices(x.shape[-1], k=1)
    return np.sign(x[..., i] - x[..., j]).astype(np.int8)


def kendall_tau(a, b):
    """Kendall's tau-b of `a` and `b` along the last axis (NaN where either is constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim > 1 and a[..., 0].size > 1:       # many samples: a chunk at a time keeps memory flat
        rows = max(1, CHUNK_PAIRS // max(1, a.shape[-1] ** 2 // 2))
        flat_a, flat_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        out = np.concatenate([_tau(flat_a[s:s + rows], flat_b[s:s + rows])
                              for s in range(0, len(flat_a), rows)])
        return out.reshape(a.shape[:-1])
    return _tau(a, b)


def _tau(a, b):
    sa, sb = _signs(a), _signs(b)
    concordant = (sa.astype(np.int64) * sb).sum(-1)
    norm = np.sqrt((sa != 0).sum(-1).astype(float) * (sb != 0).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, concordant / np.where(norm > 0, norm, 1), np.nan)


def kendall_tau_test(a, b):
    """(tau, two-sided p-value) of two score lists over the same candidates (scipy's test); None
    when fewer than 3 or when one list is constant (no ranking to compare)."""
    from scipy.stats import kendalltau
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    result = kendalltau(a, b)
    return float(result.statistic), float(result.pvalue)


def spearman_rho(a, b):
    """Spearman's rho of `a` and `b` along the last axis (NaN where either is constant)."""
    from scipy.stats import rankdata
    ra = rankdata(np.asarray(a, dtype=float), axis=-1)
    rb = rankdata(np.asarray(b, dtype=float), axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    norm = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (ra * rb).sum(-1) / np.where(norm > 0, norm, 1), np.nan)


def top_k_mask(x, k):
    """True at the k largest entries along the last axis (ties: the earlier entry first)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def precision_at_k(score, truth, k):
    """Of the k architectures `score` ranks highest, the fraction that are among the k best by
    `truth` (along the last axis)."""
    return (top_k_mask(score, k) & top_k_mask(truth, k)).sum(-1) / k


def resolve_ks(spec, n, explicit=True):
    """[k, ...] (ascending) from '5,10%,25%' for a table of `n` architectures (a percentage rounds up, at least
    1). Each k must be below n (at n, every architecture is in both top-k): an explicit one that is
    not is refused, a default one is dropped."""
    ks = []
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        if part.endswith("%"):
            try:
                share = float(part[:-1])
            except ValueError:
                share = math.nan
            if not 0 < share <= 100:
                raise UserError(f"top-k {part!r}: a percentage must be above 0% and at most 100%",
                                settings="top_k")
            k = max(1, math.ceil(share * n / 100 - 1e-9))
        elif part.isdigit() and int(part) >= 1:
            k = int(part)
        else:
            raise UserError(f"top-k {part!r} is not a count >= 1 or a percentage (e.g. 5,10%)",
                            settings="top_k")
        if k >= n:
            if explicit:
                raise UserError(f"top-k {part} means {k} of the {n} architectures ranked; precision@k "
                                f"needs k below {n}: give smaller values", settings="top_k")
            continue
        if k not in ks:
            ks.append(k)
    return sorted(ks)


def interval(samples, level=0.95):
    """The percentile interval of bootstrap `samples` (NaN samples, from resamples that left a
    ranking constant, are left out); (NaN, NaN) when none remain."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap(statistic, score, truth, rng, resamples=2000):
    """(value, lo, hi): `statistic(score, truth)` and its percentile bootstrap 95% interval over
    `resamples` resamplings of the architectures with replacement (drawn from `rng`)."""
    score, truth = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    idx = rng.integers(len(score), size=(resamples, len(score)))
    value = float(statistic(score, truth))
    lo, hi = interval(statistic(score[idx], truth[idx]))
    return value, lo, hi


def agreement(score, truth, ks, rng, resamples=2000):
    """{'kendall_tau': {value, lo, hi}, 'spearman_rho': {...}, 'precision_at_k': {k: {...}}} of a
    score against the true accuracies of the same architectures. All statistics of one call see the
    same resamples (they are drawn once from `rng`)."""
    score, truth = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    if score.shape != truth.shape or score.ndim != 1:
        raise ValueError("score and truth must be 1-D arrays over the same architectures")
    state = rng.bit_generator.state
    out = {}
    for name, stat in (("kendall_tau", kendall_tau), ("spearman_rho", spearman_rho)):
        rng.bit_generator.state = state
        out[name] = dict(zip(("value", "lo", "hi"), bootstrap(stat, score, truth, rng, resamples)))
    out["precision_at_k"] = {}
    for k in ks:
        rng.bit_generator.state = state
        stat = lambda s, t, k=k: precision_at_k(s, t, k)   # noqa: E731
        out["precision_at_k"][str(k)] = dict(zip(("value", "lo", "hi"),
                                                 bootstrap(stat, score, truth, rng, resamples)))
    return out


def noise_floor(accuracies, rng, resamples=2000):
    """What seed noise alone does to a table of `accuracies` (architectures x seeds, complete rows).

    - seed_std_mean/median/max: the standard deviation over seeds (ddof 1) of each architecture;
    - spread: the standard deviation of the architectures' mean accuracies (ddof 1): the signal;
    - tau_between_seeds: Kendall tau between two seeds' accuracies of the same architectures,
      averaged over every pair of seeds (min and max too): how well one seed's ranking predicts
      another's;
    - tau_resampled: Kendall tau between the table's means and the means of the same architectures
      with their seeds resampled with replacement (mean and 95% interval over `resamples`): about
      the best a perfect score can reach against this table.
    The taus are None with one seed.
    """
    acc = np.asarray(accuracies, dtype=float)
    if acc.ndim != 2 or acc.shape[0] < 2:
        raise ValueError("noise_floor takes an (architectures >= 2, seeds) array")
    n, seeds = acc.shape
    means = acc.mean(1)
    out = {"architectures": n, "seeds": seeds, "spread": float(np.std(means, ddof=1)),
           "seed_std_mean": None, "seed_std_median": None, "seed_std_max": None,
           "tau_between_seeds": None, "tau_resampled": None}
    if seeds < 2:
        return out
    std = acc.std(1, ddof=1)
    out.update(seed_std_mean=float(std.mean()), seed_std_median=float(np.median(std)),
               seed_std_max=float(std.max()))
    pairs = [float(kendall_tau(acc[:, i], acc[:, j])) for i in range(seeds) for j in range(i + 1, seeds)]
    finite = [t for t in pairs if math.isfinite(t)]
    if finite:
        out["tau_between_seeds"] = {"mean": float(np.mean(finite)), "min": min(finite), "max": max(finite),
                                    "pairs": len(pairs)}
    draws = rng.integers(seeds, size=(resamples, n, seeds))
    resampled = np.take_along_axis(np.broadcast_to(acc, (resamples, n, seeds)), draws, axis=2).mean(2)
    taus = kendall_tau(resampled, np.broadcast_to(means, resampled.shape))
    lo, hi = interval(taus)
    out["tau_resampled"] = {"mean": float(np.nanmean(taus)), "lo": lo, "hi": hi, "resamples": resamples}
    return out
