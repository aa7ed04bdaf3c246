"""A probability distribution over architectures, learned while the supernet trains (PARSEC, FP-NAS).

PARSEC (Casale et al., 2019) replaces uniform path sampling by a distribution p(genes) whose
parameters are learned from the sampled paths' rewards, at the memory of one model (one path runs at
a time). FP-NAS (Yan et al., CVPR 2021) makes it cheaper in two ways, both here:
- **entropy-adaptive samples**: a step draws K = ceil(k_max * H / H_uniform) paths (at least k_min),
  H the distribution's entropy: many while it is flat, fewer as it sharpens;
- **coarse to fine**: first factorised (one categorical per gene: a block id and a channel id per
  position), then joint per position (one categorical over (block, channel) pairs, started from the
  product of the factorised ones, so the switch does not change the distribution).

The update is REINFORCE on the logits: for the step's paths a_1..a_K with rewards r_k (minus each
path's training loss on the step's batch, before the update),
    logits += lr * mean_k (r_k - b_k) * d log p(a_k) / d logits,
with b_k the mean reward of the step's other paths (leave-one-out), or with one path a moving average
of past rewards. PARSEC takes its rewards on held-out data; here they are the step's training batch,
which costs no extra forward pass (the paths' losses are computed for their gradients anyway).

Numpy only; every worker holds the same distribution (same rewards, same updates) and draws from the
same seeded Generator. Genes are those of SearchSpace.encode (every gene group, per position).
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class Learning:
    """How supernet training learns the distribution: the logits' learning rate, at most `samples`
    paths a step and at least `min_samples` (equal: PARSEC's fixed count; lower: FP-NAS's
    entropy-adaptive count), and the epoch it turns joint (None: it stays factorised). A learning
    rate of 0 keeps it uniform: K uniform paths a step, the control for what learning adds."""
    lr: float = 0.5
    samples: int = 4
    min_samples: int = 1
    joint_from: int = None

    def __post_init__(self):
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise UserError(f"--dist-lr {self.lr}: give a learning rate >= 0 for the distribution (0 keeps "
                            "it uniform)")
        if not 1 <= self.min_samples <= self.samples <= 15:
            raise UserError(f"samples per step: --dist-min-samples {self.min_samples} and --dist-samples "
                            f"{self.samples} must satisfy 1 <= min <= max <= 15")


class LearnedDistribution:
    """p(genes) over a space's gene groups; `allow(choices)` restricts it to a gene_choices list."""

    def __init__(self, space):
        self.space = space
        self.sizes = [g.size for g in space.gene_groups]
        n = space.num_positions
        self.logits = [np.zeros((n, s)) for s in self.sizes]     # factorised: per group (position, value)
        self.joint_logits = None                                # joint: (position, product of values)
        self.baseline = None
        self.allow(space.gene_choices())

    @property
    def joint(self):
        return self.joint_logits is not None

    def allow(self, choices):
        """Only the values `choices` (SearchSpace.gene_choices) allows have probability > 0."""
        ids = self.space.allowed_ids(choices)
        self.masks = []
        for group, size in zip(self.space.gene_groups, self.sizes):
            mask = np.zeros((self.space.num_positions, size), bool)
            for p, values in enumerate(ids[group.name]):
                mask[p, list(values)] = True
            self.masks.append(mask)
        joint = self.masks[0]
        for mask in self.masks[1:]:
            joint = (joint[:, :, None] & mask[:, None, :]).reshape(len(joint), -1)
        self.joint_mask = joint

    # ----- probabilities -----------------------------------------------------------------------
    def _tables(self):
        """[(logits, mask)] of the categoricals: one per gene group (factorised) or one joint."""
        if self.joint:
            return [(self.joint_logits, self.joint_mask)]
        return list(zip(self.logits, self.masks))

    @staticmethod
    def _probs(logits, mask):
        z = np.where(mask, logits, -np.inf)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def probs(self):
        """Per gene group, (positions, values) marginal probabilities."""
        if not self.joint:
            return [self._probs(t, m) for t, m in self._tables()]
        joint = self._probs(self.joint_logits, self.joint_mask).reshape(-1, *self.sizes)
        axes = range(1, len(self.sizes) + 1)
        return [joint.sum(axis=tuple(a for a in axes if a != k + 1)) for k in range(len(self.sizes))]

    def entropy(self):
        """The distribution's entropy (nats): the sum over its independent categoricals."""
        total = 0.0
        for logits, mask in self._tables():
            p = self._probs(logits, mask)
            total -= float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)))
        return total

    def uniform_entropy(self):
        """The entropy of the uniform distribution over what is allowed now."""
        return float(sum(np.log(m.sum(axis=1)).sum() for _, m in self._tables()))

    def samples_per_step(self, k_min, k_max):
        """FP-NAS's entropy-adaptive count: ceil(k_max * H / H_uniform), within [k_min, k_max]."""
        h0 = self.uniform_entropy()
        k = k_max if h0 <= 0 else math.ceil(k_max * self.entropy() / h0 - 1e-9)
        return int(min(k_max, max(k_min, k)))

    # ----- sampling and learning ---------------------------------------------------------------
    def sample(self, rng):
        """One gene tuple drawn from the distribution."""
        picks = []
        for logits, mask in self._tables():
            cdf = np.cumsum(self._probs(logits, mask), axis=1)
            u = rng.random(len(cdf))[:, None] * cdf[:, -1:]
            picks.append(np.minimum((cdf <= u).sum(axis=1), cdf.shape[1] - 1))
        if self.joint:
            picks = list(np.unravel_index(picks[0], self.sizes))
        return tuple(int(v) for group in picks for v in group)

    def _indices(self, genes):
        """Per categorical, the (positions,) value index of `genes`."""
        groups = [np.asarray(v) for v in self.space.split(tuple(genes)).values()]
        if self.joint:
            return [np.ravel_multi_index(groups, self.sizes)]
        return groups

    def log_prob(self, genes):
        total = 0.0
        for (logits, mask), idx in zip(self._tables(), self._indices(genes)):
            p = self._probs(logits, mask)
            total += float(np.log(p[np.arange(len(idx)), idx]).sum())
        return total

    def update(self, samples, rewards, lr):
        """One REINFORCE step on the logits from the step's `samples` (gene tuples) and their rewards."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if not np.all(np.isfinite(rewards)):
            raise UserError("a sampled path's reward is not finite (its loss diverged): lower the learning rate")
        k = len(rewards)
        if k > 1:
            baselines = (rewards.sum() - rewards) / (k - 1)
        else:
            baselines = np.array([rewards[0] if self.baseline is None else self.baseline])
        self.baseline = float(rewards.mean() if self.baseline is None else 0.9 * self.baseline + 0.1 * rewards.mean())
        tables = self._tables()
        steps = [np.zeros_like(logits) for logits, _ in tables]
        for genes, advantage in zip(samples, rewards - baselines):
            for step, (logits, mask), idx in zip(steps, tables, self._indices(genes)):
                grad = -self._probs(logits, mask)
                grad[np.arange(len(idx)), idx] += 1
                step += advantage * np.where(mask, grad, 0)
        for (logits, _), step in zip(tables, steps):
            logits += lr * step / k

    def to_joint(self):
        """Coarse to fine: one categorical per position over the product of its genes' values,
        equal to the factorised distribution it replaces."""
        if self.joint:
            return
        log_p = [np.log(np.maximum(self._probs(t, m), 1e-300)) for t, m in zip(self.logits, self.masks)]
        joint = log_p[0]
        for lp in log_p[1:]:
            joint = (joint[:, :, None] + lp[:, None, :]).reshape(len(joint), -1)
        self.joint_logits = np.where(self.joint_mask, joint, 0.0)

    def state_dict(self):
        return {"logits": [t.tolist() for t in self.logits], "baseline": self.baseline,
                "joint_logits": None if self.joint_logits is None else self.joint_logits.tolist()}

    def load_state_dict(self, state):
        self.logits = [np.asarray(t, dtype=np.float64) for t in state["logits"]]
        self.baseline = state["baseline"]
        self.joint_logits = None if state["joint_logits"] is None else np.asarray(state["joint_logits"], np.float64)

    def summary(self):
        """What a record shows: entropy, its share of the uniform one, the mode per gene group."""
        modes = {g.name: p.argmax(axis=1).tolist() for g, p in zip(self.space.gene_groups, self.probs())}
        h0 = self.uniform_entropy()
        return {"dist_entropy": round(self.entropy(), 4), "dist_entropy_share": round(self.entropy() / h0, 4)
                if h0 > 0 else 0.0, "dist_joint": self.joint, "dist_mode": modes}
