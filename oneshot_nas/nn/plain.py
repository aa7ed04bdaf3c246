"""Reference networks a search is measured against: what an engineer would train instead of searching.

A searched architecture is only worth its search if it beats a network nobody searched for, trained
the same way (the ground truth's recipe, its seeds). `reference_net(name, classes)` builds one:

- `plain-8-16-32-64` (any widths): a plain ConvNet of conv3x3-BN-ReLU layers, the first ones of
  stride 2 and the last of stride 1 (for 32 px: 32 -> 16 -> 8 -> 4 -> 4), global average pooling,
  dropout 0.2, a dense classifier. On the few-shot digits it is the bar a searched net must clear.
- any name of gluoncv's model zoo (`mobilenetv2_0.25`, `resnet18_v1`, ...), built untrained: the
  hand-designed networks an ImageNet user compares against. Nothing is downloaded.
"""
from mxnet.gluon import HybridBlock, nn

from ..errors import UserError


class PlainCNN(HybridBlock):
    """conv3x3-BN-ReLU per width (stride 2 but for the last layer), GAP, dropout, dense."""

    def __init__(self, widths=(8, 16, 32, 64), classes=10, dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="features_")
            with self.features.name_scope():
                for i, (cin, width) in enumerate(zip((3,) + self.widths, self.widths)):
                    stride = 2 if i < len(self.widths) - 1 else 1
                    self.features.add(nn.Conv2D(width, 3, stride, 1, use_bias=False, in_channels=cin),
                                      nn.BatchNorm(momentum=0.9, in_channels=width), nn.Activation("relu"))
                self.features.add(nn.GlobalAvgPool2D(), nn.Flatten())
                if dropout:
                    self.features.add(nn.Dropout(dropout))
            self.output = nn.Dense(classes, in_units=self.widths[-1], prefix="output_")

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def _plain_widths(name):
    parts = name.split("-")[1:]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"reference net {name!r}: give the widths of its layers, e.g. plain-8-16-32-64")
    return tuple(int(p) for p in parts)


def reference_net(name, classes):
    """The untrained reference network `name` (see the module's docstring) with `classes` outputs,
    named `name` (net.reference_name) in records and tables."""
    if name.startswith("plain"):
        net = PlainCNN(_plain_widths(name), classes, prefix="plain_")
    else:
        from .. import compat     # gluoncv beside torch >= 2
        zoo = compat.import_gluoncv().model_zoo
        known = zoo.get_model_list()
        if name.lower() not in known:
            raise UserError(f"unknown reference net {name!r}: give plain-W1-W2-... (a plain ConvNet) or a "
                            f"name of gluoncv's model zoo, e.g. {', '.join(sorted(known)[:6])}, ...")
        try:
            net = zoo.get_model(name, pretrained=False, classes=classes)
        except TypeError as err:
            raise UserError(f"gluoncv's {name} cannot be built with {classes} classes ({err})") from None
        if not isinstance(net, HybridBlock):
            raise UserError(f"gluoncv's {name} is not a HybridBlock; choose a hybridizable model")
    net.reference_name, net.reference_classes = name, classes
    return net
