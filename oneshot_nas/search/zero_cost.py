"""Zero-cost scoring of supernet paths from BatchNorm scaling factors (BN-NAS).

BN-NAS (Chen et al., 2021) ranks candidates by the magnitude of the BN scaling factors gamma they
learnt in the supernet: an op whose output the network scales up matters more. Here a block at
one width scores the mean |gamma| over the active channels of its main-branch BatchNorms (all of
them, so the channel choice counts too: narrower widths use a prefix of each layer's channels), and
a path scores the mean over its positions. No data and no forward pass: every (position, block,
width) entry is computed once per supernet, and a path's score is 20 table lookups.
"""
import numpy as np

from .. import recipe


class BNScores:
    """Table of block scores of one trained supernet: `table[p, b, c]`; `score(arch)` averages."""

    def __init__(self, supernet):
        space = supernet.space
        self.space = space
        self.table = np.zeros((space.num_positions, space.num_blocks, space.num_scales))
        for p, position in enumerate(space.positions):
            for b, choice in enumerate(space.block_choices):
                block = supernet.candidates[p][b]
                gammas = [np.abs(unit.bn.gamma.data(unit.bn.gamma.list_ctx()[0]).asnumpy())
                          for unit in block.main if unit.bn is not None]
                for c in range(space.num_scales):
                    specs = [s for s in recipe.main_branch(choice, position, space.mid(p, c)) if s.bn]
                    self.table[p, b, c] = np.mean([g[:s.c_out].mean() for g, s in zip(gammas, specs)])
        self._rows = np.arange(space.num_positions)

    def score(self, arch):
        return float(self.table[self._rows, arch.blocks, arch.channels].mean())

