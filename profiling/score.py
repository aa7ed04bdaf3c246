"""MicroNet-style profile and score of a network: python profiling/score.py TARGET [flags].

TARGET is one of
  models/NAME.json         an architecture (written by search or by hand)
  NAME.params              a saved model; its architecture is read from NAME.json beside it
                           (or given with --arch), and the parameters must fit it
  NAME-symbol.json         an exported MXNet symbol of ANY network (NAME-0000.params beside it)
Every network is profiled by walking its MXNet graph with inferred shapes (oneshot_nas.cost.graph).
Units: params (BN folded into the conv before it), mults, adds and FLOPs = mults + adds as the
MicroNet challenge counts them; MACs and paper params as the SPOS/ShuffleNet papers count them.
"""
import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere without install

from oneshot_nas.cli import run, setup_logging  # noqa: E402
from oneshot_nas.cost.counting import MOBILENETV2_14, Counts, micronet_score  # noqa: E402
from oneshot_nas.errors import UserError  # noqa: E402
from oneshot_nas.space import Architecture, load_architecture  # noqa: E402

UNITS = {
    "params": "MicroNet parameters: every weight, a BatchNorm folded into the conv before it "
              "(the conv gains C_out biases)",
    "mults": "multiplications, MicroNet rules (ReLU counts 1 per element)",
    "adds": "additions, MicroNet rules",
    "flops": "MicroNet FLOPs = mults + adds",
    "macs": "multiply-accumulates, the 'FLOPs' of the SPOS/ShuffleNet papers' tables "
            "(conv/FC MACs + 1 per output with a bias + 1 per input element of a global pool)",
    "paper_params": "every trainable parameter (BN gamma and beta included), as the papers count",
    "q_params": "the params of quantizable ops (conv, FC, ReLU)",
    "q_mults": "the mults of quantizable ops",
}
BITS_NAME = {32: "fp32", 16: "fp16", 8: "int8"}
TARGET_HELP = ("TARGET is an architecture JSON (models/NAME.json), a saved model NAME.params, or an "
               "exported symbol NAME-symbol.json")


# ----- what to profile ---------------------------------------------------------------------------
def resolve_target(target, arch_path=None, input_size=None):
    """(Profile, description dict) of TARGET; bad input raises one UserError."""
    from oneshot_nas.cost.graph import profile_arch, profile_symbol_file
    path = Path(target)
    if not path.exists():
        raise UserError(f"{path} does not exist; {TARGET_HELP}")
    if not path.is_file():
        raise UserError(f"{path} is a folder, not a file; {TARGET_HELP}")
    exported = re.fullmatch(r"(.+)-\d{4}\.params", path.name)
    if exported and not path.with_suffix(".json").is_file():
        symbol = path.with_name(exported.group(1) + "-symbol.json")
        if symbol.is_file():
            path = symbol
    if path.name.endswith("-symbol.json"):
        if arch_path:
            raise UserError("--arch applies to NAME.params models only; an exported symbol "
                            "carries its own graph")
        profile = profile_symbol_file(path, input_size=input_size or 224)
        return profile, {"kind": "symbol", "arch": None}
    if path.suffix == ".params":
        arch = _model_arch(path, arch_path)
        kind = "model"
    elif path.suffix == ".json":
        if arch_path:
            raise UserError("--arch applies to NAME.params models only; TARGET is already an "
                            "architecture")
        arch, kind = load_architecture(path), "architecture"
    else:
        raise UserError(f"{path}: unknown kind of file; {TARGET_HELP}")
    return profile_arch(arch, input_size), {"kind": kind, "arch": arch}


def _model_arch(path, arch_path):
    """The architecture of the saved model at `path`, after checking its parameters fit it."""
    import mxnet as mx
    from oneshot_nas.runs.modelfile import build_model, json_beside, load_parameters, read_meta
    from oneshot_nas.nn.subnet import SubNet
    arch = load_architecture(arch_path) if arch_path else None
    meta = read_meta(path) if (json_beside(path).is_file() or arch is None) else None
    if meta is not None and meta.get("kind") == "supernet":
        if arch is None:
            raise UserError(f"{path} holds a supernet of space {meta.get('space')!r}; choose the "
                            "path to profile with --arch models/NAME.json")
        net = build_model(meta)
        if net.space != arch.space:
            raise UserError(f"--arch {arch_path} is of space {arch.space.name!r} but {path} holds "
                            f"a supernet of space {net.space.name!r}")
    else:
        if arch is None:
            try:
                arch = Architecture.from_dict(meta)
            except UserError as err:
                raise UserError(f"{json_beside(path)}: {err}") from None
        net = SubNet(arch)
    load_parameters(net, path, [mx.cpu()])
    return arch


# ----- the report as data ------------------------------------------------------------------------
def block_details(arch):
    """{block: what it is} for our networks: 'SNB-3 x1.8 (mid 57)' per position."""
    if arch is None:
        return {}
    space = arch.space
    details = {"stem": f"3x3 conv s2, {space.first_conv} ch",
               "head": f"{space.last_block} last block, {space.last_conv} ch, FC {space.num_classes}"}
    for p, name, scale, mid in zip(space.positions, arch.block_names, arch.scales, arch.mids):
        details[f"p{p.index}"] = f"{name} x{scale:g} (mid {mid}{', SE' if p.se else ''})"
    return details


def _short_names(names):
    """Op names without the prefix they all share (e.g. 'subnet0_'), Gluon's '_fwd' suffix and our
    layers' class names: subnet0_features_p3_main_convunit1_elasticbatchnorm0_batchnorm0 reads
    p3_main_unit1_batchnorm0."""
    from oneshot_nas.cost.graph import common_prefix
    prefix = common_prefix(list(names))
    short = []
    for name in names:
        name = re.sub(r"_fwd$", "", name[len(prefix):])
        name = re.sub(r"^features_(p\d+_)", r"\1", name)
        name = re.sub(r"convunit(\d+)_(elasticconv2d0_|elasticbatchnorm0_)?", r"unit\1_", name)
        short.append(name)
    return short


def build_report(profile, target, description, bits=(32, 16, 8), per_op=False):
    """Everything score.py prints, as a JSON-able dict."""
    counts = profile.counts
    details = block_details(description.get("arch"))
    report = {
        "target": str(target), "kind": description["kind"],
        "arch": str(description["arch"]) if description.get("arch") else None,
        "input_shape": list(profile.input_shape[1:]), "per": "image",
        "units": UNITS,
        "blocks": [dict(block=b, detail=details.get(b, ""), ops=n, **c.as_dict())
                   for b, c, n in profile.block_summaries()],
        "totals": counts.as_dict(),
        "reference": {"name": "MobileNetV2-1.4", "params": MOBILENETV2_14[0],
                      "flops": MOBILENETV2_14[1]},
        "scores": [_score(counts, b) for b in bits],
        "unsupported": profile.unsupported,
    }
    if per_op:
        names = _short_names([op.name for op in profile.ops])
        report["ops"] = [dict(name=name, block=block, kind=op.kind, in_shape=list(op.in_shape),
                              kernel=op.kernel, c_in=op.c_in, c_out=op.c_out, params=op.params,
                              mults=op.mults, adds=op.adds, flops=op.flops, macs=op.macs,
                              paper_params=op.paper_params, quantizable=op.quantizable)
                         for name, block, op in zip(names, profile.blocks, profile.ops)]
    return report


def _score(counts, bits):
    params_term = micronet_score(Counts(params=counts.params, q_params=counts.q_params), bits)
    score = micronet_score(counts, bits)
    return {"bits": bits, "precision": BITS_NAME.get(bits, f"{bits}-bit"),
            "params_term": params_term, "flops_term": score - params_term, "score": score}


# ----- rendering ---------------------------------------------------------------------------------
def _m(value):
    return f"{value / 1e6:.3f}"


def _kernel(k):
    if not k:
        return ""
    return f"{k}x{k}" if isinstance(k, int) else "x".join(map(str, k))


def _op_rows(report):
    header = ["name", "block", "kind", "input", "kernel", "C_in", "C_out", "params", "mults",
              "adds", "MFLOPs", "MMACs", "quantizable"]
    rows = [[o["name"], o["block"], o["kind"], "x".join(map(str, o["in_shape"])), _kernel(o["kernel"]),
             o["c_in"], o["c_out"], o["params"], o["mults"], o["adds"], _m(o["flops"]), _m(o["macs"]),
             "yes" if o["quantizable"] else "no"] for o in report["ops"]]
    return header, rows


def _block_rows(report):
    header = ["block", "detail", "ops", "params", "mults", "adds", "MFLOPs", "MMACs", "paper params"]
    rows = [[b["block"], b["detail"], b["ops"], b["params"], b["mults"], b["adds"], _m(b["flops"]),
             _m(b["macs"]), b["paper_params"]] for b in report["blocks"]]
    if not any(b["detail"] for b in report["blocks"]):       # foreign networks: nothing to say
        header, rows = header[:1] + header[2:], [r[:1] + r[2:] for r in rows]
    return header, rows


def _total_rows(report):
    t = report["totals"]
    return [["params (MicroNet, BN folded)", t["params"], f"{t['params'] / 1e6:.3f}M"],
            ["mults", t["mults"], f"{t['mults'] / 1e6:.2f}M"],
            ["adds", t["adds"], f"{t['adds'] / 1e6:.2f}M"],
            ["FLOPs = mults + adds (MicroNet)", t["flops"], f"{t['flops'] / 1e6:.2f}M"],
            ["MACs (papers' 'FLOPs')", t["macs"], f"{t['macs'] / 1e6:.2f}M"],
            ["paper params (BN gamma/beta included)", t["paper_params"],
             f"{t['paper_params'] / 1e6:.3f}M"],
            ["quantizable params", t["q_params"], f"{t['q_params'] / 1e6:.3f}M"],
            ["quantizable mults", t["q_mults"], f"{t['q_mults'] / 1e6:.2f}M"]]


def _score_rows(report):
    return [[s["precision"], f"{s['params_term']:.4f}", f"{s['flops_term']:.4f}", f"{s['score']:.4f}"]
            for s in report["scores"]]


def _md_table(header, rows):
    """A markdown table; counts get thousands separators (CSV and JSON keep plain numbers)."""
    def cell(v):
        return f"{v:,}" if isinstance(v, int) and abs(v) >= 10_000 else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report):
    c, h, w = report["input_shape"]
    ref = report["reference"]
    out = [f"# MicroNet profile: {report['target']}", ""]
    if report["arch"]:
        out.append(f"Architecture `{report['arch']}`.")
    out += [f"Input {c}x{h}x{w}; every count is per image.",
            "Units: **FLOPs = mults + adds** (MicroNet challenge); **MACs** = multiply-accumulates as "
            "in the SPOS/ShuffleNet papers' \"FLOPs\" columns; params fold each BatchNorm into the "
            "conv before it; paper params count every trainable parameter.", ""]
    header, rows = _op_rows(report) if "ops" in report else _block_rows(report)
    out += ["## Ops" if "ops" in report else "## Blocks", "", _md_table(header, rows), "",
            "## Totals", "", _md_table(["metric", "count", "millions"], _total_rows(report)), "",
            f"## MicroNet score against {ref['name']} ({ref['params'] / 1e6:g}M params, "
            f"{ref['flops'] / 1e6:g}M FLOPs)", "",
            "score = params / 6.9M + FLOPs / 1170M; at 16 and 8 bits quantizable params and mults "
            "count bits/32 of themselves, adds and other ops stay 32-bit.", "",
            _md_table(["precision", "params term", "FLOPs term", "score"], _score_rows(report))]
    if report["unsupported"]:
        out += ["", "Not counted (unsupported ops, counted as zero): " + ", ".join(
            f"{op} x{n}" for op, n in sorted(report["unsupported"].items()))]
    return "\n".join(out) + "\n"


def render_csv(report):
    """Two CSV tables separated by a blank line: ops (or blocks) + a TOTAL row, then metrics."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header, rows = _op_rows(report) if "ops" in report else _block_rows(report)
    writer.writerow(header)
    writer.writerows(rows)
    buf.write("\n")
    writer.writerow(["metric", "value"])
    for key, value in report["totals"].items():
        writer.writerow([key, value])
    for s in report["scores"]:
        writer.writerow([f"score_{s['precision']}", f"{s['score']:.6f}"])
    for op, n in sorted(report["unsupported"].items()):
        writer.writerow([f"unsupported_{op}", n])
    return buf.getvalue()


def render(report, fmt):
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    return render_csv(report) if fmt == "csv" else render_markdown(report)


# ----- entry point -------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python profiling/score.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="models/NAME.json, NAME.params or NAME-symbol.json")
    parser.add_argument("--arch", help="architecture JSON for a NAME.params without NAME.json "
                                       "beside it (or the path to profile in a supernet)")
    parser.add_argument("--input-size", type=int, help="input height = width (default: the "
                        "space's input size; 224 for exported symbols)")
    parser.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
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
