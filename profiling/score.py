"""MicroNet-style profile and score of a network: python profiling/score.py TARGET [flags].

TARGET is one of
  models/NAME.json         an architecture (written by search or by hand)
  ARCH_STRING              an architecture string, e.g. tiny_B0123-3210-01230123-3012_C4444-...
  NAME.params              a saved model; its architecture is read from NAME.json beside it
                           (or given with --arch), and the parameters must fit it
  NAME-symbol.json         an exported MXNet symbol of ANY network (NAME-0000.params beside it)
  NAME.onnx                an ONNX graph of ANY network
  MODEL_ZOO_NAME           a gluoncv model-zoo network, e.g. mobilenetv3_large (never downloaded)
Our networks and MXNet symbols are profiled by walking their MXNet graph with inferred shapes
(oneshot_nas.cost.graph), ONNX graphs node by node with the same rules (oneshot_nas.cost.onnx_graph).
Units: params (BN folded into the conv before it), mults, adds and FLOPs = mults + adds as the
MicroNet challenge counts them; MACs and paper params as the SPOS/ShuffleNet papers count them;
for a fake-quantized network (a quantized space's, or its exported symbol) also BitOps, each layer
at the bit widths read from the graph.
"""
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere without install

from oneshot_nas.cli import ArgumentParser, run, setup_logging  # noqa: E402
from oneshot_nas.cost.profile_report import build_report, render  # noqa: E402
from oneshot_nas.errors import UserError  # noqa: E402
from oneshot_nas.space import load_architecture  # noqa: E402

TARGET_HELP = ("TARGET is an architecture (models/NAME.json or its string), a saved model NAME.params, "
               "an exported symbol NAME-symbol.json, an ONNX file or a gluoncv model-zoo name")


# ----- what to profile ---------------------------------------------------------------------------
def resolve_target(target, arch_path=None, input_size=None):
    """(Profile, description dict) of TARGET; bad input raises one UserError."""
    from oneshot_nas.cost.graph import profile_arch, profile_symbol_file
    path = Path(target)
    if not path.exists():
        return _named_target(str(target), arch_path, input_size)
    if not path.is_file():
        raise UserError(f"{path} is a folder, not a file; {TARGET_HELP}")
    if arch_path and not path.suffix == ".params":
        raise UserError(f"--arch applies to NAME.params models only; {path.name} carries its own network")
    exported = re.fullmatch(r"(.+)-\d{4}\.params", path.name)
    if exported and not path.with_suffix(".json").is_file():
        symbol = path.with_name(exported.group(1) + "-symbol.json")
        if symbol.is_file():
            path = symbol
    if path.name.endswith("-symbol.json"):
        return profile_symbol_file(path, input_size=input_size or 224), {"kind": "symbol", "arch": None}
    if path.suffix == ".onnx":
        from oneshot_nas.cost.onnx_graph import profile_onnx
        return profile_onnx(path, input_size or _exported_size(path) or 224), {"kind": "onnx", "arch": None}
    if path.suffix == ".params":
        arch, kind = _model_arch(path, arch_path), "model"
    elif path.suffix == ".json":
        arch, kind = load_architecture(path), "architecture"
    else:
        raise UserError(f"{path}: unknown kind of file; {TARGET_HELP}")
    return profile_arch(arch, input_size), {"kind": kind, "arch": arch}


def _named_target(name, arch_path, input_size):
    """An architecture string or a gluoncv model-zoo name (TARGET is not a file)."""
    from oneshot_nas.cost.graph import gluoncv_symbol, profile_arch, profile_symbol
    from oneshot_nas.space import ARCH_STRING
    if arch_path:
        raise UserError("--arch applies to NAME.params models only")
    if ARCH_STRING.fullmatch(name):
        arch = load_architecture(name)
        return profile_arch(arch, input_size), {"kind": "architecture", "arch": arch}
    if re.fullmatch(r"[a-z][a-z0-9_.]*", name) and "/" not in name and not name.endswith((".json", ".params", ".onnx")):
        from oneshot_nas.compat import import_gluoncv
        if name in import_gluoncv().model_zoo.get_model_list():
            size = input_size or 224
            profile = profile_symbol(gluoncv_symbol(name), {"data": (1, 3, size, size)}, source=name)
            return profile, {"kind": "gluoncv", "arch": None}
        raise UserError(f"{name} is not a file and not a gluoncv model-zoo name (e.g. mobilenetv3_large, "
                        "mobilenetv2_1.0, resnet18_v1); " + TARGET_HELP)
    raise UserError(f"{name} does not exist; {TARGET_HELP}")


def _exported_size(path):
    """The input size our exporter recorded beside EXPORT.onnx, if it did."""
    summary = path.with_name(path.stem + "-export.json")
    try:
        return json.loads(summary.read_text())["input_shape"][-1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _model_arch(path, arch_path):
    """The architecture of the saved model at `path`, after checking its parameters fit it."""
    from oneshot_nas.runs.modelfile import json_beside, load_model, read_meta
    if arch_path is None and not json_beside(path).is_file() and Path(path).is_file():
        raise UserError(f"{path} has no {json_beside(path).name} beside it saying which network it "
                        "holds: for a network of the search space pass its architecture with --arch "
                        "models/NAME.json; for any other network (e.g. a gluoncv model) profile its "
                        "model-zoo name, its exported NAME-symbol.json or an ONNX file instead")
    arch = load_architecture(arch_path) if arch_path else None
    if arch is None and read_meta(path)["kind"] == "supernet":
        raise UserError(f"{path} holds a supernet; choose the path to profile with --arch models/NAME.json")
    net, _ = load_model(path, arch=arch)
    return arch if arch is not None else net.arch


# ----- entry point -------------------------------------------------------------------------------
def parse_args(argv):
    parser = ArgumentParser(prog="python profiling/score.py", description=__doc__)
    parser.add_argument("target", help="what to profile: an architecture (models/NAME.json or its string), "
                        "NAME.params, NAME-symbol.json, NAME.onnx or a gluoncv model-zoo name (e.g. mobilenetv2_1.0)")
    parser.add_argument("--arch", help="architecture JSON for a NAME.params without NAME.json "
                                       "beside it (or the path to profile in a supernet)")
    parser.add_argument("--input-size", type=int, help="input height = width (default: the "
                        "space's input size; 224 for exported symbols)")
    parser.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown",
                        help="how the profile is written")
    parser.add_argument("--per-op", action="store_true", help="every op instead of block summaries")
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 16, 8],
                        help="precisions to score at (default: 32 16 8)")
    parser.add_argument("--out", help="write the profile here instead of stdout")
    args = parser.parse_args(argv)
    if args.input_size is not None and args.input_size < 1:
        raise UserError(f"--input-size must be a positive number of pixels, got {args.input_size}")
    if any(not 1 <= b <= 32 for b in args.bits):
        raise UserError(f"--bits takes precisions from 1 to 32, got {args.bits}")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    profile, description = resolve_target(args.target, args.arch, args.input_size)
    report = build_report(profile, args.target, description, tuple(args.bits), args.per_op)
    text = render(report, args.format)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return report


if __name__ == "__main__":
    run(main)
