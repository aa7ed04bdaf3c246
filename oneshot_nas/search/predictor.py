"""FOX-NAS's fast, explainable predictor: a multivariate (ridge) regression on architecture features.

Features of a candidate (genes in the gene_choices layout):
- one indicator per (gene, value) for every gene with more than one allowed value (which block /
  which width at each position), the explainable part: each coefficient says how much that choice
  adds to or takes from the prediction, all else equal;
- optional numeric features from `extra(genes) -> {name: value}` (`for_space` adds MACs in
  millions and each stage's mean width scale).

Every column is standardised over the fitted candidates; the fit is ridge regression in closed
form, w = (X'X + alpha I)^-1 X'(y - mean y), so a few dozen candidates suffice and refitting
costs microseconds. `coefficients()` reports the weights in the features' own units (per unit
of the feature, not per standard deviation), largest effect first. Numpy only.
"""
import numpy as np

from ..sample.genes import free_genes


class LinearPredictor:
    """Predicts a score from genes; `names[i]` labels gene i and `value_names[i][v]` its value v."""

    def __init__(self, choices, extra=None, names=None, value_names=None, alpha=1.0):
        self.choices, self.extra, self.alpha = list(choices), extra, alpha
        self.columns = []                               # (gene, value) per indicator column
        for i in free_genes(self.choices):
            c = self.choices[i]
            for v in (range(c) if isinstance(c, (int, np.integer)) else c):
                self.columns.append((i, int(v)))
        self.names = names or [f"gene {i}" for i in range(len(self.choices))]
        self.value_names = value_names
        self.extra_names = None
        self.weights = None

    def features(self, genes_list):
        genes = np.asarray(genes_list, dtype=np.int64).reshape(len(genes_list), -1)
        onehot = np.stack([genes[:, i] == v for i, v in self.columns], axis=1).astype(np.float64) \
            if self.columns else np.zeros((len(genes), 0))
        if self.extra is None:
            return onehot
        rows = [self.extra(tuple(g)) for g in genes]
        if self.extra_names is None:
            self.extra_names = list(rows[0])
        numeric = np.array([[r[n] for n in self.extra_names] for r in rows], dtype=np.float64)
        return np.concatenate([onehot, numeric], axis=1)

    def fit(self, genes_list, scores):
        x = self.features(genes_list)
        y = np.asarray(scores, dtype=np.float64)
        if len(y) < 2:
            raise ValueError("a predictor needs at least 2 scored candidates")
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0)
        self.scale[self.scale == 0] = 1.0               # a constant column gets weight 0
        z = (x - self.mean) / self.scale
        self.offset = y.mean()
        self.weights = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]), z.T @ (y - self.offset))
        return self

    def predict(self, genes_list):
        return (self.features(genes_list) - self.mean) / self.scale @ self.weights + self.offset

    def labels(self):
        out = []
        for i, v in self.columns:
            value = self.value_names[i][v] if self.value_names else str(v)
            out.append(f"{self.names[i]} = {value}")
        return out + list(self.extra_names or [])

    def coefficients(self):
        """[(feature, weight per unit of the feature)], the largest effect (weight x its standard
        deviation over the fitted candidates) first; an indicator's weight is what that choice adds."""
        per_unit = self.weights / self.scale
        effect = np.abs(self.weights)
        return [(self.labels()[k], float(per_unit[k])) for k in np.argsort(-effect)]


def for_space(space, choices, costs):
    """The predictor of a search space's architectures (genes in `choices`, a gene_choices list):
    an indicator per (position, block) and (position, width), MACs in millions (`costs`, a
    CostModel) and each stage's mean width scale, every feature named for the explanation."""
    labels = {"blocks": [f"{c.family}-{c.kernel}" for c in space.block_choices],
              "channels": [f"x{scale}" for scale in space.channel_scales], "se": ["no SE", "SE"]}
    names, values = [], []
    for group in space.gene_groups:
        for p in range(space.num_positions):
            names.append(f"p{p} {'block' if group.name == 'blocks' else 'width' if group.name == 'channels' else group.name}")
            values.append(labels.get(group.name, [str(v) for v in range(group.size)]))
    stages = sorted({p.stage for p in space.positions})

    def extra(genes):
        arch = space.decode(genes)
        out = {"MACs (M)": costs.measure(arch)["macs"] / 1e6}
        for stage in stages:
            scales = [space.channel_scales[c] for c, p in zip(arch.channels, space.positions) if p.stage == stage]
            out[f"stage {stage} mean width scale"] = float(np.mean(scales))
        return out
    return LinearPredictor(choices, extra=extra, names=names, value_names=values)
