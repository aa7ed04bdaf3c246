"""Single-Path NAS's superkernel network over our space (Stamoulis et al., 2019; docs/singlepath.md).

At each position the SNB-k choices of the space share ONE block: its depthwise kernel is the widest
k (7x7 in the presets) and its main branch the widest width. Which kernel and which width the
position uses is decided by the weights themselves, against learned thresholds:
- kernel: the k_j x k_j kernel minus the k_(j-1) x k_(j-1) core is a "shell"; shell j is used iff
  its root-mean-square (over every channel) exceeds its threshold, and only if shell j-1 is used;
- width: the main-branch channels split into groups at the space's widths mid_0 < mid_1 < ...;
  group j (channels mid_(j-1)..mid_j) is kept iff the RMS of its channels' k_0 x k_0 cores exceeds
  its threshold, and only if group j-1 is kept (group 0 is always kept).
The decision is an indicator in the forward pass (so the network computes exactly the SNB-k block
of the chosen width: unused shells are zero, dropped channels are zeroed after their BatchNorm) and
a sigmoid in the backward pass (straight-through): 1(log rms > u) forward, sigmoid((log rms - u) / T)
backward, with u = log(threshold) learned like any weight. Thresholds live on a log scale so one
temperature and one learning rate suit every layer whatever its weights' scale.

- SE (a space that searches SE, `se_search`): every position holds an SE module, used iff the
  RMS of its two 1x1 convolutions' weights exceeds its threshold, as in the journal version. The
  block's output is y + 1(SE) x (SE(y) - y): exactly y or SE(y) forward, and the threshold learns
  from what SE would change. In a space that does not search SE, SE sits where the space puts it.

SXB-3 is not a subset of an SNB superkernel (three depthwise/pointwise pairs, not one), so it has no
place in one: a family gate would run both branches, the multi-path cost Single-Path NAS exists to
avoid. This method searches the SNB-k choices of the space. The space has no skip operation.
"""
import math

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import HybridBlock

from .. import recipe
from ..errors import UserError
from ..space import Architecture, get_space
from .blocks import Head, Stem, conv_unit
from .layers import ConvUnit, ElasticBatchNorm, SqueezeExcite, channel_shuffle, concat_channels
from .subnet import SubNet, copy_prefix_weights


ALL_ON = -60.0     # a log-threshold no weight's log-RMS falls below
EPS = 1e-20        # added to mean squares before their log


class Layout:
    """What the superkernel decides in a space: the SNB block ids by kernel size, and per position
    the main-branch widths that bound its channel groups."""

    def __init__(self, space):
        self.space = space = get_space(space)
        extra = [g.name for g in space.gene_groups if g.name not in ("blocks", "channels", "se")]
        if extra:
            raise UserError(f"space {space.name!r} also has {'/'.join(extra)} genes, which a superkernel "
                            "does not encode: Single-Path NAS searches float spaces (bit widths are searched "
                            "by the supernet pipeline, docs/quantization.md)")
        snb = sorted((c.kernel, b) for b, c in enumerate(space.block_choices) if c.family == "SNB")
        if not snb:
            raise UserError(f"space {space.name!r} has no SNB-k block: a superkernel encodes the "
                            f"kernel sizes of ShuffleNetV2 blocks (its blocks: {', '.join(space.blocks)})")
        self.searches_se = space.se_search               # one SE decision per position
        self.kernels = tuple(k for k, _ in snb)          # ascending, e.g. (3, 5, 7)
        self.block_ids = tuple(b for _, b in snb)        # the block id of each kernel
        self.mids = space.mid_table                     # mids[p][c]: the width of channel id c
        for p, mids in enumerate(self.mids):
            if len(set(mids)) != len(mids):
                raise UserError(f"space {space.name!r}: position {p} has equal widths {mids} for "
                                "different channel scales, so a channel group would be empty")

    @property
    def num_kernel_decisions(self):
        return len(self.kernels) - 1

    @property
    def num_width_decisions(self):
        return self.space.num_scales - 1

    def architecture(self, kernel_ids, width_ids, se_ids=None):
        """The Architecture of per-position kernel indices (into `kernels`), channel ids and, in a
        space that searches SE, SE ids (0 off, 1 on)."""
        se = {"se": list(se_ids)} if self.searches_se else {}
        return Architecture(self.space, [self.block_ids[k] for k in kernel_ids], list(width_ids), **se)


# ----- decisions ------------------------------------------------------------------------------------
def _crop(F, w, size, full):
    """The centre size x size of a (C, 1, full, full) kernel."""
    start = (full - size) // 2
    w = F.slice_axis(w, axis=2, begin=start, end=start + size)
    return F.slice_axis(w, axis=3, begin=start, end=start + size)


def _sum_squares(F, w):
    return F.sum(F.square(w)).reshape((1,))


def indicator(F, log_stat, log_threshold, temperature):
    """1(log_stat > log_threshold) forward, sigmoid((log_stat - log_threshold) / temperature)'s
    gradient backward (both inputs of the same shape)."""
    soft = F.sigmoid((log_stat - log_threshold) / temperature)
    hard = F.broadcast_greater(log_stat, log_threshold)
    return hard + soft - F.BlockGrad(soft)


def cumulative(F, ind, n):
    """[ind_0, ind_0 * ind_1, ...]: decision j holds only if every earlier one does (n >= 1)."""
    out = [F.slice_axis(ind, axis=0, begin=0, end=1)]
    for j in range(1, n):
        out.append(out[-1] * F.slice_axis(ind, axis=0, begin=j, end=j + 1))
    return out


def sums_of_squares(F, weight, kernels, mids):
    """(crops, groups): the sum of squares of each k x k centre of `weight` (every channel), and of
    each channel group's k_0 x k_0 cores beyond the first, as lists of (1,)-arrays."""
    full = kernels[-1]
    core = _crop(F, weight, kernels[0], full)
    return ([_sum_squares(F, _crop(F, weight, k, full)) for k in kernels],
            [_sum_squares(F, F.slice_axis(core, axis=0, begin=mids[j - 1], end=mids[j])) for j in range(1, len(mids))])


def mean_squares(crops, groups, kernels, mids):
    """(shells, groups): the mean square of each kernel shell (over every channel) and of each
    channel group beyond the first, from sums_of_squares (arrays, or floats): what the decisions
    compare with their thresholds, in log-RMS."""
    shells = [(crops[j] - crops[j - 1]) / (mids[-1] * (kernels[j] ** 2 - kernels[j - 1] ** 2))
              for j in range(1, len(kernels))]
    return shells, [g / ((mids[j + 1] - mids[j]) * kernels[0] ** 2) for j, g in enumerate(groups)]


def decide(F, weight, kernel_thresholds, width_thresholds, kernels, mids, temperature):
    """(kernel coefficients, width coefficients) of one position's depthwise superkernel `weight`
    (max_mid, 1, K, K): lists of (1,)-shaped cumulative indicators, one per shell and one per
    channel group beyond the first."""
    weight = F.BlockGrad(weight)        # the decisions train the thresholds, not the weights' norms
    coefficients = []
    stats_of = mean_squares(*sums_of_squares(F, weight, kernels, mids), kernels, mids)
    for stats, thresholds in zip(stats_of, (kernel_thresholds, width_thresholds)):
        if not stats:
            coefficients.append([])
            continue
        log_rms = 0.5 * F.log((F.concat(*stats, dim=0) if len(stats) > 1 else stats[0]) + EPS)
        coefficients.append(cumulative(F, indicator(F, log_rms, thresholds, temperature), len(stats)))
    return tuple(coefficients)


def se_mean_square(sums, size):
    """The mean square of an SE module's two 1x1 convolution weights from their sums of squares
    (arrays, or floats) and their `size` elements in all: what its decision compares with its
    threshold, in log-RMS."""
    return (sums[0] + sums[1]) / size


def decide_se(F, reduce_weight, expand_weight, threshold, temperature, size):
    """The SE coefficient of one position: a (1,)-indicator of the log-RMS of its weights over
    `threshold`."""
    sums = [_sum_squares(F, F.BlockGrad(w)) for w in (reduce_weight, expand_weight)]
    return indicator(F, 0.5 * F.log(se_mean_square(sums, size) + EPS), threshold, temperature)


def masked_kernel(F, weight, kernel_coef, kernels):
    """The superkernel with the unused shells zeroed: core + sum_j coef_j * (shell j)."""
    full = kernels[-1]

    def padded(k):
        pad = (full - k) // 2
        crop = _crop(F, weight, k, full)
        return crop if pad == 0 else F.pad(crop, mode="constant", pad_width=(0, 0, 0, 0, pad, pad, pad, pad))
    crops = [padded(k) for k in kernels]
    out = crops[0]
    for j, coef in enumerate(kernel_coef, start=1):
        out = out + F.broadcast_mul(crops[j] - crops[j - 1], coef.reshape((1, 1, 1, 1)))
    return out


def channel_mask(F, width_coef, mids):
    """(1, max_mid, 1, 1): 1 on the first group's channels, coef_j on group j's."""
    first = F.ones_like(width_coef[0])
    parts = [F.broadcast_to(first, shape=(mids[0],))]
    parts += [F.broadcast_to(c, shape=(mids[j + 1] - mids[j],)) for j, c in enumerate(width_coef)]
    return F.concat(*parts, dim=0).reshape((1, -1, 1, 1))


# ----- layers ---------------------------------------------------------------------------------------
class SuperDepthwise(HybridBlock):
    """The main branch's depthwise superkernel, its BatchNorm, and the position's thresholds.

    `x -> (y, kernel coefficients...)`: y is the masked kernel's convolution, normalised, with the
    dropped channel groups zeroed after BatchNorm (zeros before it would come out as BN's offset)."""

    def __init__(self, layout, position, momentum=0.9, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.kernels, self.mids = layout.kernels, layout.mids[position.index]
        self.stride, self.temperature = position.stride, temperature
        channels, k = self.mids[-1], self.kernels[-1]
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(channels, 1, k, k))
            # log-thresholds: set from the initial weights by init_thresholds (every decision on)
            self.kernel_thresholds = (self.params.get("kernel_thresholds", shape=(len(self.kernels) - 1,),
                                                      init="zeros", wd_mult=0.0)
                                      if len(self.kernels) > 1 else None)
            self.width_thresholds = (self.params.get("width_thresholds", shape=(len(self.mids) - 1,),
                                                     init="zeros", wd_mult=0.0)
                                     if len(self.mids) > 1 else None)
            self.bn = ElasticBatchNorm(channels, momentum)

    def coefficients(self, F, weight, kernel_thresholds=None, width_thresholds=None):
        return decide(F, weight, kernel_thresholds, width_thresholds, self.kernels, self.mids, self.temperature)

    def hybrid_forward(self, F, x, weight, kernel_thresholds=None, width_thresholds=None):
        kernel_coef, width_coef = self.coefficients(F, weight, kernel_thresholds, width_thresholds)
        k = self.kernels[-1]
        y = F.Convolution(x, masked_kernel(F, weight, kernel_coef, self.kernels), no_bias=True,
                          kernel=(k, k), stride=(self.stride,) * 2, pad=(k // 2,) * 2,
                          num_filter=self.mids[-1], num_group=self.mids[-1])
        y = self.bn(y)
        if width_coef:
            y = F.broadcast_mul(y, channel_mask(F, width_coef, self.mids))
        if not kernel_coef:
            return y
        return (y,) + tuple(kernel_coef)


class SuperProjection(HybridBlock):
    """The stride-2 shortcut (k x k depthwise stride 2, BN, 1x1, BN, act) with a superkernel whose
    shells follow the main branch's kernel decision."""

    def __init__(self, layout, position, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.kernels = layout.kernels
        c, k = position.c_in, self.kernels[-1]
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(c, 1, k, k))
            self.bn = ElasticBatchNorm(c, momentum)
            self.pw = conv_unit(recipe.projection_branch(layout.space.block_choices[layout.block_ids[-1]],
                                                         position)[1], momentum)

    def hybrid_forward(self, F, x, *kernel_coef, weight):
        k, c = self.kernels[-1], self.weight.shape[0]
        y = F.Convolution(x, masked_kernel(F, weight, list(kernel_coef), self.kernels), no_bias=True,
                          kernel=(k, k), stride=(2, 2), pad=(k // 2,) * 2, num_filter=c, num_group=c)
        return self.pw(self.bn(y))


class SuperkernelBlock(HybridBlock):
    """One position: a ShuffleNetV2 block whose depthwise kernel size and main-branch width are
    decided by SuperDepthwise (see the module docstring)."""

    def __init__(self, layout, position, momentum=0.9, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.position = position
        widest = layout.space.block_choices[layout.block_ids[-1]]
        specs = recipe.main_branch(widest, position, layout.mids[position.index][-1])
        with self.name_scope():
            self.proj = SuperProjection(layout, position, momentum, prefix="proj_") if position.stride == 2 else None
            self.expand = ConvUnit(specs[0], momentum, prefix="expand_")
            self.depthwise = SuperDepthwise(layout, position, momentum, temperature, prefix="dw_")
            self.project = ConvUnit(specs[2], momentum, prefix="project_")
            self.se = (SqueezeExcite(recipe.se_layers(position.main_out, position.act), prefix="se_")
                       if position.se else None)
            self.searches_se = layout.searches_se and position.se
            if self.searches_se:
                self.se_thresholds = self.params.get("se_thresholds", shape=(1,), init="zeros", wd_mult=0.0)
        if self.searches_se:
            # the SE decision reads the SE's own weights: registered here too (outside the name
            # scope, so they stay the SE's parameters), hybrid_forward receives them
            self.se_reduce_weight = self.se.reduce.conv.weight
            self.se_expand_weight = self.se.expand.conv.weight
            self.se_size = sum(math.prod(p.shape) for p in self.se_params()[1:])
            self.temperature = temperature

    def se_params(self):
        """(threshold, reduce weight, expand weight): what the SE decision is computed from."""
        return self.se_thresholds, self.se.reduce.conv.weight, self.se.expand.conv.weight

    def se_coefficient(self, F, se_thresholds, se_reduce_weight, se_expand_weight):
        """The (1,)-indicator of this position's SE (decide_se)."""
        return decide_se(F, se_reduce_weight, se_expand_weight, se_thresholds, self.temperature, self.se_size)

    def hybrid_forward(self, F, x, se_thresholds=None, se_reduce_weight=None, se_expand_weight=None):
        if self.position.stride == 1:
            x = channel_shuffle(F, x)
            identity, x = F.split(x, num_outputs=2, axis=1)
        y = self.depthwise(self.expand(x))
        kernel_coef = ()
        if isinstance(y, (list, tuple)):
            y, kernel_coef = y[0], tuple(y[1:])
        y = self.project(y)
        if self.searches_se:        # y + 1(SE) x (SE(y) - y): y or SE(y) forward
            coef = self.se_coefficient(F, se_thresholds, se_reduce_weight, se_expand_weight)
            y = y + F.broadcast_mul(self.se(y) - y, coef.reshape((1, 1, 1, 1)))
        elif self.se is not None:
            y = self.se(y)
        if self.position.stride == 2:
            identity = self.proj(x, *kernel_coef)
        return concat_channels(F, identity, y)


class SuperkernelNet(HybridBlock):
    """Stem, one SuperkernelBlock per position, head: one network, one path, every decision in
    its weights. `decisions(ctx)` gives the per-position coefficients for the runtime loss, and
    `architecture()` the network it computes now."""

    def __init__(self, space, momentum=0.9, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.layout = Layout(space)
        self.space = space = self.layout.space
        self.temperature = temperature
        if not temperature > 0:
            raise UserError(f"the sigmoid temperature must be > 0, got {temperature}", settings="temperature")
        with self.name_scope():
            self.stem = Stem(space, momentum, prefix="stem_")
            self.blocks = []
            for p in space.positions:
                block = SuperkernelBlock(self.layout, p, momentum, temperature, prefix=f"p{p.index}_")
                self.register_child(block, name=f"p{p.index}")
                self.blocks.append(block)
            self.head = Head(space, momentum, prefix="head_")

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def decisions(self, ctx):
        """Per position (kernel coefficients, width coefficients, SE coefficients) as lists of
        (1,)-NDArrays on `ctx` (SE: one, in a space that searches it, else none), computed from the
        weights there (recorded when autograd is, so a loss on them trains the thresholds)."""
        out = []
        for block in self.blocks:
            dw = block.depthwise
            thresholds = [t.data(ctx) if t is not None else None
                          for t in (dw.kernel_thresholds, dw.width_thresholds)]
            se = ([block.se_coefficient(mx.nd, *(p.data(ctx) for p in block.se_params()))]
                  if block.searches_se else [])
            out.append(dw.coefficients(mx.nd, dw.weight.data(ctx), *thresholds) + (se,))
        return out

    def architecture(self, ctx=None):
        """The Architecture the network computes with its current weights and thresholds."""
        ctx = ctx or self.stem.collect_params().list_ctx()[0]
        with autograd.pause():
            decisions = self.decisions(ctx)
        kernel_ids, width_ids, se_ids = ([_count_on(d[k]) for d in decisions] for k in range(3))
        return self.layout.architecture(kernel_ids, width_ids, se_ids)

    def init_thresholds(self, fraction=0.5):
        """Every log-threshold at log(fraction x the statistic it is compared with), from the
        current weights: with fraction < 1 the search starts from the largest network."""
        if not 0 < fraction < 1:
            raise UserError(f"the threshold initialisation must be in (0, 1) (a fraction of the "
                            f"initial weights' RMS), got {fraction}", settings="threshold_init")
        for block in self.blocks:
            dw = block.depthwise
            for param, stats in zip((dw.kernel_thresholds, dw.width_thresholds, _se_threshold(block)),
                                    _mean_squares(dw) + (_se_mean_square(block),)):
                if param is not None:
                    values = mx.nd.array([0.5 * math.log(s + EPS) + math.log(fraction) for s in stats])
                    param.set_data(values)

    def set_all_on(self):
        """Every log-threshold far below any statistic: every shell and channel group used, and
        the sigmoid's gradient negligible (e.g. while the weights warm up)."""
        for name, param in self.collect_params().items():
            if name.endswith("thresholds"):
                param.set_data(mx.nd.full(param.shape, ALL_ON))

    def thresholds(self):
        """Per position {'kernel': [...], 'width': [...]} log-thresholds and the log-RMS statistics
        they are compared with (for the records and curves)."""
        out = []
        for block in self.blocks:
            dw = block.depthwise
            row = {}
            for name, param, stats in zip(("kernel", "width", "se"),
                                          (dw.kernel_thresholds, dw.width_thresholds, _se_threshold(block)),
                                          _mean_squares(dw) + (_se_mean_square(block),)):
                if param is not None:
                    row[name] = [round(float(v), 5) for v in param.data(param.list_ctx()[0]).asnumpy()]
                    row[f"{name}_stat"] = [round(0.5 * math.log(s + EPS), 5) for s in stats]
            out.append(row)
        return out


def _count_on(coefficients):
    """How many leading cumulative indicators are 1 (a kernel or channel id)."""
    return sum(int(round(float(c.asscalar()))) for c in coefficients)


def _se_threshold(block):
    return block.se_thresholds if block.searches_se else None


def _se_mean_square(block):
    """[the mean square of the SE weights] of a block that searches SE, else []."""
    if not block.searches_se:
        return []
    sums = [float(_sum_squares(mx.nd, p.data(p.list_ctx()[0])).asscalar()) for p in block.se_params()[1:]]
    return [se_mean_square(sums, block.se_size)]


def _mean_squares(dw):
    """mean_squares of a SuperDepthwise's current weight in Python floats (for initialisation and records)."""
    w = dw.weight.data(dw.weight.list_ctx()[0])
    crops, groups = ([float(v.asscalar()) for v in part] for part in sums_of_squares(mx.nd, w, dw.kernels, dw.mids))
    return mean_squares(crops, groups, dw.kernels, dw.mids)


# ----- the network it computes ----------------------------------------------------------------------
def extract_subnet(net, arch=None, ctx=None):
    """The SubNet of `arch` (default: the net's current decisions) with the superkernel's weights:
    the k x k centre of each depthwise kernel and the first `mid` channels of the main branch. With
    the decisions it was made of, it computes what the superkernel network computes."""
    arch = arch or net.architecture()
    ctx = ctx or net.stem.collect_params().list_ctx()[0]
    sub = SubNet(arch)
    sub.initialize(mx.init.Zero(), ctx=ctx)
    copy_prefix_weights(net.stem, sub.stem, ctx)
    copy_prefix_weights(net.head, sub.head, ctx)
    full = net.layout.kernels[-1]
    for block, target, b, mid in zip(net.blocks, sub.features, arch.blocks, arch.mids):
        k = arch.space.block_choices[b].kernel
        if arch.space.block_choices[b].family != "SNB":
            raise UserError(f"{arch} uses {arch.space.blocks[b]} at position {block.position.index}: "
                            "a superkernel network holds SNB-k blocks only")
        main = list(target.main)
        copy_prefix_weights(block.expand, main[0], ctx)
        _copy_depthwise(block.depthwise.weight, block.depthwise.bn, main[1], k, full, ctx)
        copy_prefix_weights(block.project, main[2], ctx)
        if target.se is not None:
            copy_prefix_weights(block.se, target.se, ctx)
        if block.proj is not None:
            proj = list(target.proj)
            _copy_depthwise(block.proj.weight, block.proj.bn, proj[0], k, full, ctx)
            copy_prefix_weights(block.proj.pw, proj[1], ctx)
    return sub


def _copy_depthwise(weight, bn, unit, k, full, ctx):
    """A depthwise ConvUnit of kernel k and its (narrower) width from a superkernel and its BN."""
    channels = unit.conv.weight.shape[0]
    w = _crop(mx.nd, weight.data(weight.list_ctx()[0]), k, full)
    unit.conv.weight.set_data(mx.nd.slice_axis(w, axis=0, begin=0, end=channels).as_in_context(ctx))
    copy_prefix_weights(bn, unit.bn, ctx)
