"""The search space as data, and `Architecture`: one point in it.

Nothing here imports MXNet: counting, sampling and search run on these values alone. The network
semantics that every other module follows (supernet, subnet, counters, exporters) are derived from a
`SearchSpace` through `Position`, so there is one definition of which block sits where, with which
channels, stride, activation and SE.
"""
import json
import numbers
import re
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from functools import cached_property
from pathlib import Path

from .errors import ArchitectureError
from .jsonfile import read_json

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"  # one character per gene id in the canonical string
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*$")
LAST_BLOCKS = ("original", "mobilenetv3")
# SPACE_B<block ids>_C<channel ids>, then one _<letter><ids> part per optional gene group of the space
ARCH_STRING = re.compile(r"([^_\s/]+)_B([0-9a-z\-]+)_C([0-9a-z\-]+)((?:_[A-Z][0-9a-z\-]+)*)")
FLOAT_BITS = 32     # a layer "quantized" to 32 bits is a float layer (no fake quantization)


def make_divisible(value, divisor=8):
    """Round `value` to the nearest multiple of `divisor`, never below it and never below 90% of value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def se_channels(channels):
    """Width of the SE bottleneck for `channels` inputs: C/4 rounded to a multiple of 8."""
    return make_divisible(channels / 4, 8)


@dataclass(frozen=True)
class BlockChoice:
    """One candidate block: ShuffleNetV2 block 'SNB' or Xception-like block 'SXB', with its kernel."""
    family: str
    kernel: int

    @property
    def name(self):
        return f"{self.family}-{self.kernel}"

    @classmethod
    def parse(cls, name):
        match = re.fullmatch(r"(SNB|SXB)-([1-9][0-9]*)", str(name))
        if not match or int(match.group(2)) % 2 == 0:
            raise ArchitectureError(
                f"unknown block choice {name!r}: use 'SNB-k' (ShuffleNetV2 block) or 'SXB-k' "
                f"(Xception block) with an odd kernel k, e.g. SNB-3, SNB-5, SNB-7, SXB-3")
        return cls(match.group(1), int(match.group(2)))


@dataclass(frozen=True)
class Position:
    """Where one searchable block sits: its channels, stride, spatial size, activation and SE."""
    index: int
    stage: int
    c_in: int
    c_out: int
    stride: int
    in_size: int
    act: str
    se: bool
    in_act: str = None      # the activation its input comes out of (the previous stage's, or the stem's)

    @property
    def out_size(self):
        return conv_out_size(self.in_size, self.stride)

    @property
    def main_in(self):
        """Channels entering the main branch: half of them at stride 1, all of them at stride 2."""
        return self.c_out // 2 if self.stride == 1 else self.c_in

    @property
    def main_out(self):
        """Channels leaving the main branch; the rest of the output is the identity/projection half."""
        return self.c_out // 2 if self.stride == 1 else self.c_out - self.c_in


def conv_out_size(size, stride):
    """Output size of a 'same'-padded odd-kernel convolution: ceil(size / stride)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class SearchSpace:
    """Everything that defines a supernet. Presets: `get_space('oneshot' | 'oneshot+' | 'tiny')`."""
    name: str
    stage_repeats: tuple = (4, 4, 8, 4)
    stage_channels: tuple = (64, 160, 320, 640)
    first_conv: int = 16
    last_conv: int = 1024
    blocks: tuple = ("SNB-3", "SNB-5", "SNB-7", "SXB-3")
    channel_scales: tuple = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
    input_size: int = 224
    num_classes: int = 1000
    se: bool = False
    last_block: str = "original"
    dropout: float = 0.1
    # mixed precision (docs/quantization.md): the bit widths each position's weights and input
    # activations may take (empty: a float space, no bit genes); the stem and the head (first and
    # last layers) compute at `edge_bits` (32: float)
    bit_widths: tuple = ()
    edge_bits: int = 8
    # SE as a searchable operation (the Single-Path NAS journal version's): with `se` set, every
    # position may have an SE module or not, one gene per position; without it SE sits where `se`
    # puts it (stages 3 and 4)
    se_search: bool = False

    def __post_init__(self):
        for name in ("stage_repeats", "stage_channels", "blocks", "channel_scales", "bit_widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    def _validate(self):
        def bad(msg):
            raise ArchitectureError(f"search space {self.name!r}: {msg}")

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            bad("a space name uses lower-case letters, digits and '+.-' only (no '_', it separates "
                "the parts of an architecture string)")
        if len(self.stage_repeats) != len(self.stage_channels) or not self.stage_repeats:
            bad(f"stage_repeats {self.stage_repeats} and stage_channels {self.stage_channels} "
                "must be non-empty and of the same length")
        ints = list(self.stage_repeats) + list(self.stage_channels) + [
            self.first_conv, self.last_conv, self.input_size, self.num_classes]
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in ints):
            bad("repeats, channels, input_size and num_classes must be positive integers")
        for i, c in enumerate(self.stage_channels):
            c_in = self.first_conv if i == 0 else self.stage_channels[i - 1]
            if c <= c_in:
                bad(f"stage {i + 1} has {c} output channels but {c_in} inputs: a stride-2 block "
                    "concatenates its input projection with a main branch, so it must widen")
            if c % 2:
                bad(f"stage {i + 1} has an odd channel count {c}; stride-1 blocks split channels in half")
        if not 1 <= len(self.blocks) <= len(_DIGITS):
            bad(f"needs 1 to {len(_DIGITS)} block choices, got {len(self.blocks)}")
        for b in self.blocks:
            BlockChoice.parse(b)
        if not 1 <= len(self.channel_scales) <= len(_DIGITS):
            bad(f"needs 1 to {len(_DIGITS)} channel scales, got {len(self.channel_scales)}")
        if any(not isinstance(s, (int, float)) or s <= 0 for s in self.channel_scales):
            bad(f"channel scales must be positive numbers, got {self.channel_scales}")
        if list(self.channel_scales) != sorted(set(self.channel_scales)):
            bad(f"channel scales must be strictly increasing, got {self.channel_scales}")
        if self.last_block not in LAST_BLOCKS:
            bad(f"last_block {self.last_block!r} is unknown; choose one of {', '.join(LAST_BLOCKS)}")
        if not 0 <= self.dropout < 1:
            bad(f"dropout must be in [0, 1), got {self.dropout}")
        if any(isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 16 for b in self.bit_widths):
            bad(f"bit widths must be integers from 2 to 16, got {self.bit_widths}")
        if list(self.bit_widths) != sorted(set(self.bit_widths)):
            bad(f"bit widths must be strictly increasing, got {self.bit_widths}")
        if isinstance(self.edge_bits, bool) or self.edge_bits not in tuple(range(2, 17)) + (FLOAT_BITS,):
            bad(f"edge_bits must be an integer from 2 to 16, or {FLOAT_BITS} for float, got {self.edge_bits}")
        if not isinstance(self.se_search, bool):
            bad(f"se_search must be true or false, got {self.se_search!r}")
        if self.se_search and not self.se:
            bad("se_search decides where the SE modules of a space with SE go: set se true as well")
        if self.edge_bits != 8 and not self.bit_widths:
            bad("edge_bits sets the stem's and the head's precision of a quantized space: give bit_widths too")
        narrowest = min(p.c_out for p in self.positions)
        if mid_channels(narrowest, self.channel_scales[0]) < 1:
            bad(f"the smallest scale {self.channel_scales[0]} leaves a block of {narrowest} output "
                "channels with an empty main branch; widen the stages or raise the smallest scale")

    # ----- derived structure -------------------------------------------------------------------
    @cached_property
    def positions(self):
        """The searchable blocks in order, each with its fixed context. In a space that searches SE
        (`se_search`) a position's `se` says that it may have one; an architecture's own positions
        (Architecture.positions) say whether it has."""
        out, size, c_in, index = [], conv_out_size(self.input_size, 2), self.first_conv, 0
        in_act = self.stem_act
        for stage, (repeats, c_out) in enumerate(zip(self.stage_repeats, self.stage_channels)):
            act = self.stage_act(stage)
            for r in range(repeats):
                stride = 2 if r == 0 else 1
                out.append(Position(index, stage, c_in, c_out, stride, size, act,
                                    self.se_search or (self.se and stage >= 2), in_act))
                size, c_in, index, in_act = conv_out_size(size, stride), c_out, index + 1, act
        return tuple(out)

    def position(self, index, se=None):
        """Position `index`, in a space that searches SE with SE gene `se` (an id: 0 off, 1 on)
        applied; as the space has it when `se` is None."""
        p = self.positions[index]
        if se is None:
            return p
        on = self.gene_group("se").values[se]
        return p if p.se == on else replace(p, se=on)

    def stage_act(self, stage):
        """Stage 1 uses ReLU; later stages use hard-swish when the space has SE."""
        return "hard_swish" if (self.se and stage > 0) else "relu"

    @property
    def stem_act(self):
        return "hard_swish" if self.se else "relu"

    @property
    def head_act(self):
        return "hard_swish" if self.se else "relu"

    @property
    def stem_size(self):
        return conv_out_size(self.input_size, 2)

    @property
    def final_size(self):
        return self.positions[-1].out_size

    @property
    def num_positions(self):
        return sum(self.stage_repeats)

    @property
    def num_blocks(self):
        return len(self.blocks)

    @property
    def num_scales(self):
        return len(self.channel_scales)

    @cached_property
    def block_choices(self):
        return tuple(BlockChoice.parse(b) for b in self.blocks)

    @cached_property
    def mid_table(self):
        """mid_table[position][channel_id]: main-branch width at that position and scale."""
        return tuple(tuple(mid_channels(p.c_out, s) for s in self.channel_scales)
                     for p in self.positions)

    def mid(self, position, channel_id):
        return self.mid_table[position][channel_id]

    def max_mid(self, position):
        return self.mid_table[position][-1]

    # ----- (de)serialisation -------------------------------------------------------------------
    @property
    def quantized(self):
        """Whether the space searches bit widths (its paths compute fake-quantized)."""
        return bool(self.bit_widths)

    def to_dict(self):
        """Every field; the optional ones (OPTIONAL_FIELDS) only when they differ from their
        default, so a space without them keeps its files and its cache key."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in fields(self) for v in [getattr(self, f.name)]
                if f.name not in OPTIONAL_FIELDS or v != f.default}

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchitectureError(f"unknown search-space keys {unknown}; known keys: {sorted(known)}")
        if "name" not in data:
            raise ArchitectureError("a search-space definition needs a 'name'")
        return cls(**data)

    def derive(self, name, **changes):
        """A new space from this one with some fields changed, under a new name."""
        data = self.to_dict()
        data.update(changes, name=name)
        return SearchSpace.from_dict(data)

    def with_classes(self, num_classes):
        """This space with its classifier resized to `num_classes` (renamed NAME-cN, so files and
        architecture strings never claim to be the preset); itself when nothing changes."""
        if num_classes is None or num_classes == self.num_classes:
            return self
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ArchitectureError(f"num_classes {num_classes!r}: a classifier needs at least 2 classes")
        return self.derive(f"{self.name}-c{num_classes}", num_classes=num_classes)

    # ----- the gene codec -----------------------------------------------------------------------
    # An architecture as a flat tuple of integer genes, for samplers, cost tables and search
    # strategies: one gene per position for each group, the groups in `gene_groups` order. Nobody
    # else knows the layout; a new kind of gene is one more group here (and a field of Architecture).
    @cached_property
    def gene_groups(self):
        """(GeneGroup, ...) in gene order: the block ids, the channel ids, then the optional groups
        this space has (SE off/on of a space that searches SE, the weight and the activation
        bit-width ids of a quantized space)."""
        groups = [GeneGroup("blocks", "B", "block", self.blocks, "block_names"),
                  GeneGroup("channels", "C", "channel", self.channel_scales, "scales")]
        if self.se_search:
            groups.append(GeneGroup("se", "S", "SE", (False, True), "se_on"))
        if self.bit_widths:
            groups += [GeneGroup("wbits", "W", "weight bit-width", self.bit_widths, "weight_bits"),
                       GeneGroup("abits", "A", "activation bit-width", self.bit_widths, "activation_bits")]
        return tuple(groups)

    def gene_group(self, name):
        for group in self.gene_groups:
            if group.name == name:
                return group
        raise ArchitectureError(f"space {self.name!r} has no {name} genes; its gene groups are "
                                f"{[g.name for g in self.gene_groups]}")

    @property
    def num_genes(self):
        return self.num_positions * len(self.gene_groups)

    def encode(self, arch):
        """The genes of `arch` (a tuple of ints)."""
        return tuple(i for group in self.gene_groups for i in getattr(arch, group.name))

    def decode(self, genes):
        """The Architecture of `genes` (any sequence of integers, numpy included)."""
        return Architecture(self, **self.split(tuple(int(g) for g in genes)))

    def split(self, genes):
        """{group name: its genes}: slices of a sequence, or of the last axis of an array."""
        n = self.num_positions
        return {g.name: genes[..., k * n:(k + 1) * n] if hasattr(genes, "ndim") else genes[k * n:(k + 1) * n]
                for k, g in enumerate(self.gene_groups)}

    def gene_choices(self, **allowed):
        """What each gene may take, for samplers and strategies: an int n (values 0..n-1), or a
        tuple of allowed values (one value freezes the gene). `allowed[group]` is a tuple of ids for
        every position, or a list with one tuple (or one id) per position; e.g.
        gene_choices(channels=(9,)) keeps every channel at the widest scale."""
        unknown = sorted(set(allowed) - {g.name for g in self.gene_groups})
        if unknown:
            raise ArchitectureError(f"unknown gene groups {unknown}; this space has "
                                    f"{[g.name for g in self.gene_groups]}")
        choices = []
        for group in self.gene_groups:
            spec = allowed.get(group.name)
            if spec is None:
                choices += [group.size] * self.num_positions
                continue
            per_position = spec if isinstance(spec, list) else [spec] * self.num_positions
            if len(per_position) != self.num_positions:
                raise ArchitectureError(f"{group.name}: {len(per_position)} entries for "
                                        f"{self.num_positions} positions")
            for values in per_position:
                values = (values,) if isinstance(values, numbers.Integral) else tuple(int(v) for v in values)
                if not values or any(not 0 <= v < group.size for v in values):
                    raise ArchitectureError(f"{group.name} ids {values} are not within 0..{group.size - 1}")
                choices.append(values)
        return choices

    def allowed_ids(self, choices):
        """{group name: [allowed ids of each position as a tuple]} of a gene_choices list."""
        return {name: [tuple(range(c)) if isinstance(c, numbers.Integral) else tuple(c) for c in part]
                for name, part in self.split(list(choices)).items()}


@dataclass(frozen=True)
class GeneGroup:
    """One kind of gene: one per position, each an id into `values`. `name` is the field of
    Architecture that holds them, `letter` marks their part of the canonical string, `label` names
    one of them in messages and `values_key` their values in an architecture's JSON record."""
    name: str
    letter: str
    label: str
    values: tuple
    values_key: str

    @property
    def size(self):
        return len(self.values)


# optional space fields, left out of its dict (and its files) at their defaults
OPTIONAL_FIELDS = ("bit_widths", "edge_bits", "se_search")


def mid_channels(c_out, scale):
    """The one rounding rule for a block's main-branch width: int(c_out // 2 * scale).

    The scale is taken as the exact decimal it is written as (0.6 is 3/5, not 0.59999...), so the
    result never depends on float rounding.
    """
    return int((c_out // 2) * Fraction(str(scale)))


PRESETS = {
    "oneshot": SearchSpace("oneshot"),
    "oneshot+": SearchSpace("oneshot+", se=True, last_block="mobilenetv3", dropout=0.2),
    "tiny": SearchSpace("tiny", stage_channels=(16, 32, 64, 128), first_conv=8, last_conv=256,
                        input_size=32, num_classes=10, se=True, last_block="mobilenetv3",
                        dropout=0.2),
    # `tiny` with one block per stage: the quickstart's demo, where supernet and standalone training
    # converge in seconds on the digits (docs/ranking.md)
    "tiny4": SearchSpace("tiny4", stage_repeats=(1, 1, 1, 1), stage_channels=(16, 32, 64, 128), first_conv=8,
                         last_conv=256, input_size=32, num_classes=10, se=True, last_block="mobilenetv3",
                         dropout=0.2),
}
# the tiny spaces with mixed-precision genes: 2, 3, 4 or 8 bits per position (docs/quantization.md)
PRESETS.update({f"{name}-q": PRESETS[name].derive(f"{name}-q", bit_widths=(2, 3, 4, 8)) for name in ("tiny", "tiny4")})
# SE searched at every position (docs/singlepath.md#se-as-a-searchable-operation)
PRESETS["oneshot+se"] = PRESETS["oneshot+"].derive("oneshot+se", se_search=True)
PRESETS["tiny4-se"] = PRESETS["tiny4"].derive("tiny4-se", se_search=True)


def get_space(name):
    """A preset search space by name; the error lists every valid name."""
    if isinstance(name, SearchSpace):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ArchitectureError(
            f"unknown search space {name!r}; choose one of: {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class Architecture:
    """One network of a space: a block id and a channel-scale id per position, for a quantized
    space a weight and an activation bit-width id per position, and for a space that searches SE an
    SE gene per position. Immutable, hashable.

    Its canonical string (`str(arch)`) is filename-safe and names the net in logs, files and JSON:
    ``oneshot+_B0031-1100-20211020-2132_C6535-2634-25754674-4543`` (stages separated by '-'); a
    quantized space's adds one part per bit group, e.g. ``tiny4-q_B0-1-1-0_C8-6-7-6_W3-3-2-1_A3-3-3-2``,
    and a space that searches SE one part of SE genes (0 off, 1 on): ``tiny4-se_B0-1-1-0_C8-6-7-6_S1-0-0-1``.
    Every gene group of the space (SearchSpace.gene_groups) is one field here; a group the space
    does not have is an empty tuple.
    """
    space: SearchSpace
    blocks: tuple = field(default=())
    channels: tuple = field(default=())
    wbits: tuple = field(default=())
    abits: tuple = field(default=())
    se: tuple = field(default=())

    def __post_init__(self):
        object.__setattr__(self, "space", get_space(self.space))
        space, n = self.space, self.space.num_positions
        groups = {g.name: g for g in space.gene_groups}
        for name in GROUP_FIELDS:
            ids = _as_ids(getattr(self, name), groups[name].label if name in groups else name)
            object.__setattr__(self, name, ids)
            if name not in groups:
                if ids:
                    raise ArchitectureError(
                        f"space {space.name!r} has no {name} genes (its groups: "
                        f"{', '.join(groups)}); leave them out or use a space that has them")
                continue
            group = groups[name]
            if len(ids) != n:
                raise ArchitectureError(
                    f"an architecture of space {space.name!r} needs {n} {group.label} ids (one per "
                    f"position, stages {'/'.join(map(str, space.stage_repeats))}), got {len(ids)}")
            for pos, i in enumerate(ids):
                if not 0 <= i < group.size:
                    names = ", ".join(f"{k}={v}" for k, v in enumerate(group.values))
                    raise ArchitectureError(
                        f"{group.label} id {i} at position {pos} is out of range: space {space.name!r} "
                        f"has {group.size} {group.label} choices ({names})")

    def gene_ids(self):
        """{group name: ids} of every gene group of the space, in gene order."""
        return {g.name: getattr(self, g.name) for g in self.space.gene_groups}

    def replace(self, **ids):
        """This architecture with some gene groups replaced, e.g. arch.replace(wbits=(3,) * n)."""
        return Architecture(self.space, **{**self.gene_ids(), **ids})

    @property
    def positions(self):
        """The space's positions as this network has them (with its SE genes applied, in a space
        that searches SE): what every block of a network of this architecture is built from."""
        if not self.se:
            return self.space.positions
        return tuple(self.space.position(p, se) for p, se in enumerate(self.se))

    @property
    def se_flags(self):
        """Whether each position has an SE module."""
        return tuple(p.se for p in self.positions)

    @property
    def mids(self):
        """Main-branch width of every position."""
        table = self.space.mid_table
        return tuple(table[p][c] for p, c in enumerate(self.channels))

    @property
    def genes(self):
        """The flat gene tuple (see SearchSpace.encode)."""
        return self.space.encode(self)

    def on(self, space, what="the architecture"):
        """This architecture in `space`, which may differ from its own only in name and number of
        classes (e.g. a preset's architecture retrained on 100 classes)."""
        space = get_space(space)
        if space == self.space:
            return self
        mine, theirs = self.space.to_dict(), space.to_dict()
        for d in (mine, theirs):
            d.pop("name"), d.pop("num_classes")
        if mine != theirs:
            raise ArchitectureError(f"{what} {self} is of space {self.space.name!r}, which does not "
                                    f"match space {space.name!r}")
        return Architecture(space, **self.gene_ids())

    @property
    def block_names(self):
        return tuple(self.space.blocks[b] for b in self.blocks)

    @property
    def scales(self):
        return tuple(self.space.channel_scales[c] for c in self.channels)

    @property
    def weight_bits(self):
        """Bit width of each position's weights (empty for a float space)."""
        return tuple(self.space.bit_widths[i] for i in self.wbits)

    @property
    def activation_bits(self):
        """Bit width of each position's input activations (empty for a float space)."""
        return tuple(self.space.bit_widths[i] for i in self.abits)

    def __str__(self):
        return self.to_str()

    def to_str(self):
        return self.space.name + "".join(f"_{g.letter}{self._genes(getattr(self, g.name))}"
                                         for g in self.space.gene_groups)

    def _genes(self, ids):
        groups, start = [], 0
        for repeats in self.space.stage_repeats:
            groups.append("".join(_DIGITS[i] for i in ids[start:start + repeats]))
            start += repeats
        return "-".join(groups)

    @classmethod
    def from_str(cls, text, space=None):
        """Parse a canonical string; `space` is needed only for a space that is not a preset."""
        text = str(text).strip()
        match = ARCH_STRING.fullmatch(text)
        if not match:
            raise ArchitectureError(
                f"{text!r} is not an architecture string; expected SPACE_B<block ids>_C<channel ids>"
                ", e.g. oneshot_B0031-1100-20211020-2132_C6535-2634-25754674-4543")
        name = match.group(1)
        if space is None:
            space = get_space(name)
        elif space.name != name:
            raise ArchitectureError(f"{text!r} belongs to space {name!r}, not {space.name!r}")
        parts = re.findall(r"_([A-Z])([0-9a-z\-]+)", text[len(name):])
        letters = [g.letter for g in space.gene_groups]
        if [letter for letter, _ in parts] != letters:
            raise ArchitectureError(
                f"{text!r}: space {space.name!r} has the parts {', '.join(letters)} in this order, "
                f"not {', '.join(letter for letter, _ in parts)}")
        ids = {}
        for group, (_, genes) in zip(space.gene_groups, parts):
            lengths = tuple(len(g) for g in genes.split("-"))
            if lengths != space.stage_repeats:
                raise ArchitectureError(
                    f"{text!r}: gene groups of lengths {lengths} do not match the stages "
                    f"{space.stage_repeats} of space {space.name!r}")
            ids[group.name] = [_DIGITS.index(ch) for ch in genes.replace("-", "")]
        return cls(space, **ids)

    def to_dict(self):
        data = {"arch": self.to_str(), "space": self.space.name}
        data.update(self.gene_ids())
        data.update({g.values_key: [g.values[i] for i in getattr(self, g.name)] for g in self.space.gene_groups})
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        return {**data, "space_config": self.space.to_dict()}

    @classmethod
    def from_dict(cls, data):
        """From `to_dict`'s record, a hand-written {space, blocks, channels[, wbits, abits]}, or
        {"arch": STRING}."""
        if isinstance(data, dict) and "arch" in data and not {"blocks", "channels"} & set(data):
            config = data.get("space_config")
            return cls.from_str(data["arch"], SearchSpace.from_dict(config) if config else None)
        if not isinstance(data, dict) or not {"space", "blocks", "channels"} <= set(data):
            raise ArchitectureError(
                "an architecture record needs the keys 'space', 'blocks' and 'channels' (or just "
                "'arch', the architecture string)")
        config = data.get("space_config")
        space = SearchSpace.from_dict(config) if config else get_space(data["space"])
        if space.name != data["space"]:
            raise ArchitectureError(
                f"the record names space {data['space']!r} but its space_config is {space.name!r}")
        arch = cls(space, **{name: data.get(name, ()) for name in GROUP_FIELDS})
        if "arch" in data and data["arch"] != arch.to_str():
            raise ArchitectureError(
                f"the record's 'arch' string {data['arch']!r} disagrees with its ids "
                f"({arch.to_str()}); fix or delete one of them")
        return arch

    @classmethod
    def largest(cls, space):
        """Every position at block 0, the widest scale and the most bits (the supernet's default path)."""
        space = get_space(space)
        n = space.num_positions
        return cls(space, **{g.name: [0 if g.name == "blocks" else g.size - 1] * n for g in space.gene_groups})


# every gene group an Architecture can hold (the fields after `space`); a space has some of them
GROUP_FIELDS = tuple(f.name for f in fields(Architecture))[1:]


def _as_ids(values, kind):
    try:
        ids = tuple(values)
    except TypeError:
        raise ArchitectureError(f"{kind} ids must be a sequence of integers, got {values!r}") from None
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ArchitectureError(f"{kind} ids must be integers, got {v!r} in {list(ids)}")
    return tuple(int(v) for v in ids)


# ----- architecture files (models/*.json) ---------------------------------------------------------
def save_architecture(path, arch, record=None):
    """Write `arch` as JSON, with an optional free-form `record` (accuracy, MACs, provenance)."""
    data = arch.to_dict()
    if record:
        data["record"] = record
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def load_architecture(path, with_record=False):
    """An architecture from a JSON file written by `save_architecture` (or by hand: space, blocks,
    channels; or only "arch"), or from its canonical string given instead of a path."""
    if not Path(str(path)).exists() and ARCH_STRING.fullmatch(str(path).strip()):
        arch = Architecture.from_str(path)
        return (arch, {}) if with_record else arch
    path = Path(path)
    data = read_json(path, missing="architecture file {path} does not exist; pass a models/*.json file "
                                   "written by search or training (e.g. models/oneshot-s+.json) or an "
                                   "architecture string",
                     invalid="architecture file {path} is not valid JSON ({err}); "
                             "regenerate it or fix it by hand")
    try:
        arch = Architecture.from_dict(data)
    except ArchitectureError as err:
        raise ArchitectureError(f"{path}: {err}") from None
    return (arch, data.get("record", {})) if with_record else arch
