"""MXNet's ONNX exporter taught MXNet's own Reshape codes, for the duration of an export."""
from contextlib import contextmanager


@contextmanager
def mxnet_reshape_converter():
    """Let mx.onnx export Reshape with any of MXNet's special shape codes, for the duration.

    mxnet 1.9's converter rejects the codes -2 (copy the remaining dims), -3 (merge two dims) and -4
    (split a dim) except in a few hard-coded patterns, and channel_shuffle uses (0, -4, 2, -1, -2)
    and (0, -3, -2). The codes are fine; the exporter is what lacks them, so the fix belongs there:
    this converter builds the target shape from the input's runtime Shape (batch and spatial size
    stay dynamic). It is registered at opset 13, above the stock one, and delegates to it for
    shapes without those codes; leaving restores the registry.
    """
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from mxnet.onnx.mx2onnx._op_translations import _op_translations_opset12 as stock
    registry = MXNetGraph.registry_.setdefault(13, {})
    saved = registry.get("Reshape")

    def convert(node, **kwargs):
        attrs = node.get("attrs", {})
        codes = stock.convert_string_to_list(attrs["shape"])
        if attrs.get("reverse", "False") == "True" or not {-2, -3, -4} & set(codes):
            return MXNetGraph.registry_[12]["Reshape"](node, **kwargs)
        return _reshape_nodes(node, codes, kwargs, stock)

    registry["Reshape"] = convert
    try:
        yield
    finally:
        if saved is None:
            del registry["Reshape"]
        else:
            registry["Reshape"] = saved


def _reshape_nodes(node, codes, kwargs, stock):
    """ONNX nodes computing MXNet's Reshape(shape=codes) from the input's Shape.

    MXNet reads the codes left to right against the input dims: d > 0 (new size) and -1 (infer)
    consume one input dim, 0 copies one, -2 copies all the rest, -3 multiplies two, and -4 a b
    splits one into a x b (either may be -1).
    """
    from onnx.helper import make_node
    name, inputs, _ = stock.get_inputs(node, kwargs)
    nodes, pieces, count = [make_node("Shape", [inputs[0]], [f"{name}_in_shape"])], [], [0]

    def const(values):
        count[0] += 1
        tensor = f"{name}_const{count[0]}"
        stock.create_tensor(list(values), tensor, kwargs["initializer"])
        return tensor

    def dims(begin, end=None):           # input dims [begin, end) as a 1-D int64 tensor
        count[0] += 1
        out = f"{name}_dims{count[0]}"
        nodes.append(make_node("Slice", [f"{name}_in_shape", const([begin]),
                                         const([end if end is not None else 2 ** 62])], [out]))
        return out

    def binary(op, a, b):
        count[0] += 1
        out = f"{name}_{op.lower()}{count[0]}"
        nodes.append(make_node(op, [a, b], [out]))
        return out

    i, k = 0, 0
    while k < len(codes):
        code = codes[k]
        if code == 0:
            pieces.append(dims(i, i + 1))
            i += 1
        elif code > 0 or code == -1:
            pieces.append(const([code]))
            i += 1
        elif code == -2:
            pieces.append(dims(i))
        elif code == -3:
            pieces.append(binary("Mul", dims(i, i + 1), dims(i + 1, i + 2)))
            i += 2
        elif code == -4:
            a, b = codes[k + 1], codes[k + 2]
            if a == -1:
                pieces += [binary("Div", dims(i, i + 1), const([b])), const([b])]
            elif b == -1:
                pieces += [const([a]), binary("Div", dims(i, i + 1), const([a]))]
            else:
                pieces += [const([a]), const([b])]
            i, k = i + 1, k + 2
        else:
            raise ValueError(f"unknown MXNet reshape code {code} in {codes}")
        k += 1
    nodes.append(make_node("Concat", pieces, [f"{name}_target"], axis=0))
    nodes.append(make_node("Reshape", [inputs[0], f"{name}_target"], [name], name=name))
    return nodes
