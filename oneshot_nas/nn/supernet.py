"""The weight-sharing supernet: every candidate at its widest, and only the sampled path runs.

A forward pass takes an `Architecture` and calls exactly one candidate per position at the
architecture's width: a block for that (candidate, width) that shares the candidate's parameters and
slices them inside its own graph. Nothing else is computed, so unused candidates get no gradient at
all. The supernet as a whole is never one graph (its path changes every step), but each of its parts
is: `hybridize` makes the stem, the head and every (candidate, width) block a cached graph, so a step
costs one graph call per position instead of a Python dispatch per operator.
"""
from mxnet import gluon

from .blocks import ChoiceBlock, Head, Stem
from .. import recipe
from ..errors import ArchitectureError
from ..space import Architecture, get_space


class SuperNet(gluon.Block):
    """All candidates of a `SearchSpace`; `net(x, arch)` runs the path `arch` (default: the widest)."""

    def __init__(self, space, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.space = space = get_space(space)
        self.candidates = []                   # candidates[position][block id]
        widest = recipe.block_precision(space, -1, -1)      # (a quantized space's) at the most bits
        with self.name_scope():
            self.stem = Stem(space, momentum, prefix="stem_")
            for p in space.positions:
                row = []
                for b, choice in enumerate(space.block_choices):
                    block = ChoiceBlock(choice, p, space.max_mid(p.index), momentum, precision=widest,
                                        prefix=f"p{p.index}b{b}_")
                    self.register_child(block, name=f"p{p.index}b{b}")
                    row.append(block)
                self.candidates.append(row)
            self.head = Head(space, momentum, prefix="head_")
        self.default_arch = Architecture.largest(space)
        self._hybridize = None          # how the (candidate, width) blocks are hybridized, if at all

    def path_candidates(self, arch):
        """The candidates `arch` uses, one per position, at their widest (they own the parameters)."""
        arch = arch or self.default_arch
        if arch.space is not self.space and arch.space != self.space:
            raise ArchitectureError(f"architecture {arch} is of space {arch.space.name!r}, "
                                    f"but this supernet is {self.space.name!r}")
        return [row[b] for row, b in zip(self.candidates, arch.blocks)]

    def path_blocks(self, arch):
        """The blocks `arch` runs, one per position, each at the path's width (and bit widths, and
        with or without SE)."""
        arch = arch or self.default_arch
        return [block.width_view(mid, precision, position.se, **(self._hybridize or {}))
                for block, mid, precision, position in zip(self.path_candidates(arch), arch.mids,
                                                           recipe.path_precisions(arch), arch.positions)]

    def forward(self, x, arch=None):
        x = self.stem(x)
        for block in self.path_blocks(arch):
            x = block(x)
        return self.head(x)

    def hybridize(self, active=True, **kwargs):
        """Hybridize every part: the stem, the head and each (candidate, width) block (made as paths
        first need them). The blocks never keep static memory (static_alloc/static_shape): hundreds
        of (candidate, width) graphs each holding their own buffers would grow memory with every new
        width, so they share MXNet's memory pool instead."""
        self.stem.hybridize(active, **kwargs)
        self.head.hybridize(active, **kwargs)
        self._hybridize = {"active": active} if active else None
        for row in self.candidates:
            for block in row:
                for view in [block] + list(block._views.by_mid.values()):
                    view.hybridize(active)
