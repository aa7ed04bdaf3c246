"""Op-by-op counts of any MXNet symbol graph, with the same rules as the analytic counter.

The graph walk reads every node of a Symbol with the shapes MXNet infers for it and turns it into
`counting.Op` rows through counting.py's own rule functions (conv_op, fc_op, bn_op, act_op,
pool_op, eltwise_op), so the analytic count of our networks and the graph count of ANY network
follow one definition. Tests prove both agree exactly on our networks.

Graph rules beyond the per-op ones (see docs/profiling.md):
- a BatchNorm whose input is a Convolution output used by nothing else is folded into that conv
  (the conv gains a bias; the BN row keeps only its paper params); any other BN counts on its own;
- `x * hard_sigmoid(x)` is one 'hard_swish' row, `x * sigmoid(x)` one 'swish' row; gluoncv's
  composite hard-sigmoid `clip(x + 3, 0, 6) / 6` is one 'hard_sigmoid' row;
- `clip` (ReLU6 in gluoncv's MobileNets) counts as a ReLU: a clamp, 1 mult per element,
  quantizable;
- windowed pooling counts full windows: avg = k*k - 1 adds + 1 mult per output (k*k MACs, the
  papers' convention for pools), max = k*k - 1 comparisons counted as adds (no MACs);
- scalar arithmetic (`x + 3`, `x / 6`) costs 1 add or 1 mult per element;
- layout ops (concat, split, slice, reshape, transpose, flatten, dropout, identity) are free;
- anything else is reported by name with a warning and counted as zero, never silently;
- the ops of a fake quantization (nn/quant.py: tagged FAKE_QUANT_ATTR = 'weight:<b>' / 'input:<b>')
  are not counted: they simulate the integer arithmetic of the network they stand for. Each conv
  and FC reads its weight bits from the tagged op that produces its weight input and its
  activation bits from the one that produces its data input (through layout ops), so BitOps come
  from the graph alone; in a graph with any such op, an untagged side counts 32 bits (a float
  layer of a mixed-precision network, as counting.py counts it), in a graph with none BitOps are 0.
"""
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import mxnet as mx

from .counting import Counts, Op, act_op, bn_op, conv_op, eltwise_op, fc_op, pool_op
from ..errors import UserError
from ..nn.quant import FAKE_QUANT_ATTR
from ..space import FLOAT_BITS

log = logging.getLogger(__name__)

FREE_OPS = frozenset({
    "Concat", "concat", "SliceChannel", "split", "slice", "slice_axis", "slice_like", "crop",
    "Crop", "Reshape", "reshape", "reshape_like", "transpose", "SwapAxis", "swapaxes",
    "expand_dims", "squeeze", "Flatten", "flatten", "Dropout", "identity", "_copy", "BlockGrad",
    "stop_gradient", "Cast", "amp_cast", "_copyto"})
ADD_OPS = frozenset({"elemwise_add", "broadcast_add", "broadcast_plus", "_plus", "_Plus", "_add",
                     "elemwise_sub", "broadcast_sub", "broadcast_minus", "_minus", "_Minus", "_sub"})
MUL_OPS = frozenset({"elemwise_mul", "broadcast_mul", "_mul", "_Mul",
                     "elemwise_div", "broadcast_div", "_div", "_Div"})
SUM_OPS = frozenset({"ElementWiseSum", "add_n"})
SCALAR_ADD_OPS = frozenset({"_plus_scalar", "_PlusScalar", "_minus_scalar", "_MinusScalar",
                            "_rminus_scalar", "_RMinusScalar"})
SCALAR_MUL_OPS = frozenset({"_mul_scalar", "_MulScalar", "_div_scalar", "_DivScalar",
                            "_rdiv_scalar", "_RDivScalar"})
# element-wise ops whose rows belong to the block of their input (an activation after a conv)
_INHERIT_BLOCK = frozenset({"BatchNorm", "Activation", "relu", "sigmoid", "hard_sigmoid", "clip",
                            "LeakyReLU"}) | SCALAR_ADD_OPS | SCALAR_MUL_OPS | FREE_OPS


@dataclass
class Profile:
    """The counted ops of a network, the block each belongs to, and what was not counted."""
    ops: list
    blocks: list                      # block name of each op (parallel to `ops`)
    input_shape: tuple                # (N, C, H, W) the shapes were inferred at
    unsupported: dict = field(default_factory=dict)   # op name -> how many nodes, counted as zero
    source: str = ""
    fake_quant_ops: int = 0           # nodes of fake quantization (nn/quant.py), not counted

    @property
    def quantized(self):
        """A fake-quantized (mixed-precision) network: its convs and FCs carry bit widths."""
        return self.fake_quant_ops > 0

    @property
    def counts(self):
        return Counts.of(self.ops)

    def block_summaries(self):
        """[(block, Counts, number of ops)] in network order."""
        order, groups = [], {}
        for op, block in zip(self.ops, self.blocks):
            if block not in groups:
                order.append(block)
                groups[block] = []
            groups[block].append(op)
        return [(b, Counts.of(groups[b]), len(groups[b])) for b in order]


# ----- reading the graph --------------------------------------------------------------------------
def _attrs(node):
    # the key changed across MXNet versions: 'attrs' (1.x), 'attr' / 'param' (older exports)
    return node.get("attrs") or node.get("attr") or node.get("param") or {}


def _tuple(text):
    return tuple(int(v) for v in re.findall(r"-?\d+", str(text)))


def _true(text):
    return str(text).lower() in ("true", "1")


def _float(attrs, key, default=None):
    try:
        return float(attrs.get(key, default))
    except (TypeError, ValueError):
        return default


def mxnet_reason(err):
    """The informative line of an MXNetError (its text starts with a C++ traceback header)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("Traceback", "File ", "[bt]", "Stack trace")):
            return re.sub(r"^MXNetError:\s*", "", line)
    return type(err).__name__


def _chw(shape):
    """(C, H, W) of an (N, C, ...) shape; trailing axes collapse into H (W = 1 past 4-D)."""
    if len(shape) == 4:
        return tuple(shape[1:])
    rest = shape[2:]
    return (shape[1] if len(shape) > 1 else 1, math.prod(rest) if rest else 1, 1)


class _Graph:
    """Nodes, inferred shapes and consumers of one symbol."""

    def __init__(self, sym, input_shapes, known_shapes):
        self.nodes = json.loads(sym.tojson())["nodes"]
        internals = sym.get_internals()
        try:
            arg_shapes, out_shapes, aux_shapes = internals.infer_shape(**input_shapes, **known_shapes)
        except mx.base.MXNetError as err:
            raise UserError(f"MXNet cannot infer the shapes of this graph at input {input_shapes} "
                            f"({mxnet_reason(err)}); check the input size and that the parameters "
                            "belong to this symbol") from None
        if out_shapes is None:
            raise UserError(f"the shapes of this graph are not determined by the inputs "
                            f"{input_shapes}; "
                            "is the input name right (exported Gluon models call it 'data')?")
        self.shape_of = dict(zip(internals.list_outputs(), out_shapes))
        self.shape_of.update(zip(internals.list_arguments(), arg_shapes))
        self.shape_of.update(zip(internals.list_auxiliary_states(), aux_shapes))
        self.consumers = Counter()
        for node in self.nodes:
            for src, idx, *_ in node["inputs"]:
                self.consumers[(src, idx)] += 1
        self.fake_quant = {nid: tag for nid, node in enumerate(self.nodes)
                           if (tag := _fake_quant_tag(node)) is not None}

    def out_shape(self, nid, idx=0):
        name = self.nodes[nid]["name"]
        if self.nodes[nid]["op"] == "null":
            return self.shape_of[name]
        for key in (f"{name}_output", f"{name}_output{idx}"):
            if key in self.shape_of:
                return self.shape_of[key]
        raise KeyError(f"no inferred shape for output {idx} of {name}")

    def input_shape(self, nid, k=0):
        src, idx, *_ = self.nodes[nid]["inputs"][k]
        return self.out_shape(src, idx)

    def source(self, nid, k=0):
        src, idx, *_ = self.nodes[nid]["inputs"][k]
        return src, idx

    def only_consumer(self, entry):
        return self.consumers[entry] == 1


# ----- fake quantization ---------------------------------------------------------------------------
def _fake_quant_tag(node):
    """(role, bits) of an op of nn/quant.py's fake quantization ('weight' or 'input'), else None."""
    tag = _attrs(node).get(FAKE_QUANT_ATTR)
    if tag is None:
        return None
    role, _, bits = str(tag).partition(":")
    if role not in ("weight", "input") or not bits.isdigit():
        raise UserError(f"node {node['name']} has {FAKE_QUANT_ATTR}={tag!r}, not 'weight:<bits>' or "
                        "'input:<bits>'; was the symbol edited by hand?")
    return role, int(bits)


def _bits_of_input(graph, nid, k, role):
    """The bits the fake quantization feeding input `k` of node `nid` rounds to (through layout
    ops, e.g. a reshape), or None when that input is not fake-quantized."""
    src = graph.source(nid, k)[0]
    while src not in graph.fake_quant:
        node = graph.nodes[src]
        if node["op"] not in FREE_OPS or not node["inputs"]:
            return None
        src = graph.source(src)[0]
    found_role, bits = graph.fake_quant[src]
    return bits if found_role == role else None


def _layer_bits(graph, nid):
    """(weight bits, activation bits) of conv/FC node `nid`: (0, 0) in a graph without fake
    quantization, else each read from the graph, 32 for a side that is not quantized."""
    if not graph.fake_quant:
        return 0, 0
    wbits = _bits_of_input(graph, nid, 1, "weight")
    abits = _bits_of_input(graph, nid, 0, "input")
    return wbits or FLOAT_BITS, abits or FLOAT_BITS


# ----- fusing multi-node activations --------------------------------------------------------------
def _hard_sigmoid_source(graph, nid):
    """(source entry, member node ids) if node `nid` computes hard_sigmoid(source), else None."""
    node = graph.nodes[nid]
    if node["op"] == "hard_sigmoid":
        return graph.source(nid), {nid}
    # gluoncv: relu6(x + 3) / 6 = _div_scalar(clip(_plus_scalar(x, 3), 0, 6), 6)
    attrs = _attrs(node)
    scale = _float(attrs, "scalar")
    if not ((node["op"] in ("_div_scalar", "_DivScalar") and scale == 6)
            or (node["op"] in ("_mul_scalar", "_MulScalar") and scale and abs(scale - 1 / 6) < 1e-6)):
        return None
    clip = graph.source(nid)
    c = graph.nodes[clip[0]]
    ca = _attrs(c)
    if (c["op"] != "clip" or not graph.only_consumer(clip) or _float(ca, "a_min") != 0
            or _float(ca, "a_max") != 6):
        return None
    plus = graph.source(clip[0])
    p = graph.nodes[plus[0]]
    if p["op"] not in ("_plus_scalar", "_PlusScalar") or not graph.only_consumer(plus) \
            or _float(_attrs(p), "scalar") != 3:
        return None
    return graph.source(plus[0]), {nid, clip[0], plus[0]}


def _sigmoid_source(graph, nid):
    node = graph.nodes[nid]
    if node["op"] == "sigmoid" or (node["op"] == "Activation"
                                   and _attrs(node).get("act_type") == "sigmoid"):
        return graph.source(nid), {nid}
    return None


def _fusions(graph):
    """{head node id: (kind, member ids)}: x*hard_sigmoid(x), x*sigmoid(x), composite hard-sigmoid."""
    fused = {}
    for nid in range(len(graph.nodes)):
        if nid in graph.fake_quant:
            continue
        found = _hard_sigmoid_source(graph, nid)
        if found and len(found[1]) > 1:
            fused[nid] = ("hard_sigmoid", found[1])
    for nid, node in enumerate(graph.nodes):
        if node["op"] not in MUL_OPS - {"elemwise_div", "broadcast_div", "_div", "_Div"} \
                or len(node["inputs"]) != 2 or nid in graph.fake_quant:
            continue
        a, b = graph.source(nid, 0), graph.source(nid, 1)
        for x, gate in ((a, b), (b, a)):
            if not graph.only_consumer(gate):
                continue
            for kind, finder in (("hard_swish", _hard_sigmoid_source), ("swish", _sigmoid_source)):
                found = finder(graph, gate[0])
                if found and found[0] == x:
                    fused[nid] = (kind, found[1] | {nid})
                    fused.pop(gate[0], None)
                    break
            if nid in fused:
                break
    return fused


# ----- one node -> ops ----------------------------------------------------------------------------
def _conv(graph, nid, name, folded):
    attrs = _attrs(graph.nodes[nid])
    return conv_from_shapes(name, graph.input_shape(nid), graph.out_shape(nid), _tuple(attrs["kernel"]),
                            int(attrs.get("num_group", 1)), not _true(attrs.get("no_bias", "False")), folded)


def conv_from_shapes(name, in_shape, out_shape, kernel, groups, bias, folded):
    """The Op of a convolution of any graph from its input and output shapes (N, C, ...)."""
    c_in, (_, c_out, *out_sp) = in_shape[1], out_shape
    if len(kernel) == 2 and kernel[0] == kernel[1]:
        # conv_op derives its output size from 'same' padding; foreign graphs pad as they like,
        # so hand it the inferred output size at stride 1 and restore the real input shape
        op = conv_op(name, c_in, c_out, kernel[0], 1, groups, tuple(out_sp), bias=bias, folded_bn=folded)
        return replace(op, in_shape=_chw(in_shape))
    # non-square or 1-D/3-D kernels: the same rule with the kernel's taps folded into the fan-in
    op = conv_op(name, c_in * math.prod(kernel), c_out, 1, 1, groups, (math.prod(out_sp), 1),
                 bias=bias, folded_bn=folded)
    return replace(op, in_shape=_chw(in_shape), kernel=tuple(kernel), c_in=c_in)


def _pool(graph, nid, name):
    attrs = _attrs(graph.nodes[nid])
    c, h, w = _chw(graph.input_shape(nid))
    kind = attrs.get("pool_type", "max")
    if _true(attrs.get("global_pool", "False")):
        if kind == "avg":
            return pool_op(name, c, (h, w))
        window, outputs = h * w, c
    else:
        window = math.prod(_tuple(attrs["kernel"]))
        outputs = math.prod(graph.out_shape(nid)[1:])
    if kind == "avg":
        return _window_pool(name, "pool", (c, h, w), outputs, window)
    if kind == "max":
        return _window_pool(name, "max_pool", (c, h, w), outputs, window)
    return None


def _window_pool(name, kind, in_shape, outputs, window):
    """Pooling over windows of `window` inputs: window - 1 adds per output (a comparison counts as
    an add for max); avg adds 1 mult and k*k MACs per output, as the papers count global pools."""
    avg = kind == "pool"
    return Op(name, kind, in_shape, 0, in_shape[0], in_shape[0], params=0,
              mults=outputs if avg else 0, adds=outputs * (window - 1),
              macs=outputs * window if avg else 0, paper_params=0)


def _node_ops(graph, nid, fused, folded_bns, conv_gets_bn):
    """The ops of node `nid` ([] when free), or None when it is of a kind nobody counts."""
    node = graph.nodes[nid]
    op, name, attrs = node["op"], node["name"], _attrs(node)
    if nid in fused:
        kind = fused[nid][0]
        c, h, w = _chw(graph.out_shape(nid))
        return [act_op(name, kind, c, (h, w))]
    if op in FREE_OPS:
        return []
    if op == "Convolution":
        wbits, abits = _layer_bits(graph, nid)
        return [replace(_conv(graph, nid, name, nid in conv_gets_bn), wbits=wbits, abits=abits)]
    if op == "BatchNorm":
        if int(attrs.get("axis", 1)) != 1:
            return None
        c, h, w = _chw(graph.input_shape(nid))
        return [bn_op(name, c, (h, w), folded=nid in folded_bns)]
    if op == "FullyConnected":
        shape = graph.input_shape(nid)
        flatten = _true(attrs.get("flatten", "True"))
        c_in = math.prod(shape[1:]) if flatten else shape[-1]
        rows = 1 if flatten else math.prod(shape[1:-1])
        fc = fc_op(name, c_in, int(attrs["num_hidden"]), bias=not _true(attrs.get("no_bias", "False")),
                   bits=_layer_bits(graph, nid))
        return [replace(fc, mults=fc.mults * rows, adds=fc.adds * rows, macs=fc.macs * rows)]
    if op == "Pooling":
        pooled = _pool(graph, nid, name)
        return [pooled] if pooled else None
    c, h, w = _chw(graph.out_shape(nid))
    act = attrs.get("act_type") if op == "Activation" else op
    if act in ("relu", "sigmoid", "hard_sigmoid"):
        return [act_op(name, act, c, (h, w))]
    if op == "clip":
        return [act_op(name, "relu", c, (h, w))]
    if op in ADD_OPS or op in SCALAR_ADD_OPS:
        return [eltwise_op(name, "add", c, (h, w))]
    if op in MUL_OPS or op in SCALAR_MUL_OPS:
        return [eltwise_op(name, "mul", c, (h, w))]
    if op in SUM_OPS:
        one = eltwise_op(name, "add", c, (h, w))
        return [replace(one, adds=one.adds * (len(node["inputs"]) - 1))]
    return None


def _label(node):
    """How an uncounted node is reported: its op, with the variant for multi-purpose ops."""
    attrs = _attrs(node)
    for key in ("act_type", "pool_type"):
        if key in attrs and node["op"] in ("Activation", "LeakyReLU", "Pooling"):
            return f"{node['op']}({attrs[key]})"
    if node["op"] == "BatchNorm":
        return f"BatchNorm(axis={attrs.get('axis')})"
    return node["op"]


# ----- block names ---------------------------------------------------------------------------------
_OUR_BLOCK = re.compile(r"(?:features_)?(p\d+|stem|head)(?:_|$)")


def common_prefix(names):
    if not names:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:first[:n].rfind("_") + 1]


def block_name(name, prefix=""):
    """The block a node belongs to, from its name: p<i>/stem/head for our networks, else the name
    up to its first numbered part (gluoncv: features_linearbottleneck3, stage2, dense0)."""
    rest = name[len(prefix):] if name.startswith(prefix) else name
    rest = rest.lstrip("_")
    ours = _OUR_BLOCK.match(rest)
    if ours:
        return ours.group(1)
    parts = rest.split("_")
    for i, part in enumerate(parts[:-1]):
        if part and part[-1].isdigit():
            return "_".join(parts[:i + 1])
    return parts[0]


# ----- entry points --------------------------------------------------------------------------------
def profile_symbol(sym, input_shapes, known_shapes=None, source=""):
    """Profile `sym` with its inputs at `input_shapes` ({'data': (1, 3, H, W)}); counts are per
    image, so the batch axis should be 1. `known_shapes` adds more shapes (e.g. of saved params)."""
    graph = _Graph(sym, input_shapes, known_shapes or {})
    nodes = graph.nodes
    fused = _fusions(graph)
    skipped = {m for head, (_, members) in fused.items() for m in members if m != head}
    folded_bns, conv_gets_bn = set(), set()
    for nid, node in enumerate(nodes):
        if node["op"] == "BatchNorm":
            src = graph.source(nid)
            if nodes[src[0]]["op"] == "Convolution" and graph.only_consumer(src):
                folded_bns.add(nid)
                conv_gets_bn.add(src[0])
    prefix = common_prefix([n["name"] for n in nodes if n["op"] != "null"])
    ops, blocks, unsupported, node_block = [], [], Counter(), {}
    for nid, node in enumerate(nodes):
        if node["op"] == "null" or nid in skipped:
            continue
        data_src = node["inputs"][0][0] if node["inputs"] else None
        inherit = (node["op"] in _INHERIT_BLOCK or nid in fused) and data_src in node_block
        block = node_block[data_src] if inherit else block_name(node["name"], prefix)
        node_block[nid] = block
        if nid in graph.fake_quant:       # simulated integer arithmetic, not the network's
            continue
        more = _node_ops(graph, nid, fused, folded_bns, conv_gets_bn)
        if more is None:
            unsupported[_label(node)] += 1
            continue
        ops += more
        blocks += [block] * len(more)
    if unsupported:
        log.warning("ops this profiler does not count were counted as ZERO: %s",
                    ", ".join(f"{op} x{n}" for op, n in sorted(unsupported.items())))
    data_shape = next(iter(input_shapes.values()))
    return Profile(ops, blocks, tuple(data_shape), dict(unsupported), source, len(graph.fake_quant))


def arch_symbol(arch):
    """Our network for `arch` as a Symbol (no parameters are created or initialised)."""
    from ..nn.subnet import SubNet
    return SubNet(arch)(mx.sym.var("data"))


def profile_arch(arch, input_size=None):
    """The graph profile of our network for `arch` at `input_size` (default: the space's)."""
    size = input_size or arch.space.input_size
    return profile_symbol(arch_symbol(arch), {"data": (1, 3, size, size)}, source=str(arch))


def _params_file(symbol_path):
    """NAME-NNNN.params beside NAME-symbol.json (the highest epoch), or None."""
    stem = symbol_path.name[:-len("-symbol.json")]
    found = sorted(symbol_path.parent.glob(f"{glob_escape(stem)}-[0-9][0-9][0-9][0-9].params"))
    return found[-1] if found else None


def glob_escape(text):
    return re.sub(r"([*?\[])", r"[\1]", text)


def profile_symbol_file(path, input_size=224, input_channels=3, data_name=None):
    """Profile an exported symbol NAME-symbol.json (with NAME-0000.params beside it) of ANY network.

    The saved parameters tell inputs from weights and pin the weight shapes; without them the
    input is assumed to be `data_name` (default 'data') and a warning says so.
    """
    path = Path(path)
    if not path.name.endswith("-symbol.json"):
        raise UserError(f"{path} is not an exported symbol: expected NAME-symbol.json "
                        "(written by HybridBlock.export next to NAME-0000.params)")
    if not path.is_file():
        raise UserError(f"symbol file {path} does not exist")
    try:
        sym = mx.sym.load(str(path))
    except (mx.base.MXNetError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a valid MXNet symbol file ({mxnet_reason(err)}); "
                        "re-export it with HybridBlock.export") from None
    params_path = _params_file(path)
    known = {}
    if params_path is None:
        log.warning("%s has no NAME-0000.params beside it: assuming the input is %r and not "
                    "checking weight shapes", path, data_name or "data")
    else:
        try:
            loaded = mx.nd.load(str(params_path))
        except mx.base.MXNetError:
            raise UserError(f"{params_path} is not an MXNet parameter file (or it is damaged); "
                            "re-export the model") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{params_path} holds unnamed arrays, not exported parameters")
        known = {k.split(":", 1)[-1]: tuple(v.shape) for k, v in loaded.items()}
        unknown = sorted(set(known) - set(sym.list_arguments()) - set(sym.list_auxiliary_states()))
        if unknown:
            raise UserError(f"{params_path} does not belong to {path.name}: the symbol has no "
                            f"parameter {unknown[0]} ({len(unknown)} such); export both together")
    inputs = [a for a in sym.list_arguments() if a not in known]
    if data_name is None:
        if params_path is not None and len(inputs) != 1:
            raise UserError(f"{path} has {len(inputs)} inputs besides its parameters "
                            f"({', '.join(inputs) or 'none'}); this profiler takes one image input")
        data_name = inputs[0] if params_path is not None else "data"
    if data_name not in sym.list_arguments():
        raise UserError(f"{path} has no input {data_name!r}; its arguments are "
                        f"{', '.join(sym.list_arguments()[:5])}...")
    shape = (1, input_channels, input_size, input_size)
    return profile_symbol(sym, {data_name: shape}, known, source=str(path))


def gluoncv_symbol(model_name):
    """A gluoncv model-zoo network (random init, never downloaded) as a Symbol."""
    from ..compat import import_gluoncv
    gcv = import_gluoncv()
    try:
        net = gcv.model_zoo.get_model(model_name, pretrained=False)
    except ValueError as err:
        raise UserError(f"gluoncv has no model {model_name!r}: {str(err).splitlines()[0]}") from None
    return net(mx.sym.var("data"))


def gluoncv_counts(model_name, input_size=224):
    """Counts of a gluoncv model-zoo network at `input_size` (e.g. MobileNetV3-Large as a score
    baseline: gluoncv_counts('mobilenetv3_large'))."""
    sym = gluoncv_symbol(model_name)
    return profile_symbol(sym, {"data": (1, 3, input_size, input_size)}, source=model_name).counts
