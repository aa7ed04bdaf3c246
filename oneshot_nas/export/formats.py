"""Ship a searched network: MXNet symbol, merged BN, ONNX, PyTorch and int8, each checked.

    python -m oneshot_nas.export NAME.params --to symbol,onnx,pytorch,int8 [--merge-bn] [--out-dir DIR]

NAME.params with NAME.json beside it (modelfile) holds a SubNet, or a supernet plus --arch to export
one of its paths (extracted, then its BatchNorm statistics recalibrated on training images). Written
next to the model or in --out-dir, with EXPORT = NAME, or NAME-mergedbn with --merge-bn:
    EXPORT-symbol.json, EXPORT-0000.params   symbol + params (re-imported with SymbolBlock.imports)
    EXPORT.onnx                              ONNX (dynamic batch), run with onnxruntime
    EXPORT.pt                                PyTorch state dict for oneshot_nas.export.torch_model.TorchSubNet
    EXPORT-torchscript.pt                    TorchScript (traced): torch.jit.load(path), nothing else needed
    EXPORT-int8-symbol.json, -0000.params    oneDNN int8 model calibrated on training batches
    EXPORT-export.json / .md                 what was written and what each check measured
Each float export must reproduce the original network's outputs (max |difference| <= 1e-4, relative
to the largest output when that exceeds 1); int8 reports its top-1 change and its speed instead.
"""
import json
import logging
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np

from ..compat import import_torch, require
from ..data import sources as data
from ..data.slices import calibration_slice, val_slice
from ..errors import ArchitectureError, UserError
from ..nn.merge_bn import merge_bn as fold_batchnorm
from ..nn.pathgraph import PathGraph
from .onnx_reshape import mxnet_reshape_converter
from ..nn.subnet import extract_subnet
from ..runs.modelfile import load_model, read_meta
from ..space import load_architecture

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
    return load_architecture(text)


def load_subnet(params_path, arch=None, dataset=None, calib_images=1024, ctx=None):
    """(SubNet, meta) to export from NAME.params: a saved SubNet, or a path `arch` of a saved
    supernet (extracted, its BN statistics recalibrated on `calib_images` training images)."""
    ctx = ctx or mx.cpu()
    meta = read_meta(params_path, arch)
    if meta["kind"] == "supernet" and arch is None:
        raise UserError(f"{params_path} is a supernet; export one of its paths (give an architecture "
                        "found by search, models/NAME.json), or search first", settings="arch")
    net, meta = load_model(params_path, arch=arch, ctx=ctx)
    if meta["kind"] == "subnet":
        return net, meta
    if arch.space != net.space:
        raise ArchitectureError(f"the architecture {arch} is of space {arch.space.name!r}, but "
                                f"{params_path} is a supernet of space {net.space.name!r}; "
                                "pass an architecture searched in that supernet")
    subnet = extract_subnet(net, arch, ctx)
    dataset = dataset or data.resolve_dataset(num_classes=arch.space.num_classes)
    calibration = calibration_slice(dataset, calib_images, arch.space.input_size)
    graph = PathGraph(subnet, contexts=[ctx])
    graph.calibrate(calibration.batches(64))
    graph.store_statistics()
    log.info("extracted %s from the supernet; BN statistics recalibrated on %d training images",
             arch, len(calibration))
    return subnet, {"kind": "subnet", **arch.to_dict(), "extracted_from": str(params_path)}


# ----- the exports ------------------------------------------------------------------------------
def check_inputs(space, dataset=None, n=4, seed=0):
    """(inputs, description) for the equality checks: validation images when there is a dataset.

    Real images, because a network is only well-conditioned on its own data: an untrained net whose
    BN statistics come from a few images turns Gaussian noise into logits in the thousands, where
    float32 rounding differences between two exact conversions grow to 1%. Noise otherwise.
    """
    if dataset is not None:
        images = val_slice(dataset, n, space.input_size).data()
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
    """A state dict for torch_model.TorchSubNet (PATH) and a self-contained TorchScript file that
    plain torch loads (PATH with -torchscript before .pt), each checked by running it."""
    torch = import_torch()
    from . import torch_model
    model = torch_model.from_mxnet(net)
    torch.save(model.state_dict(), str(path))
    model = torch_model.load(path, net.arch, fold_bn=net.fold_bn)
    inputs = torch.from_numpy(x.asnumpy())
    scripted = Path(path).with_name(Path(path).stem + "-torchscript.pt")
    torch_model.trace(model, inputs[:1]).save(str(scripted))     # traced on one image: any batch runs
    with torch.no_grad():
        got = model(inputs).numpy()
        got_scripted = torch.jit.load(str(scripted))(inputs).numpy()
    checks = compare("pytorch", got, expected)
    traced = compare("torchscript", got_scripted, expected)
    checks.update(torchscript_max_abs_error=traced["max_abs_error"], ok=checks["ok"] and traced["ok"])
    return [Path(path), scripted], checks


def export_int8(symbol_file, params_file, prefix, dataset, input_size, calib_batches, batch_size,
                calib_mode, val_images, latency_repeats):
    """Quantize the exported symbol (calibrated on training batches); compare with fp32."""
    from . import quantize
    sym, args, auxs = mx.model.load_checkpoint(str(symbol_file)[:-len("-symbol.json")], 0)
    calib = calibration_slice(dataset, calib_batches * batch_size, input_size).data()
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
    arch, space = net.arch, net.arch.space
    int8_net = check_quantized(net, targets, merge_bn)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
                if int8_net is not None:      # an all-8-bit network: oneDNN's int8 model of its float twin
                    files, _ = export_symbol(int8_net, Path(tmp) / f"{export_name}-float", x, int8_net(x).asnumpy())
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


def check_quantized(net, targets, merge_bn):
    """For a fake-quantized SubNet (a quantized space): refuse what cannot carry its bit widths,
    and for int8 return its float twin (same weights, no fake quantization), which oneDNN
    quantizes to int8 exactly when every width is 8; None for a float network."""
    arch = net.arch
    if not arch.space.quantized:
        return None
    others = sorted(({"onnx", "pytorch"} & set(targets)) | ({"merge-bn"} if merge_bn else set()))
    if others:
        raise UserError(f"{arch} is fake-quantized: {', '.join(others)} cannot carry its bit widths; "
                        "export it with --to symbol (and int8 when every width is 8)")
    if "int8" not in targets:
        return None
    widths = set(arch.weight_bits) | set(arch.activation_bits) | {arch.space.edge_bits}
    if widths != {8}:
        raise UserError(f"int8 export needs every bit width at 8, but {arch} uses {sorted(widths)} bits; "
                        "export it with --to symbol (the fake-quantized network) or retrain it at 8 bits")
    from ..nn.subnet import SubNet
    from ..space import Architecture
    space = arch.space.derive(f"{arch.space.name}-float", bit_widths=(), edge_bits=8)
    twin = SubNet(Architecture(space, **{g.name: getattr(arch, g.name) for g in space.gene_groups}))
    twin.initialize(mx.init.Zero(), ctx=net.collect_params().list_ctx())
    weights = net._collect_params_with_prefix()
    for name, p in twin._collect_params_with_prefix().items():
        p.set_data(weights[name].data())
    return twin


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
