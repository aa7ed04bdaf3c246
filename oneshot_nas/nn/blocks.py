"""ShuffleNetV2 (SNB-k) and Xception (SXB-k) choice blocks, the stem and the head, from recipes.

The same classes serve the supernet (built at the widest `mid`, narrowed per step with `set_mid`)
and the fixed subnet (built at its own `mid`, never narrowed, hybridizable).
"""
from mxnet.gluon import HybridBlock, nn

from .. import recipe
from .layers import ConvUnit, SqueezeExcite, channel_shuffle, concat_channels


def conv_unit(spec, momentum=0.9, fold_bn=False):
    """A ConvUnit for `spec`; with `fold_bn`, its BN-free twin (see recipe.fold_bn)."""
    return ConvUnit(recipe.fold_bn(spec) if fold_bn else spec, momentum)


class ChoiceBlock(HybridBlock):
    """One candidate block at one position, for main-branch widths up to `max_mid`.

    Stride 1 (C_in == C_out == C): shuffle channels, pass the first C/2 through, run the main branch
    on the other C/2, concatenate. Stride 2: a projection branch and the main branch both see the whole
    input; output = concat(projection, main). `fold_bn` builds it without BatchNorm (merged-BN export).
    """

    def __init__(self, choice, position, max_mid, momentum=0.9, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.choice, self.position = choice, position
        self.max_mid = self.mid = max_mid
        with self.name_scope():
            self.proj = nn.HybridSequential(prefix="proj_")
            with self.proj.name_scope():
                for spec in recipe.projection_branch(choice, position):
                    self.proj.add(conv_unit(spec, momentum, fold_bn))
            self.main = nn.HybridSequential(prefix="main_")
            with self.main.name_scope():
                for spec in recipe.main_branch(choice, position, max_mid):
                    self.main.add(conv_unit(spec, momentum, fold_bn))
            self.se = (SqueezeExcite(recipe.se_layers(position.main_out), prefix="se_")
                       if position.se else None)

    def set_mid(self, mid):
        """Run the main branch at width `mid` (<= max_mid) from now on."""
        if mid != self.mid:
            for unit, spec in zip(self.main, recipe.main_branch(self.choice, self.position, mid)):
                unit.set_width(spec.c_in, spec.c_out)
            self.mid = mid

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
    """3x3 stride-2 conv, BN, activation."""

    def __init__(self, space, momentum=0.9, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = conv_unit(recipe.stem(space), momentum, fold_bn)

    def hybrid_forward(self, F, x):
        return self.conv(x)


class Head(HybridBlock):
    """Last block (original: conv-BN-act-pool; MobileNetV3: pool-conv+bias-act), dropout, classifier."""

    def __init__(self, space, momentum=0.9, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_first = space.last_block == "mobilenetv3"
        self.dropout = space.dropout
        with self.name_scope():
            self.conv = conv_unit(recipe.head_conv(space), momentum, fold_bn)
            self.classifier = nn.Dense(space.num_classes, in_units=space.last_conv)

    def hybrid_forward(self, F, x):
        if self.pool_first:
            x = self.conv(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))
        else:
            x = F.Pooling(self.conv(x), kernel=(1, 1), global_pool=True, pool_type="avg")
        x = F.flatten(x)
        if self.dropout > 0:
            x = F.Dropout(x, p=self.dropout)
        return self.classifier(x)
