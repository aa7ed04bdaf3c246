"""Gene-level operators over any discrete gene space: draw, mutate, cross over.

`choices[i]` is the number of values gene i can take (0..n-1) or a sequence of the values allowed
(SearchSpace.gene_choices builds it for architectures). Every function takes an explicit
`numpy.random.Generator`, so a run replays from its seed. No MXNet, no architectures here.
"""
import numpy as np


def _draw(choice, rng):
    """A uniform value of one gene: `choice` is a count (values 0..n-1) or a sequence of values."""
    if isinstance(choice, (int, np.integer)):
        return int(rng.integers(choice))
    return int(choice[rng.integers(len(choice))])


def random_genes(choices, rng):
    """One uniformly random value per gene."""
    return tuple(_draw(c, rng) for c in choices)


def mutate(genes, choices, rng, prob):
    """Each gene is redrawn uniformly from its allowed values with probability `prob`."""
    return tuple(_draw(c, rng) if rng.random() < prob else g for g, c in zip(genes, choices))


def crossover(a, b, rng):
    """Uniform crossover: each gene from either parent with equal probability."""
    return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))


def mutate_some(genes, choices, rng, count):
    """`count` distinct genes among those with more than one allowed value (fewer if fewer are
    free), each changed to another of its values: a child that always differs from its parent."""
    free = free_genes(choices)
    out = list(genes)
    for i in sorted(rng.choice(len(free), size=min(count, len(free)), replace=False)):
        c = choices[free[i]]
        others = [v for v in (range(c) if isinstance(c, (int, np.integer)) else c) if v != genes[free[i]]]
        out[free[i]] = int(others[rng.integers(len(others))])
    return tuple(out)


def free_genes(choices):
    """The indices of the genes that can take more than one value."""
    return [i for i, c in enumerate(choices) if (int(c) if isinstance(c, (int, np.integer)) else len(c)) > 1]
