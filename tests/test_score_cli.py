"""profiling/score.py driven in-process: the numbers it prints and writes, and its error messages."""
import csv
import io
import json

import mxnet as mx
import pytest

from oneshot_nas.cli import run
from oneshot_nas.cost.counting import Counts, count_ops, micronet_score
from oneshot_nas.runs.modelfile import save_model
from oneshot_nas.space import Architecture, get_space, load_architecture, save_architecture
from oneshot_nas.nn.subnet import SubNet
from oneshot_nas.nn.supernet import SuperNet
from profiling import score
from tests.conftest import ROOT
from tests.test_space import random_arch


def _json(argv, tmp_path):
    out = tmp_path / "profile.json"
    score.main(argv + ["--format", "json", "--out", str(out)])
    return json.loads(out.read_text())


def _check(report, arch, counts=None):
    counts = counts or Counts.of(count_ops(arch))
    assert report["arch"] == str(arch)
    assert report["totals"] == counts.as_dict()
    assert [s["precision"] for s in report["scores"]] == ["fp32", "fp16", "int8"]
    for s in report["scores"]:
        assert s["score"] == pytest.approx(micronet_score(counts, s["bits"]), rel=1e-12)
    summed = Counts()
    for b in report["blocks"]:
        summed += Counts(*(b[f] for f in Counts.__dataclass_fields__))
    assert summed == counts


@pytest.mark.parametrize("name", ["oneshot", "oneshot+", "oneshot-s+"])
def test_shipped_models(name, tmp_path):
    path = ROOT / "models" / f"{name}.json"
    report = _json([str(path)], tmp_path)
    arch = load_architecture(path)
    _check(report, arch)
    assert report["kind"] == "architecture" and report["input_shape"] == [3, 224, 224]
    assert [b["block"] for b in report["blocks"]] == ["stem"] + [f"p{i}" for i in range(20)] + ["head"]
    assert report["blocks"][1]["detail"].startswith(arch.block_names[0])


def test_markdown_states_units_totals_and_scores(capsys):
    path = ROOT / "models" / "oneshot-s+.json"
    score.main([str(path)])
    text = capsys.readouterr().out
    counts = Counts.of(count_ops(load_architecture(path)))
    assert "FLOPs = mults + adds" in text and "MACs" in text
    assert f"| MACs (papers' 'FLOPs') | {counts.macs:,} |" in text
    assert f"| FLOPs = mults + adds (MicroNet) | {counts.flops:,} |" in text
    for bits, name in ((32, "fp32"), (16, "fp16"), (8, "int8")):
        assert f"| {name} |" in text and f"{micronet_score(counts, bits):.4f} |" in text


def test_per_op_csv_on_tiny(tmp_path, capsys, rng):
    arch = random_arch("tiny", rng)
    path = save_architecture(tmp_path / "a.json", arch)
    score.main([str(path), "--per-op", "--format", "csv"])
    table, metrics = capsys.readouterr().out.split("\n\n")
    rows = list(csv.DictReader(io.StringIO(table)))
    ops = count_ops(arch)
    assert len(rows) == len(ops)
    for row, op in zip(rows, ops):
        assert (row["kind"], int(row["params"]), int(row["mults"]), int(row["adds"])) == \
            (op.kind, op.params, op.mults, op.adds)
        assert row["quantizable"] == ("yes" if op.quantizable else "no")
    values = dict(csv.reader(io.StringIO(metrics)))
    assert int(values["flops"]) == Counts.of(ops).flops
    assert float(values["score_int8"]) == pytest.approx(micronet_score(Counts.of(ops), 8), abs=1e-6)


def test_saved_model_reads_its_architecture_and_checks_its_parameters(tmp_path, rng):
    arch = random_arch("tiny", rng)
    net = SubNet(arch)
    net.initialize()
    model = save_model(net, tmp_path / "m.params")
    report = _json([str(model), "--per-op"], tmp_path)
    _check(report, arch)
    assert report["kind"] == "model" and len(report["ops"]) == len(count_ops(arch))
    # at another input size: the same network in a space derived at that size
    resized = Architecture(get_space("tiny").derive("tiny", input_size=64), arch.blocks, arch.channels)
    _check(_json([str(model), "--input-size", "64"], tmp_path), arch,
           Counts.of(count_ops(resized)))
    # no NAME.json beside it: the message says how to pass --arch, and --arch works
    (tmp_path / "m.json").rename(tmp_path / "arch.json")
    with pytest.raises(score.UserError, match="--arch"):
        score.main([str(model)])
    _check(_json([str(model), "--arch", str(tmp_path / "arch.json")], tmp_path), arch)
    # an architecture the parameters do not fit
    other = Architecture("tiny", arch.blocks, [(c + 1) % 10 for c in arch.channels])
    save_architecture(tmp_path / "other.json", other)
    with pytest.raises(score.UserError, match="does not fit"):
        score.main([str(model), "--arch", str(tmp_path / "other.json")])


def test_supernet_model_needs_a_path(tmp_path, rng):
    net = SuperNet("tiny")
    net.initialize()
    model = save_model(net, tmp_path / "super.params")
    with pytest.raises(score.UserError, match="holds a supernet"):
        score.main([str(model)])
    arch = random_arch("tiny", rng)
    save_architecture(tmp_path / "path.json", arch)
    _check(_json([str(model), "--arch", str(tmp_path / "path.json")], tmp_path), arch)


def test_exported_symbol(tmp_path, rng):
    arch = random_arch("tiny", rng)
    net = SubNet(arch)
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(tmp_path / "net"))
    for target in ("net-symbol.json", "net-0000.params"):
        report = _json([str(tmp_path / target), "--input-size", "32"], tmp_path)
        assert report["kind"] == "symbol" and report["arch"] is None
        assert report["totals"] == Counts.of(count_ops(arch)).as_dict()


@pytest.mark.parametrize("setup,message", [
    (lambda d: d / "missing.json", "does not exist"),
    (lambda d: (d / "bad.json").write_text("{oops") and d / "bad.json", "not valid JSON"),
    (lambda d: (d / "x.txt").write_text("x") and d / "x.txt", "unknown kind of file"),
    (lambda d: (d / "w.params").write_bytes(b"junk") and d / "w.params", "--arch"),
    (lambda d: (d / "n-symbol.json").write_text("[]") and d / "n-symbol.json", "not a valid MXNet symbol"),
])
def test_bad_input_is_one_clear_line(setup, message, tmp_path, capsys):
    target = setup(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run(score.main, [str(target)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_damaged_params_file_with_arch(tmp_path):
    path = save_architecture(tmp_path / "a.json", Architecture.largest("tiny"))
    (tmp_path / "w.params").write_bytes(b"junk")
    with pytest.raises(score.UserError, match="damaged"):
        score.main([str(tmp_path / "w.params"), "--arch", str(path)])


def test_onnx_files_architecture_strings_and_model_zoo_names_are_profiled(tmp_path):
    """An ONNX graph is counted node by node with the same rules: our exported network's ONNX
    file gives exactly the analytic counts of its architecture, as its string does."""
    from oneshot_nas.export import __main__ as export
    from tests.test_export import saved_subnet
    net, path = saved_subnet(tmp_path)
    export.main([str(path), "--to", "onnx"])
    expected = Counts.of(count_ops(net.arch))
    for target, kind in ((tmp_path / "net.onnx", "onnx"), (str(net.arch), "architecture")):
        report = _json([str(target)], tmp_path)
        assert report["kind"] == kind and report["unsupported"] == {}
        assert {k: report["totals"][k] for k in ("params", "mults", "adds", "macs")} == \
            {k: getattr(expected, k) for k in ("params", "mults", "adds", "macs")}
    zoo = _json(["mobilenetv2_1.0"], tmp_path)      # gluoncv's, never downloaded: 3.5M params, 300M MACs
    assert zoo["kind"] == "gluoncv" and 3.4e6 < zoo["totals"]["paper_params"] < 3.6e6
    assert 2.9e8 < zoo["totals"]["macs"] < 3.2e8
    with pytest.raises(score.UserError, match="not a gluoncv model-zoo name"):
        score.main(["mobilenet_v9"])
    with pytest.raises(score.UserError, match="not a loadable ONNX model"):
        (tmp_path / "bad.onnx").write_bytes(b"not onnx")
        score.main([str(tmp_path / "bad.onnx")])


@pytest.mark.parametrize("target", ["arch", "symbol"])
def test_a_fake_quantized_network_reports_its_bitops(tmp_path, capsys, target):
    """score.py on a mixed-precision architecture (and on its exported symbol): BitOps in the
    totals, per block, per op (with each layer's bits) and in the cost record, equal to the
    analytic count and to the cost model's; a float network's report has none of them."""
    from oneshot_nas.cost.model import CostModel
    from oneshot_nas.export.formats import export_symbol
    arch = load_architecture("tiny4-q_B0-0-2-1_C6-9-8-1_W1-2-2-0_A2-0-2-3")
    ops = count_ops(arch)
    counts = Counts.of(ops)
    path = save_architecture(tmp_path / "q.json", arch)
    if target == "symbol":
        net = SubNet(arch)
        net.initialize(mx.init.MSRAPrelu())
        x = mx.nd.random.uniform(-1, 1, shape=(1, 3, 32, 32))
        (path, _), _ = export_symbol(net, tmp_path / "q", x, net(x).asnumpy())
    argv = [str(path), "--input-size", "32"]
    report = _json(argv + ["--per-op"], tmp_path)
    assert report["quantized"] and report["totals"] == counts.as_dict() and "bitops" in report["units"]
    assert report["costs"]["bitops"] == CostModel(arch.space).measure(arch)["bitops"] == counts.bitops
    assert [(o["kind"], o["wbits"], o["abits"], o["bitops"]) for o in report["ops"]] == \
        [(op.kind, op.wbits, op.abits, op.bitops) for op in ops]
    assert sum(b["bitops"] for b in report["blocks"]) == counts.bitops
    score.main(argv)
    text = capsys.readouterr().out
    assert f"| BitOps (MACs x weight bits x activation bits) | {counts.bitops:,} |" in text
    assert "MBitOps |" in text and "not counted" in text
    score.main(argv + ["--per-op", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.split("\n\n")[0])))
    assert [r["bits (w/a)"] for r in rows if r["kind"] in ("conv", "fc")] == \
        [f"{op.wbits}/{op.abits}" for op in ops if op.kind in ("conv", "fc")]
    # the same architecture as a float network
    plain = Architecture("tiny4", arch.blocks, arch.channels)
    report = _json([str(save_architecture(tmp_path / "f.json", plain))], tmp_path)
    assert not report["quantized"] and "bitops" not in report["costs"] and report["totals"]["bitops"] == 0
    score.main([str(tmp_path / "f.json")])
    assert "BitOps" not in capsys.readouterr().out
