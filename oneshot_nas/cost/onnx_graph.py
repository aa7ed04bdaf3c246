"""Op-by-op counts of an ONNX graph, with the rules of the analytic counter and the MXNet profiler.

Every node becomes `counting.Op` rows through counting.py's own rule functions, with the shapes the
graph really produces: the graph runs once on one zero image in onnxruntime with every intermediate
value as an output (exact even where a reshape reads shapes at run time). The same graph rules as
cost/graph.py apply: a BatchNormalization whose input is a Conv used by nothing else is folded
into it, `x * HardSigmoid(x)` is one hard_swish, Clip counts as a ReLU, layout ops and arithmetic on
shape vectors are free, and anything else is reported by name and counted as zero.
"""
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..compat import require
from ..errors import UserError
from .counting import Op, act_op, bn_op, eltwise_op, fc_op, pool_op
from .graph import Profile, block_name, common_prefix, conv_from_shapes

log = logging.getLogger(__name__)
FREE = frozenset({"Reshape", "Flatten", "Concat", "Split", "Transpose", "Slice", "Shape", "Gather",
                  "GatherND", "ScatterND", "Pad", "Unsqueeze", "Squeeze", "Identity", "Dropout", "Cast",
                  "Constant", "ConstantOfShape", "Expand", "Range"})
ACTS = {"Relu": "relu", "Clip": "relu", "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid",
        "HardSwish": "hard_swish"}


def _attr(node, name, default=None):
    onnx = require("onnx", "onnx==1.14.1")
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _shapes(model, input_name, input_shape):
    """{value name: shape} of every value of `model` on one zero input."""
    onnx = require("onnx", "onnx==1.14.1")
    ort = require("onnxruntime", "onnxruntime")
    graph = model.graph
    known = {o.name for o in graph.output}
    names = [o for node in graph.node for o in node.output if o and o not in known]
    for name in names:
        graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {input_name: np.zeros(input_shape, dtype=np.float32)})
    except Exception as err:       # onnxruntime raises its own types for graphs it cannot run
        raise UserError(f"onnxruntime cannot run this graph on a {input_shape} input ({err}); check "
                        "the input size") from None
    shapes = {o.name: tuple(v.shape) for o, v in zip(session.get_outputs(), outputs)}
    shapes.update({t.name: tuple(t.dims) for t in graph.initializer})
    shapes[input_name] = tuple(input_shape)
    return shapes


def profile_onnx(path, input_size=224):
    """The Profile of the ONNX graph at `path` (one image input, NCHW)."""
    onnx = require("onnx", "onnx==1.14.1")
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as err:       # protobuf's DecodeError and friends
        raise UserError(f"{path} is not a loadable ONNX model ({type(err).__name__}); re-export it") from None
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise UserError(f"{path} has {len(inputs)} inputs besides its weights; this profiler takes one "
                        "image input")
    dims = inputs[0].type.tensor_type.shape.dim
    channels = dims[1].dim_value if len(dims) > 1 and dims[1].dim_value else 3
    shape = (1, channels, input_size, input_size)
    nodes = list(model.graph.node)
    shapes = _shapes(model, inputs[0].name, shape)
    producer = {o: i for i, node in enumerate(nodes) for o in node.output}
    consumers = Counter(name for node in nodes for name in node.input)
    fused, skip = _fusions(nodes, producer, consumers)
    folded = {i for i, node in enumerate(nodes) if node.op_type == "BatchNormalization"
              and nodes[producer.get(node.input[0], -1)].op_type == "Conv" and consumers[node.input[0]] == 1}
    conv_gets_bn = {producer[nodes[i].input[0]] for i in folded}
    prefix = common_prefix([n.name for n in nodes if n.name])
    ops, blocks, unsupported = [], [], Counter()
    for i, node in enumerate(nodes):
        if i in skip:
            continue
        more = _node_ops(node, i, shapes, fused, folded, conv_gets_bn)
        if more is None:
            unsupported[node.op_type] += 1
            continue
        ops += more
        blocks += [block_name(node.name or node.output[0], prefix)] * len(more)
    if unsupported:
        log.warning("ONNX ops this profiler does not count were counted as ZERO: %s",
                    ", ".join(f"{op} x{n}" for op, n in sorted(unsupported.items())))
    return Profile(ops, blocks, shape, dict(unsupported), str(path))


def _fusions(nodes, producer, consumers):
    """({Mul node index: 'hard_swish'}, indices folded into it) for x * HardSigmoid(x)."""
    fused, skip = {}, set()
    for i, node in enumerate(nodes):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for x, gate in (node.input, node.input[::-1]):
            j = producer.get(gate)
            if j is not None and nodes[j].op_type == "HardSigmoid" and nodes[j].input[0] == x \
                    and consumers[gate] == 1:
                fused[i], skip = "hard_swish", skip | {j}
                break
    return fused, skip


def _chw(shape):
    return (shape[1], shape[2], shape[3]) if len(shape) == 4 else (shape[1] if len(shape) > 1 else 1,
                                                                   math.prod(shape[2:]) or 1, 1)


def _node_ops(node, i, shapes, fused, folded, conv_gets_bn):
    """The ops of one node ([] when free), or None when it is of a kind nobody counts."""
    op, name = node.op_type, node.name or node.output[0]
    out = shapes.get(node.output[0]) if node.output else None
    if i in fused:
        c, h, w = _chw(out)
        return [act_op(name, fused[i], c, (h, w))]
    if op in FREE or (out is not None and len(out) < 2):
        return []      # layout, and arithmetic on shape vectors (reshapes computed at run time)
    if op == "Conv":
        return [conv_from_shapes(name, shapes[node.input[0]], out, tuple(shapes[node.input[1]][2:]),
                                 int(_attr(node, "group", 1)), len(node.input) > 2 and bool(node.input[2]),
                                 i in conv_gets_bn)]
    if op == "BatchNormalization":
        c, h, w = _chw(shapes[node.input[0]])
        return [bn_op(name, c, (h, w), folded=i in folded)]
    if op in ("Gemm", "MatMul"):
        x, weight = shapes[node.input[0]], shapes[node.input[1]]
        transposed = op == "Gemm" and _attr(node, "transB", 0)
        c_in, c_out = (weight[1], weight[0]) if transposed else (weight[0], weight[1])
        rows = math.prod(x[:-1]) // x[0]
        fc = fc_op(name, c_in, c_out, bias=op == "Gemm" and len(node.input) > 2)
        return [Op(**{**fc.__dict__, "mults": fc.mults * rows, "adds": fc.adds * rows, "macs": fc.macs * rows})]
    if op == "GlobalAveragePool":
        c, h, w = _chw(shapes[node.input[0]])
        return [pool_op(name, c, (h, w))]
    c, h, w = _chw(out)
    if op in ACTS:
        return [act_op(name, ACTS[op], c, (h, w))]
    if op in ("Add", "Sub"):
        return [eltwise_op(name, "add", c, (h, w))]
    if op in ("Mul", "Div"):
        return [eltwise_op(name, "mul", c, (h, w))]
    return None
