"""The searched network as a PyTorch `nn.Module`, and its weights converted from MXNet.

Importing this module needs torch only (no MXNet, no gluoncv), so a state dict exported here loads
on a machine without them; `trace` makes a self-contained TorchScript file that plain torch loads.

The module is built from the same recipes and search-space positions as the MXNet `SubNet`
(recipe.py, space.py), with the same semantics: channel shuffle = interleave the two channel halves,
then split into halves; stride 2 = concat(projection, main); SE = global pool, 1x1+bias, ReLU,
1x1+bias, hard-sigmoid, scale; hard-swish = x * relu6(x + 3) / 6; head per the space's last block.
BatchNorm uses MXNet's epsilon (1e-5); PyTorch's `momentum` means the weight of the NEW value, so
MXNet's 0.9 is 0.1 here (it matters only if the module is trained further).

Weights are converted by structure: the MXNet network's convolution units and classifier are paired
in network order with this module's, and every pair must have the same recipe.
"""
import numpy as np

from .. import recipe
from ..compat import import_torch
from ..errors import UserError
from ..space import Architecture

torch = import_torch()
nn = torch.nn
F = torch.nn.functional


def activation(x, kind):
    if kind is None:
        return x
    if kind == "relu":
        return F.relu(x)
    if kind == "hard_swish":
        return F.hardswish(x)          # x * relu6(x + 3) / 6, as layers.activation
    if kind == "hard_sigmoid":
        return F.hardsigmoid(x)        # relu6(x + 3) / 6
    raise ValueError(f"unknown activation {kind!r}")


class ConvUnit(nn.Module):
    """Conv -> [BatchNorm] -> [activation] from a ConvSpec ('same' padding k // 2)."""

    def __init__(self, spec, momentum=0.1):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.kernel // 2,
                              groups=spec.groups, bias=spec.bias)
        self.bn = nn.BatchNorm2d(spec.c_out, eps=1e-5, momentum=momentum) if spec.bn else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return activation(x, self.spec.act)


class SqueezeExcite(nn.Module):
    def __init__(self, specs):
        super().__init__()
        self.reduce, self.expand = ConvUnit(specs[0]), ConvUnit(specs[1])

    def forward(self, x):
        return x * self.expand(self.reduce(F.adaptive_avg_pool2d(x, 1)))


def channel_shuffle(x):
    """(N, C, H, W) -> (N, 2, C/2, H, W) -> swap 1,2 -> (N, C, H, W), as layers.channel_shuffle.
    Written without reading sizes, so a traced (TorchScript) model keeps a dynamic batch."""
    return x.unflatten(1, (2, -1)).transpose(1, 2).flatten(1, 2)


class ChoiceBlock(nn.Module):
    def __init__(self, choice, position, mid, fold_bn=False):
        super().__init__()
        self.stride = position.stride
        spec = recipe.fold_bn if fold_bn else (lambda s: s)
        self.proj = nn.Sequential(*(ConvUnit(spec(s)) for s in recipe.projection_branch(choice, position)))
        self.main = nn.Sequential(*(ConvUnit(spec(s)) for s in recipe.main_branch(choice, position, mid)))
        self.se = SqueezeExcite(recipe.se_layers(position.main_out, position.act)) if position.se else None

    def forward(self, x):
        if self.stride == 1:
            identity, x = channel_shuffle(x).chunk(2, dim=1)
        else:
            identity = self.proj(x)
        x = self.main(x)
        if self.se is not None:
            x = self.se(x)
        return torch.cat((identity, x), dim=1)


class Head(nn.Module):
    def __init__(self, space, fold_bn=False):
        super().__init__()
        self.pool_first = space.last_block == "mobilenetv3"
        spec = recipe.head_conv(space)
        self.conv = ConvUnit(recipe.fold_bn(spec) if fold_bn else spec)
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(space.last_conv, space.num_classes)

    def forward(self, x):
        if self.pool_first:
            x = self.conv(F.adaptive_avg_pool2d(x, 1))
        else:
            x = F.adaptive_avg_pool2d(self.conv(x), 1)
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class TorchSubNet(nn.Module):
    """The network of `arch` (an Architecture); `fold_bn` for the merged-BN twin."""

    def __init__(self, arch, fold_bn=False):
        super().__init__()
        if not isinstance(arch, Architecture):
            raise TypeError(f"TorchSubNet takes an Architecture, not {type(arch).__name__}")
        self.arch, self.fold_bn = arch, fold_bn
        space = arch.space
        spec = recipe.fold_bn if fold_bn else (lambda s: s)
        self.stem = ConvUnit(spec(recipe.stem(space)))
        self.features = nn.Sequential(*(
            ChoiceBlock(space.block_choices[b], p, mid, fold_bn)
            for p, b, mid in zip(arch.positions, arch.blocks, arch.mids)))
        self.head = Head(space, fold_bn)

    def forward(self, x):
        return self.head(self.features(self.stem(x)))

    def units(self):
        """ConvUnits and the classifier in network order (pairs with merge_bn.units of MXNet)."""
        return [m for m in self.modules() if isinstance(m, (ConvUnit, nn.Linear))]


# ----- weights from MXNet -----------------------------------------------------------------------
def _numpy(param):
    return param.data(param.list_ctx()[0]).asnumpy()


def convert_state_dict(mx_net, torch_net):
    """A state dict for `torch_net` holding the parameters of the MXNet SubNet `mx_net`."""
    from mxnet.gluon import nn as mx_nn
    from ..nn.merge_bn import units

    source, target = units(mx_net), torch_net.units()
    if len(source) != len(target):
        raise RuntimeError(f"the MXNet network has {len(source)} layers, the PyTorch one {len(target)}")
    names = {module: name for name, module in torch_net.named_modules()}
    state = {}
    for src, dst in zip(source, target):
        prefix = names[dst]
        if isinstance(src, mx_nn.Dense):
            if not isinstance(dst, nn.Linear):
                raise RuntimeError(f"{src.name} is a Dense layer but {prefix} is {type(dst).__name__}")
            pairs = {"weight": src.weight, "bias": src.bias}
        else:
            if not isinstance(dst, ConvUnit) or src.spec != dst.spec:
                raise RuntimeError(f"layer mismatch: {src.name} is {src.spec}, {prefix} is "
                                   f"{getattr(dst, 'spec', type(dst).__name__)}")
            pairs = {"conv.weight": src.conv.weight}
            if src.conv.bias is not None:
                pairs["conv.bias"] = src.conv.bias
            if src.bn is not None:
                pairs.update({"bn.weight": src.bn.gamma, "bn.bias": src.bn.beta,
                              "bn.running_mean": src.bn.running_mean,
                              "bn.running_var": src.bn.running_var})
        for key, param in pairs.items():
            state[f"{prefix}.{key}"] = torch.from_numpy(np.ascontiguousarray(_numpy(param)))
    expected = torch_net.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
        elif key not in state:
            raise RuntimeError(f"no MXNet parameter converted for {key}")
        elif tuple(state[key].shape) != tuple(value.shape):
            raise RuntimeError(f"{key}: MXNet shape {tuple(state[key].shape)}, PyTorch {tuple(value.shape)}")
    return state


def from_mxnet(mx_net):
    """A TorchSubNet (eval mode) equal to the MXNet SubNet `mx_net`, with its weights."""
    model = TorchSubNet(mx_net.arch, fold_bn=mx_net.fold_bn)
    model.load_state_dict(convert_state_dict(mx_net, model))
    return model.eval()


def load(state_dict_path, arch, fold_bn=False):
    """A TorchSubNet of `arch` with the state dict saved by the exporter (NAME.pt), in eval mode."""
    model = TorchSubNet(arch, fold_bn)
    try:
        state = torch.load(str(state_dict_path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise UserError(f"{state_dict_path} is not a PyTorch state dict ({err})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{state_dict_path} does not fit architecture {arch}"
                        f"{' (merged BN)' if fold_bn else ''}: {str(err).splitlines()[0]}") from None
    return model.eval()


def trace(model, example):
    """A TorchScript module of `model` (eval mode) traced on `example`: it carries the architecture
    and the weights, so `torch.jit.load` runs it without this package; the batch stays dynamic."""
    with torch.no_grad():
        return torch.jit.trace(model.eval(), example, check_trace=False)
