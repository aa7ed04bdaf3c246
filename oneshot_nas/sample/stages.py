"""HURRICANE's two stages (Zhang et al., 2019): a supernet trained, and searched, on some positions
while the others hold one architecture's choices; first the later positions, then the earlier ones
with the later held at the first stage's winner (scripts/hurricane.sh). This module says which
positions a stage holds, and at what; the samplers (samplers.UniformSampler `fixed`) and the search
(search/run.py) apply it."""
from ..errors import UserError


def fixed_positions(space, free, fixed_from):
    """{position: ids} outside the free range `free` ('A:B'), from the architecture `fixed_from`:
    one id per gene group of the space, in gene order ((block, channel) in a float space, (block,
    channel, wbits, abits) in a quantized one); None when neither is given."""
    from ..space import load_architecture
    if free is None:
        if fixed_from:
            raise UserError("--fixed-from gives the positions a stage holds: add --free-positions A:B",
                            settings="free_positions")
        return None
    n = space.num_positions
    try:
        lo, hi = (int(v) for v in str(free).split(":"))
    except ValueError:
        raise UserError(f"--free-positions {free}: give A:B, positions A to B-1 of 0..{n - 1} (e.g. {n // 2}:{n})",
                        settings="free_positions") from None
    if not 0 <= lo < hi <= n or hi - lo == n:
        raise UserError(f"--free-positions {free}: give A:B with 0 <= A < B <= {n}, not every position "
                        f"(e.g. {n // 2}:{n} for the later half)", settings="free_positions")
    if not fixed_from:
        raise UserError("--free-positions holds the other positions: give their architecture with --fixed-from ARCH",
                        settings="fixed_from")
    arch = load_architecture(fixed_from).on(space, f"--fixed-from {fixed_from}")
    ids = list(arch.gene_ids().values())
    return {p: tuple(group[p] for group in ids) for p in range(n) if not lo <= p < hi}


def hold(space, choices, fixed):
    """`choices` (a gene_choices list) with each position of `fixed` held at its ids (one per gene
    group, see fixed_positions)."""
    choices = list(choices)
    where = space.split(list(range(space.num_genes)))     # {group: the gene index of each position}
    for p, ids in (fixed or {}).items():
        for group, i in zip(space.gene_groups, ids, strict=True):
            choices[where[group.name][p]] = (i,)
    return choices
