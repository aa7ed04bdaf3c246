"""The MicroNet profile of a network as a report: per-block (or per-op) counts, totals, the cost
record of cost/model.py and MicroNet scores at several precisions, rendered as markdown, CSV or JSON.
profiling/score.py is the command; this module builds and renders what it prints."""
import csv
import io
import json
import re

from .counting import MOBILENETV2_14, Counts, micronet_score
from .model import costs_of_counts, format_value

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
BITOPS_UNIT = ("BitOps: of a fake-quantized network, the sum over conv/FC layers of MACs x weight bits x "
               "activation bits, each layer at the widths its fake quantization rounds to (a float layer "
               "counts 32 x 32)")
BITS_NAME = {32: "fp32", 16: "fp16", 8: "int8"}

def block_details(arch):
    """{block: what it is} for our networks: 'SNB-3 x1.8 (mid 57)' per position."""
    if arch is None:
        return {}
    space = arch.space
    details = {"stem": f"3x3 conv s2, {space.first_conv} ch",
               "head": f"{space.last_block} last block, {space.last_conv} ch, FC {space.num_classes}"}
    for p, name, scale, mid in zip(arch.positions, arch.block_names, arch.scales, arch.mids):
        details[f"p{p.index}"] = f"{name} x{scale:g} (mid {mid}{', SE' if p.se else ''})"
    return details


def _short_names(names):
    """Op names without the prefix they all share (e.g. 'subnet0_'), Gluon's '_fwd' suffix and our
    layers' class names: subnet0_features_p3_main_convunit1_elasticbatchnorm0_batchnorm0 reads
    p3_main_unit1_batchnorm0."""
    from .graph import common_prefix
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
    quantized = profile.quantized
    report = {
        "target": str(target), "kind": description["kind"],
        "arch": str(description["arch"]) if description.get("arch") else None,
        "input_shape": list(profile.input_shape[1:]), "per": "image",
        "units": {**UNITS, "bitops": BITOPS_UNIT} if quantized else UNITS,
        "quantized": quantized,
        "fake_quant_ops": profile.fake_quant_ops,
        "blocks": [dict(block=b, detail=details.get(b, ""), ops=n, **c.as_dict())
                   for b, c, n in profile.block_summaries()],
        "totals": counts.as_dict(),
        "costs": costs_of_counts(counts),
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
                              paper_params=op.paper_params, quantizable=op.quantizable,
                              **(dict(wbits=op.wbits, abits=op.abits, bitops=op.bitops) if quantized else {}))
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


def _millions(count):
    """A total in millions to three significant figures, as every report prints MACs."""
    return format_value(count, "macs")


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
    if report.get("quantized"):
        header += ["bits (w/a)", "MBitOps"]
        for row, o in zip(rows, report["ops"]):
            row += [f"{o['wbits']}/{o['abits']}" if o["wbits"] else "", _m(o["bitops"])]
    return header, rows


def _block_rows(report):
    header = ["block", "detail", "ops", "params", "mults", "adds", "MFLOPs", "MMACs", "paper params"]
    rows = [[b["block"], b["detail"], b["ops"], b["params"], b["mults"], b["adds"], _m(b["flops"]),
             _m(b["macs"]), b["paper_params"]] for b in report["blocks"]]
    if report.get("quantized"):
        header.append("MBitOps")
        for row, b in zip(rows, report["blocks"]):
            row.append(_m(b["bitops"]))
    if not any(b["detail"] for b in report["blocks"]):       # foreign networks: nothing to say
        header, rows = header[:1] + header[2:], [r[:1] + r[2:] for r in rows]
    return header, rows


def _total_rows(report):
    t = report["totals"]
    return [["params (MicroNet, BN folded)", t["params"], _millions(t["params"])],
            ["mults", t["mults"], _millions(t["mults"])],
            ["adds", t["adds"], _millions(t["adds"])],
            ["FLOPs = mults + adds (MicroNet)", t["flops"], _millions(t["flops"])],
            ["MACs (papers' 'FLOPs')", t["macs"], _millions(t["macs"])],
            ["paper params (BN gamma/beta included)", t["paper_params"],
             _millions(t["paper_params"])],
            ["quantizable params", t["q_params"], _millions(t["q_params"])],
            ["quantizable mults", t["q_mults"], _millions(t["q_mults"])]] + (
        [["BitOps (MACs x weight bits x activation bits)", t["bitops"], _millions(t["bitops"])]]
        if report.get("quantized") else [])


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
    if report.get("quantized"):
        out[-1:-1] = [f"Fake-quantized: **BitOps** = MACs x weight bits x activation bits of each conv/FC, "
                      f"at the widths read from its fake quantization (a float layer counts 32 x 32); "
                      f"the {report['fake_quant_ops']} ops of the fake quantization simulate integer "
                      "arithmetic and are not counted."]
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
