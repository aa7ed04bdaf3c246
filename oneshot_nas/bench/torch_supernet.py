"""A PyTorch eager single-path supernet built from the same recipes: the speed baseline of
`bench supernet` (not part of the product).

Like the official SPOS code: every candidate owns its weights at the widest, a forward pass runs one
candidate per position and narrows it by slicing the weights (torch slices are views, so BatchNorm's
running statistics are updated in place), everything eager.
"""
from .. import recipe
from ..compat import import_torch

torch = import_torch()
nn, F = torch.nn, torch.nn.functional


def _act(x, kind):
    if kind == "relu":
        return F.relu(x)
    if kind == "hard_swish":
        return F.hardswish(x)
    if kind == "hard_sigmoid":
        return F.hardsigmoid(x)
    return x


class ElasticUnit(nn.Module):
    """Conv -> [BN] -> [act] owning `spec`'s weights, run at the widths of a narrower spec."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.weight = nn.Parameter(torch.empty(spec.c_out, 1 if spec.depthwise else spec.c_in,
                                               spec.kernel, spec.kernel))
        nn.init.kaiming_normal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(spec.c_out)) if spec.bias else None
        if spec.bn:
            self.gamma, self.beta = nn.Parameter(torch.ones(spec.c_out)), nn.Parameter(torch.zeros(spec.c_out))
            self.register_buffer("mean", torch.zeros(spec.c_out))
            self.register_buffer("var", torch.ones(spec.c_out))

    def forward(self, x, active=None):
        spec, active = self.spec, active or self.spec
        c_in, c_out = active.c_in, active.c_out
        w = self.weight[:c_out] if spec.depthwise else self.weight[:c_out, :c_in]
        b = None if self.bias is None else self.bias[:c_out]
        x = F.conv2d(x, w, b, spec.stride, spec.kernel // 2, 1, c_out if spec.depthwise else 1)
        if spec.bn:
            x = F.batch_norm(x, self.mean[:c_out], self.var[:c_out], self.gamma[:c_out], self.beta[:c_out],
                             self.training, 0.1, 1e-5)
        return _act(x, spec.act)


class Candidate(nn.Module):
    def __init__(self, choice, position, max_mid):
        super().__init__()
        self.choice, self.position = choice, position
        self.proj = nn.ModuleList(ElasticUnit(s) for s in recipe.projection_branch(choice, position))
        self.main = nn.ModuleList(ElasticUnit(s) for s in recipe.main_branch(choice, position, max_mid))
        self.se = (nn.ModuleList(ElasticUnit(s) for s in recipe.se_layers(position.main_out, position.act))
                   if position.se else None)

    def forward(self, x, mid):
        if self.position.stride == 1:
            n, c, h, w = x.shape
            x = x.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            identity, x = x.chunk(2, dim=1)
        else:
            identity = x
            for unit in self.proj:
                identity = unit(identity)
        for unit, active in zip(self.main, recipe.main_branch(self.choice, self.position, mid)):
            x = unit(x, active)
        if self.se is not None:
            x = x * self.se[1](self.se[0](F.adaptive_avg_pool2d(x, 1)))
        return torch.cat((identity, x), dim=1)


class TorchSuperNet(nn.Module):
    def __init__(self, space):
        super().__init__()
        self.space = space
        self.stem = ElasticUnit(recipe.stem(space))
        self.candidates = nn.ModuleList(
            nn.ModuleList(Candidate(choice, p, space.max_mid(p.index)) for choice in space.block_choices)
            for p in space.positions)
        self.head = ElasticUnit(recipe.head_conv(space))
        self.classifier = nn.Linear(space.last_conv, space.num_classes)

    def forward(self, x, arch):
        x = self.stem(x)
        for row, b, mid in zip(self.candidates, arch.blocks, arch.mids):
            x = row[b](x, mid)
        if self.space.last_block == "mobilenetv3":
            x = self.head(F.adaptive_avg_pool2d(x, 1))
        else:
            x = F.adaptive_avg_pool2d(self.head(x), 1)
        return self.classifier(F.dropout(torch.flatten(x, 1), self.space.dropout, self.training))
