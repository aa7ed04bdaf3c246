"""ShuffleNetV2 (SNB-k) and Xception (SXB-k) choice blocks, the stem and the head, from recipes.

The same classes serve the supernet and the fixed subnet. A ChoiceBlock computes at one main-branch
width `mid` with parameters for `max_mid`: the subnet builds each block at its own width
(mid == max_mid); the supernet owns each candidate at its widest and runs it through one block per
width that shares those parameters (`width_view`), each a fixed graph it can hybridize.
"""
from dataclasses import replace
from types import SimpleNamespace

from mxnet.gluon import HybridBlock, nn

from .. import recipe
from .layers import ConvUnit, QuantDense, SqueezeExcite, channel_shuffle, concat_channels


def conv_unit(spec, momentum=0.9, fold_bn=False, active=None, precision=None):
    """A ConvUnit for `spec` (computing at the widths of `active`, a narrower spec, and
    fake-quantized at `precision` if given); with `fold_bn`, its BN-free twin (see recipe.fold_bn)."""
    if fold_bn:
        if precision is not None:
            raise ValueError("a fake-quantized network has no merged-BN twin: its weights are "
                             "quantized before BatchNorm, not after it")
        return ConvUnit(recipe.fold_bn(spec), momentum, active and recipe.fold_bn(active))
    return ConvUnit(spec, momentum, active, precision)


class ChoiceBlock(HybridBlock):
    """One candidate block at one position, computing at main-branch width `mid` with parameters
    for widths up to `max_mid` (default `mid`).

    Stride 1 (C_in == C_out == C): shuffle channels, pass the first C/2 through, run the main branch
    on the other C/2, concatenate. Stride 2: a projection branch and the main branch both see the whole
    input; output = concat(projection, main). `fold_bn` builds it without BatchNorm (merged-BN export).
    With `precision` (recipe.Precision) every conv of the block computes fake-quantized at it.
    """

    def __init__(self, choice, position, mid, momentum=0.9, fold_bn=False, max_mid=None, precision=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.choice, self.position = choice, position
        self.mid, self.max_mid = mid, max_mid or mid
        self.momentum, self.fold_bn, self.precision = momentum, fold_bn, precision
        self._views = SimpleNamespace(by_mid={})    # (not a dict attribute: Gluon would warn)
        with self.name_scope():
            self.proj = nn.HybridSequential(prefix="proj_")
            with self.proj.name_scope():
                for spec in recipe.projection_branch(choice, position):
                    self.proj.add(conv_unit(spec, momentum, fold_bn, precision=precision))
            self.main = nn.HybridSequential(prefix="main_")
            with self.main.name_scope():
                for spec, active in zip(recipe.main_branch(choice, position, self.max_mid),
                                        recipe.main_branch(choice, position, mid)):
                    self.main.add(conv_unit(spec, momentum, fold_bn, active, precision))
            self.se = (SqueezeExcite(recipe.se_layers(position.main_out, position.act), precision, prefix="se_")
                       if position.se else None)

    def width_view(self, mid, precision=None, se=None, **hybridize):
        """A block computing at width `mid` (at `precision`, for a quantized block, and without its
        SE module if `se` is False) on this block's own parameters (made once per width, precision
        and SE, hybridized with `hybridize` if given); this block itself at its own width and
        precision, with its SE."""
        precision = precision or self.precision
        se = self.position.se if se is None else se
        if se and not self.position.se:
            raise ValueError(f"{self.name} has no SE module to run")
        if mid == self.mid and precision == self.precision and se == self.position.se:
            return self
        key = (mid, precision, se)
        if key not in self._views.by_mid:
            shared = self.collect_params()
            position = self.position if se == self.position.se else replace(self.position, se=se)
            view = ChoiceBlock(self.choice, position, mid, self.momentum, self.fold_bn, self.max_mid,
                               precision, prefix=self.prefix, params=shared)
            own = [p for name, p in view.collect_params().items() if name not in shared]
            contexts = next(iter(shared.values())).list_ctx()
            for param in own:       # the narrowed BatchNorms' own running statistics (never saved)
                param.initialize(ctx=contexts)
            if hybridize:
                view.hybridize(**hybridize)
            self._views.by_mid[key] = view      # (not a child: the shared parameters count once)
        return self._views.by_mid[key]

    def hybrid_forward(self, F, x):
        if self.position.stride == 1:
            x = channel_shuffle(F, x)
            identity, x = F.split(x, num_outputs=2, axis=1)
        else:
            identity = self.proj(x)
        x = self.main(x)
        if self.se is not None:
            x = self.se(x)
        return concat_channels(F, identity, x)


class Stem(HybridBlock):
    """3x3 stride-2 conv, BN, activation (at the space's edge precision)."""

    def __init__(self, space, momentum=0.9, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = conv_unit(recipe.stem(space), momentum, fold_bn, precision=recipe.edge_precision(space))

    def hybrid_forward(self, F, x):
        return self.conv(x)


class Head(HybridBlock):
    """Last block (original: conv-BN-act-pool; MobileNetV3: pool-conv+bias-act), dropout, classifier."""

    def __init__(self, space, momentum=0.9, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_first = space.last_block == "mobilenetv3"
        self.dropout = space.dropout
        precision = recipe.edge_precision(space)
        with self.name_scope():
            self.conv = conv_unit(recipe.head_conv(space), momentum, fold_bn, precision=precision)
            if precision is None:
                self.classifier = nn.Dense(space.num_classes, in_units=space.last_conv)
            else:
                self.classifier = QuantDense(space.num_classes, space.last_conv, precision, space.head_act,
                                             prefix="dense0_")

    def hybrid_forward(self, F, x):
        if self.pool_first:
            x = self.conv(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))
        else:
            x = F.Pooling(self.conv(x), kernel=(1, 1), global_pool=True, pool_type="avg")
        x = F.flatten(x)
        if self.dropout > 0:
            x = F.Dropout(x, p=self.dropout)
        return self.classifier(x)
