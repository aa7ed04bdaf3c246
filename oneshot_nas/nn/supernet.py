"""The weight-sharing supernet: every candidate at its widest, and only the sampled path runs.

A forward pass takes an `Architecture` and calls exactly one candidate per position, narrowed to the
architecture's width by slicing the shared weights. Nothing else is computed, so unused candidates
get no gradient at all. The supernet itself is never hybridized (its graph changes every step); only
its fixed stem and head are.
"""
from mxnet import gluon

from .blocks import ChoiceBlock, Head, Stem
from ..errors import ArchitectureError
from ..space import Architecture, get_space


class SuperNet(gluon.Block):
    """All candidates of a `SearchSpace`; `net(x, arch)` runs the path `arch` (default: the widest)."""

    def __init__(self, space, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.space = space = get_space(space)
        self.candidates = []                   # candidates[position][block id]
        with self.name_scope():
            self.stem = Stem(space, momentum, prefix="stem_")
            for p in space.positions:
                row = []
                for b, choice in enumerate(space.block_choices):
                    block = ChoiceBlock(choice, p, space.max_mid(p.index), momentum, prefix=f"p{p.index}b{b}_")
                    self.register_child(block, name=f"p{p.index}b{b}")
                    row.append(block)
                self.candidates.append(row)
            self.head = Head(space, momentum, prefix="head_")
        self.default_arch = Architecture.largest(space)

    def path_blocks(self, arch):
        """The candidate blocks `arch` runs, one per position, already narrowed to its widths."""
        arch = arch or self.default_arch
        if arch.space is not self.space and arch.space != self.space:
            raise ArchitectureError(f"architecture {arch} is of space {arch.space.name!r}, "
                                    f"but this supernet is {self.space.name!r}")
        blocks = []
        for row, b, mid in zip(self.candidates, arch.blocks, arch.mids):
            row[b].set_mid(mid)
            blocks.append(row[b])
        return blocks

    def forward(self, x, arch=None):
        x = self.stem(x)
        for block in self.path_blocks(arch):
            x = block(x)
        return self.head(x)

    def hybridize(self, active=True, **kwargs):
        """Hybridize the fixed stem and head; the choice blocks stay imperative (their graph varies)."""
        self.stem.hybridize(active, **kwargs)
        self.head.hybridize(active, **kwargs)
