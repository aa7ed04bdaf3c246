"""Ship a searched network: MXNet symbol, merged BN, ONNX, PyTorch and int8, each checked.

    python -m oneshot_nas.export NAME.params --to symbol,onnx,pytorch,int8 [--merge-bn] [--out-dir DIR]

NAME.params with NAME.json beside it (modelfile) holds a SubNet, or a supernet plus --arch to export
one of its paths (extracted, then its BatchNorm statistics recalibrated on training images). Written
next to the model or in --out-dir, with EXPORT = NAME, or NAME-mergedbn with --merge-bn:
    EXPORT-symbol.json, EXPORT-0000.params   symbol + params (re-imported with SymbolBlock.imports)
    EXPORT.onnx                              ONNX (dynamic batch), run with onnxruntime
    EXPORT.pt                                PyTorch state dict for oneshot_nas.export.torch_model.TorchSubNet
    EXPORT-int8-symbol.json, -0000.params    oneDNN int8 model calibrated on training batches
    EXPORT-export.json / .md                 what was written and what each check measured
Each float export must reproduce the original network's outputs (max |difference| <= 1e-4, relative
to the largest output when that exceeds 1); int8 reports its top-1 change and its speed instead.
"""
import argparse
import json
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mxnet as mx
import numpy as np

from .. import cli
from ..data import sources as data
from ..nn.bn_calib import recalibrate_bn
from ..compat import import_torch, require
from ..errors import ArchitectureError, UserError
from ..nn.merge_bn import merge_bn as fold_batchnorm
from ..runs.modelfile import build_model, load_parameters, read_meta
from ..space import Architecture, load_architecture
from ..nn.subnet import extract_subnet

log = logging.getLogger(__name__)
TARGETS = ("symbol", "onnx", "pytorch", "int8")
TOLERANCE = 1e-4


# ----- input ------------------------------------------------------------------------------------
def parse_targets(text):
    targets = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise UserError(f"unknown export target(s) {', '.join(unknown) or repr(text)}; "
                        f"choose from {','.join(TARGETS)} (comma-separated)")
    return [t for t in TARGETS if t in targets]


def check_packages(targets):
    """Fail before any work if a target's package is missing, naming the pip package."""
    if "onnx" in targets:
        require("onnx", "onnx==1.14.1")
        require("onnxruntime", "onnxruntime")
    if "pytorch" in targets:
        import_torch()


def parse_arch(text):
    """An Architecture from a models/*.json file or a canonical architecture string."""
    if Path(text).suffix == ".json" or Path(text).exists():
        return load_architecture(text)
    return Architecture.from_str(text)


def load_subnet(params_path, arch=None, dataset=None, calib_images=1024, ctx=None):
    """(SubNet, meta) to export from NAME.params: a saved SubNet, or a path `arch` of a saved
    supernet (extracted, its BN statistics recalibrated on `calib_images` training images)."""
    meta = read_meta(params_path)
    ctx = ctx or mx.cpu()
    if meta.get("kind") == "supernet":
        if arch is None:
            raise UserError(f"{params_path} is a supernet; export one of its paths with --arch "
                            "models/NAME.json (an architecture found by search), or search first")
        supernet = build_model(meta)
        if arch.space != supernet.space:
            raise ArchitectureError(f"the architecture {arch} is of space {arch.space.name!r}, but "
                                    f"{params_path} is a supernet of space {supernet.space.name!r}; "
                                    "pass an architecture searched in that supernet")
        load_parameters(supernet, params_path, [ctx])
        net = extract_subnet(supernet, arch, ctx)
        dataset = dataset or data.resolve_dataset(num_classes=arch.space.num_classes)
        images, _ = data.load_slice(dataset, dataset.train, calib_images, arch.space.input_size)
        recalibrate_bn(net, [images[i:i + 64] for i in range(0, len(images), 64)])
        log.info("extracted %s from the supernet; BN statistics recalibrated on %d training images",
                 arch, len(images))
        return net, {"kind": "subnet", **arch.to_dict(), "extracted_from": str(params_path)}
    if arch is not None:
        meta = read_meta(params_path, arch)
        if Path(params_path).with_suffix(".json").is_file():
            saved = read_meta(params_path)
            if {"space", "blocks", "channels"} <= set(saved) and Architecture.from_dict(saved) != arch:
                raise UserError(f"--arch {arch} differs from the architecture in "
                                f"{Path(params_path).with_suffix('.json').name} ({saved.get('arch')}); "
                                "drop --arch, or pass the parameters trained for that architecture")
    net = build_model(meta)
    load_parameters(net, params_path, [ctx])
    return net, meta


# ----- the exports ------------------------------------------------------------------------------
def check_inputs(space, dataset=None, n=4, seed=0):
    """(inputs, description) for the equality checks: validation images when there is a dataset.

    Real images, because a network is only well-conditioned on its own data: an untrained net whose
    BN statistics come from a few images turns Gaussian noise into logits in the thousands, where
    float32 rounding differences between two exact conversions grow to 1%. Noise otherwise.
    """
    if dataset is not None:
        images, _ = data.load_slice(dataset, dataset.val, n, space.input_size)
        return images, f"{len(images)} validation images of {dataset.name}"
    rng = np.random.default_rng(seed)
    return (mx.nd.array(rng.normal(size=(n, 3, space.input_size, space.input_size))),
            f"{n} Gaussian-noise inputs")


def compare(name, got, expected):
    """A check record: max |difference| against a tolerance scaled to the output's size."""
    error = float(np.abs(np.asarray(got) - expected).max())
    limit = TOLERANCE * max(1.0, float(np.abs(expected).max()))
    record = {"max_abs_error": error, "tolerance": limit, "ok": error <= limit}
    (log.info if record["ok"] else log.error)("%s: max |difference| %.2e (tolerance %.0e)%s", name,
                                              error, limit, "" if record["ok"] else ": FAILED")
    return record


def export_symbol(net, prefix, x, expected):
    """HybridBlock.export to PREFIX-symbol.json / PREFIX-0000.params, re-imported and compared."""
    from .quantize import load_symbol_block
    net.hybridize()
    net(x)
    net.export(str(prefix), epoch=0)
    files = [Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")]
    block = load_symbol_block(*files)
    return files, compare("symbol", block(x).asnumpy(), expected)


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


def export_onnx(symbol_file, params_file, path, x, expected):
    """mx.onnx.export_model (dynamic batch), checked with onnxruntime."""
    ort = require("onnxruntime", "onnxruntime")
    sym, args, auxs = mx.model.load_checkpoint(str(symbol_file)[:-len("-symbol.json")], 0)
    shape = tuple(x.shape[1:])
    with mxnet_reshape_converter():
        mx.onnx.export_model(sym, {**args, **auxs}, in_shapes=[(1,) + shape], in_types=[np.float32],
                             onnx_file_path=str(path), dynamic=True,
                             dynamic_input_shapes=[(None,) + shape])
    _tidy_onnx(path, expected.shape[1])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.asnumpy().astype(np.float32)})[0]
    return [Path(path)], compare("onnx (onnxruntime)", got, expected)


def _tidy_onnx(path, num_classes):
    """Drop what mx.onnx leaves behind: weights also listed as graph inputs (which keeps runtimes
    from folding constants, and makes onnxruntime warn once per weight) and unused initializers
    (the `split` axes it converts to attributes). Name the dynamic batch dimension 'batch' and
    state the output's class dimension, which the exporter leaves blank."""
    onnx = require("onnx", "onnx==1.14.1")
    model = onnx.load(str(path))
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    out = graph.output[0].type.tensor_type.shape.dim
    out[0].dim_param = "batch"
    out[1].dim_value = num_classes
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_pytorch(net, path, x, expected):
    """A state dict for torch_model.TorchSubNet, checked by running the PyTorch module."""
    torch = import_torch()
    from . import torch_model
    model = torch_model.from_mxnet(net)
    torch.save(model.state_dict(), str(path))
    model = torch_model.load(path, net.arch, fold_bn=net.fold_bn)
    with torch.no_grad():
        got = model(torch.from_numpy(x.asnumpy())).numpy()
    return [Path(path)], compare("pytorch", got, expected)


def export_int8(symbol_file, params_file, prefix, dataset, input_size, calib_batches, batch_size,
                calib_mode, val_images, latency_repeats):
    """Quantize the exported symbol (calibrated on training batches); compare with fp32."""
    from . import quantize
    sym, args, auxs = mx.model.load_checkpoint(str(symbol_file)[:-len("-symbol.json")], 0)
    calib, _ = data.load_slice(dataset, dataset.train, calib_batches * batch_size, input_size)
    qsym, qargs, qauxs = quantize.quantize_symbol(sym, args, auxs, calib, calib_mode, batch_size)
    mx.model.save_checkpoint(str(prefix), 0, qsym, qargs, qauxs)
    files = [Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")]
    fp32 = quantize.load_symbol_block(symbol_file, params_file)
    int8 = quantize.load_symbol_block(*files)
    record = quantize.compare(fp32, int8, dataset, input_size, repeats=latency_repeats,
                              val_limit=val_images)
    record.update(calibration_images=len(calib), calib_mode=calib_mode, dataset=dataset.name)
    return files, record


def export(net, *, name, out_dir, targets, merge_bn=False, dataset=None, calib_batches=4,
           batch_size=32, calib_mode="naive", val_images=None, latency_repeats=20, seed=0):
    """Write every target for the SubNet `net`; returns the summary (also written as JSON/markdown).

    `dataset` (data.Dataset) gives the check inputs (validation images) and int8's calibration and
    validation data; without it the checks use noise and int8 uses the embedded digits.

    `net` is hybridized on the way (the symbol is its cached graph). The symbol is checked whenever
    ONNX or int8 is made from it, and written to `out_dir` only when 'symbol' is a target.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch, space = net.arch, net.arch.space
    x, described = check_inputs(space, dataset, seed=seed)
    expected = net(x).asnumpy()
    export_name = f"{name}-mergedbn" if merge_bn else name
    summary = {"arch": str(arch), "architecture": arch.to_dict(), "input_name": "data",
               "input_shape": [None, 3, space.input_size, space.input_size],
               "num_classes": space.num_classes, "merged_bn": merge_bn, "check_inputs": described,
               "files": [], "checks": {}}

    def done(target, result):
        files, record = result
        summary["files"] += [str(f) for f in files]
        summary["checks"][target] = record

    if merge_bn:
        net = fold_batchnorm(net)
        summary["checks"]["merge_bn"] = compare("merged BN", net(x).asnumpy(), expected)
    with tempfile.TemporaryDirectory() as tmp:
        if {"symbol", "onnx", "int8"} & set(targets):   # ONNX and int8 are made from the symbol
            prefix = out_dir / export_name if "symbol" in targets else Path(tmp) / export_name
            files, record = export_symbol(net, prefix, x, expected)
            done("symbol", (files if "symbol" in targets else [], record))
            if "onnx" in targets:
                done("onnx", export_onnx(*files, out_dir / f"{export_name}.onnx", x, expected))
            if "int8" in targets:
                dataset = dataset or data.resolve_dataset(num_classes=space.num_classes)
                done("int8", export_int8(*files, out_dir / f"{export_name}-int8", dataset,
                                         space.input_size, calib_batches, batch_size, calib_mode,
                                         val_images, latency_repeats))
        if "pytorch" in targets:
            done("pytorch", export_pytorch(net, out_dir / f"{export_name}.pt", x, expected))
    path = out_dir / f"{export_name}-export.json"
    summary = _merge_earlier(path, summary)
    summary["ok"] = all(c.get("ok", True) for c in summary["checks"].values())
    path.write_text(json.dumps(summary, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(summary))
    summary["files"] += [str(path), str(path.with_suffix(".md"))]
    return summary


def _merge_earlier(path, summary):
    """Keep the files and checks of an earlier export of the same network (other targets)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return summary
    if earlier.get("arch") != summary["arch"] or not isinstance(earlier.get("checks"), dict):
        return summary
    files = [f for f in earlier.get("files", []) if f not in summary["files"] and Path(f).is_file()
             and not f.endswith(("-export.json", "-export.md"))]
    summary["files"] = files + summary["files"]
    summary["checks"] = {**earlier["checks"], **summary["checks"]}
    return summary


def markdown(summary):
    lines = [f"# Export of `{summary['arch']}`", "",
             f"input `data` {summary['input_shape']}, {summary['num_classes']} classes, "
             f"merged BN: {'yes' if summary['merged_bn'] else 'no'}; outputs compared on "
             f"{summary['check_inputs']}", "",
             "| check | result |", "|---|---|"]
    for target, c in summary["checks"].items():
        if target == "int8":
            f, q = c["fp32"], c["int8"]
            lines.append(f"| int8 top-1 ({c['dataset']}, {f['val_images']} images) | fp32 "
                         f"{100 * f['top1']:.2f}% -> int8 {100 * q['top1']:.2f}% "
                         f"({100 * c['top1_delta']:+.2f} points) |")
            for b in (1, 32):
                key = f"latency_ms_batch{b}"
                lines.append(f"| CPU latency, batch {b} | fp32 {f[key]:.2f} ms, int8 {q[key]:.2f} ms "
                             f"(x{c[f'speedup_batch{b}']:.2f}) |")
        else:
            lines.append(f"| {target} equals the original | {'yes' if c['ok'] else 'NO'}: largest "
                         f"difference {c['max_abs_error']:.1e} (tolerance {c['tolerance']:.0e}) |")
    return "\n".join(lines + ["", "Files: " + ", ".join(f"`{Path(f).name}`" for f in summary["files"])]) + "\n"


# ----- command line -----------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="NAME.params with NAME.json beside it")
    parser.add_argument("--to", default="symbol", help=f"comma-separated targets: {','.join(TARGETS)}")
    parser.add_argument("--merge-bn", action="store_true", help="fold BatchNorm into the convolutions")
    parser.add_argument("--out-dir", help="where to write (default: beside the model)")
    parser.add_argument("--arch", help="architecture (models/NAME.json or its string) to extract "
                                       "from a supernet file")
    group = parser.add_argument_group("data for the checks, int8 calibration/validation and BN "
                                      "recalibration (default: the embedded digits)")
    for flag in ("--rec-train", "--rec-train-idx", "--rec-val", "--rec-val-idx", "--data-dir"):
        group.add_argument(flag)
    group.add_argument("--num-classes", type=int)
    group.add_argument("--calib-batches", type=int, default=4, help="int8 calibration batches")
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive")
    group.add_argument("--val-images", type=int, help="evaluate int8 on at most this many images")
    group.add_argument("--latency-repeats", type=int, default=20)
    group.add_argument("--bn-calib-images", type=int, default=1024,
                       help="training images to recalibrate BN of a path extracted from a supernet")
    args = parser.parse_args(argv)
    cli.setup_logging()
    targets = parse_targets(args.to)
    check_packages(targets)
    if min(args.calib_batches, args.batch_size, args.latency_repeats, args.bn_calib_images) < 1:
        raise UserError("--calib-batches, --batch-size, --latency-repeats and --bn-calib-images "
                        "must be positive")
    arch = parse_arch(args.arch) if args.arch else None
    dataset = _dataset(args, needed="int8" in targets or arch is not None,
                       num_classes=args.num_classes or _num_classes(args.model, arch))
    net, _ = load_subnet(args.model, arch, dataset, args.bn_calib_images)
    model = Path(args.model)
    summary = export(net, name=model.stem, out_dir=args.out_dir or model.parent, targets=targets,
                     merge_bn=args.merge_bn, dataset=dataset, calib_batches=args.calib_batches,
                     batch_size=args.batch_size, calib_mode=args.calib_mode,
                     val_images=args.val_images, latency_repeats=args.latency_repeats)
    for f in summary["files"]:
        log.info("wrote %s", f)
    if not summary["ok"]:
        raise SystemExit("an export does not reproduce the original network's outputs (see above)")
    return summary


def _dataset(args, needed, num_classes):
    """The dataset the flags name (the embedded digits without flags). Only int8 and BN
    recalibration need one; the checks can fall back to noise when the digits do not fit."""
    flags = dict(rec_train=args.rec_train, rec_train_idx=args.rec_train_idx, rec_val=args.rec_val,
                 rec_val_idx=args.rec_val_idx, data_dir=args.data_dir)
    try:
        return data.resolve_dataset(num_classes=num_classes, **flags)
    except UserError:
        if needed or any(flags.values()):
            raise
        return None


def _num_classes(model, arch):
    if arch is not None:
        return arch.space.num_classes
    config = read_meta(model).get("space_config")
    return config.get("num_classes") if config else None


if __name__ == "__main__":
    cli.run(main)
