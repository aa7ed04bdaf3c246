"""The fixed network of one Architecture, and copying its weights out of a supernet."""
import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .. import recipe
from .blocks import ChoiceBlock, Head, Stem


class SubNet(HybridBlock):
    """A plain hybridizable network: stem, one ChoiceBlock per position at its own width, head.

    With `fold_bn` it has no BatchNorm: each conv that had one carries a bias instead (merge_bn.py
    fills it with the folded statistics). An architecture of a quantized space computes
    fake-quantized at its bit widths (quantization-aware training when it trains).
    """

    def __init__(self, arch, momentum=0.9, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.arch, self.fold_bn = arch, fold_bn
        space = arch.space
        with self.name_scope():
            self.stem = Stem(space, momentum, fold_bn, prefix="stem_")
            self.features = nn.HybridSequential(prefix="features_")
            with self.features.name_scope():
                for p, b, mid, precision in zip(arch.positions, arch.blocks, arch.mids,
                                                recipe.path_precisions(arch)):
                    self.features.add(ChoiceBlock(space.block_choices[b], p, mid, momentum,
                                                  fold_bn, precision=precision, prefix=f"p{p.index}_"))
            self.head = Head(space, momentum, fold_bn, prefix="head_")

    def hybrid_forward(self, F, x):
        return self.head(self.features(self.stem(x)))


def extract_subnet(supernet, arch, ctx=None):
    """A SubNet for `arch` holding copies of the supernet's weights for that path (on `ctx`, a
    context or a list of them)."""
    net = SubNet(arch)
    ctx = ctx or supernet.stem.collect_params().list_ctx()[0]
    net.initialize(mx.init.Zero(), ctx=ctx)
    first = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
    pairs = [(supernet.stem, net.stem), (supernet.head, net.head)]
    pairs += list(zip(supernet.path_candidates(arch), net.features))
    for source, target in pairs:
        copy_prefix_weights(source, target, first)
    return net


def paired_params(source, target):
    """[(source parameter, target parameter)] of two blocks of the same structure, paired by their
    names below each block's prefix. Every parameter of `target` must have its pair; `source` may
    have more only as the SE module of a block whose target runs without one (a path without SE)."""
    src = {name[len(source.prefix):]: p for name, p in source.collect_params().items()}
    dst = {name[len(target.prefix):]: p for name, p in target.collect_params().items()}
    skip = ()
    if getattr(source, "se", None) is not None and getattr(target, "se", None) is None:
        skip = source.se.prefix[len(source.prefix):]        # the names of the source's SE parameters
    missing = [name for name in dst if name not in src]
    unused = [name for name in src if name not in dst and not (skip and name.startswith(skip))]
    if missing or unused:
        raise ValueError(f"{source.name} and {target.name} differ: {target.name} has {missing or 'no others'}, "
                         f"{source.name} has {unused or 'no others'} besides")
    return [(src[name], d) for name, d in dst.items()]


def copy_prefix_weights(source, target, ctx):
    """Copy each parameter of block `source` into the same-role parameter of `target`, keeping the
    leading channels along every axis (how elastic layers narrow); see paired_params."""
    for s, d in paired_params(source, target):
        if any(a < b for a, b in zip(s.shape, d.shape)) or len(s.shape) != len(d.shape):
            raise ValueError(f"cannot take {d.shape} out of {s.name} of shape {s.shape}")
        data = s.data(s.list_ctx()[0])
        for axis, size in enumerate(d.shape):
            if data.shape[axis] != size:   # slice_axis, not slice: oneDNN's slice crashes on
                data = mx.nd.slice_axis(data, axis=axis, begin=0, end=size)  # blocked weights
        d.set_data(data.as_in_context(ctx))
