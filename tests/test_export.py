"""Every export reproduces the network, the ONNX Reshape converter follows MXNet, bad input is one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.export import __main__ as export
from oneshot_nas.export.onnx_reshape import mxnet_reshape_converter
from oneshot_nas.errors import ArchitectureError, UserError
from oneshot_nas.runs.modelfile import save_model
from oneshot_nas.export.quantize import load_symbol_block
from oneshot_nas.space import save_architecture
from oneshot_nas.nn.supernet import SuperNet
from tests.test_merge_bn import SPACES, inputs, randomised_subnet
from tests.test_space import random_arch

ort = pytest.importorskip("onnxruntime")


def saved_subnet(folder, space="tiny", seed=0):
    arch = random_arch(SPACES[space], np.random.default_rng(seed))
    net = randomised_subnet(arch, seed)
    return net, save_model(net, folder / "net.params", {"note": "test"})


@pytest.mark.parametrize("space", ["tiny", "tiny-plain", "tiny-sesearch"])
@pytest.mark.parametrize("merge_bn", [False, True])
def test_every_float_export_reproduces_the_network(tmp_path, space, merge_bn):
    net, path = saved_subnet(tmp_path, space)
    summary = export.main([str(path), "--to", "symbol,onnx,pytorch"] + (["--merge-bn"] if merge_bn else []))
    assert summary["ok"] and summary["merged_bn"] == merge_bn
    assert set(summary["checks"]) == {"symbol", "onnx", "pytorch"} | ({"merge_bn"} if merge_bn else set())
    name = "net-mergedbn" if merge_bn else "net"
    recorded = json.loads((tmp_path / f"{name}-export.json").read_text())
    assert recorded["arch"] == str(net.arch) and recorded["ok"]
    assert "| onnx equals the original | yes" in (tmp_path / f"{name}-export.md").read_text()

    # independently of the exporter's own checks: fresh inputs, other batch sizes
    for n in (1, 3):
        x = inputs(net.arch.space, n, seed=50 + n)
        expected = net(x).asnumpy()
        block = load_symbol_block(tmp_path / f"{name}-symbol.json", tmp_path / f"{name}-0000.params")
        assert np.abs(block(x).asnumpy() - expected).max() < 1e-4
        session = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {"data": x.asnumpy()})[0]
        assert np.abs(got - expected).max() < 1e-4
    symbol = json.loads((tmp_path / f"{name}-symbol.json").read_text())
    assert ("BatchNorm" in {node["op"] for node in symbol["nodes"]}) != merge_bn

    from oneshot_nas.export import torch_model
    import torch
    model = torch_model.load(tmp_path / f"{name}.pt", net.arch, fold_bn=merge_bn)
    x = inputs(net.arch.space, 2, seed=60)
    with torch.no_grad():
        assert np.abs(model(torch.from_numpy(x.asnumpy())).numpy() - net(x).asnumpy()).max() < 1e-4


def test_pytorch_exports_load_where_mxnet_cannot_be_imported(tmp_path):
    """The TorchScript file needs plain torch only; the state dict needs torch and this package,
    but neither MXNet nor gluoncv. Both run in a process where importing mxnet fails."""
    net, path = saved_subnet(tmp_path)
    summary = export.main([str(path), "--to", "pytorch"])
    assert summary["ok"] and summary["checks"]["pytorch"]["torchscript_max_abs_error"] < 1e-4
    assert str(tmp_path / "net-torchscript.pt") in summary["files"]
    x = inputs(net.arch.space, 3, seed=70)
    np.save(tmp_path / "x.npy", x.asnumpy())
    code = ("import sys; sys.modules['mxnet'] = None; sys.modules['gluoncv'] = None\n"
            "import numpy as np, torch\n"
            f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
            f"scripted = torch.jit.load({str(tmp_path / 'net-torchscript.pt')!r})\n"
            "from oneshot_nas.export import torch_model\n"
            "from oneshot_nas.space import load_architecture\n"
            f"model = torch_model.load({str(tmp_path / 'net.pt')!r}, load_architecture({str(path.with_suffix('.json'))!r}))\n"
            "with torch.no_grad():\n"
            f"    np.save({str(tmp_path / 'y.npy')!r}, np.stack([scripted(x).numpy(), model(x).numpy()]))\n"
            "assert 'mxnet' not in {k for k, v in sys.modules.items() if v is not None}\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0, result.stderr
    scripted, model = np.load(tmp_path / "y.npy")
    expected = net(x).asnumpy()
    assert np.abs(scripted - expected).max() < 1e-4 and np.abs(model - expected).max() < 1e-4


def test_onnx_graph_keeps_weights_out_of_its_inputs(tmp_path):
    import onnx
    _, path = saved_subnet(tmp_path)
    export.main([str(path), "--to", "onnx", "--out-dir", str(tmp_path / "out")])
    model = onnx.load(str(tmp_path / "out" / "net.onnx"))
    assert [i.name for i in model.graph.input] == ["data"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == SPACES["tiny"].num_classes
    assert not (tmp_path / "out" / "net-symbol.json").exists()   # the symbol was only a step
    summary = json.loads((tmp_path / "out" / "net-export.json").read_text())
    assert summary["checks"]["symbol"]["ok"] and all("symbol" not in f for f in summary["files"])


@pytest.mark.parametrize("codes, shape", [
    ((0, -4, 2, -1, -2), (3, 8, 5, 4)),       # channel shuffle, split the channels
    ((0, -3, -2), (3, 4, 2, 5, 4)),           # and merge them back
    ((0, -4, -1, 4, -2), (2, 8, 3)),
    ((-3, -1), (2, 3, 4)),
    ((0, -2), (2, 3, 4)),
    ((-4, 1, -1, 0, 0), (6, 2, 3)),
    ((0, 0, -1), (2, 3, 4, 5)),               # no special code: the stock converter
])
def test_reshape_converter_follows_mxnet(tmp_path, codes, shape):
    data = mx.sym.var("data")
    sym = mx.sym.reshape(data * 2, shape=codes)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = mx.nd.reshape(mx.nd.array(x) * 2, shape=codes).asnumpy()
    with mxnet_reshape_converter():
        mx.onnx.export_model(sym, {}, in_shapes=[shape], in_types=[np.float32],
                             onnx_file_path=str(tmp_path / "r.onnx"))
    got = ort.InferenceSession(str(tmp_path / "r.onnx"),
                               providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_converter_is_removed_afterwards():
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    before = dict(MXNetGraph.registry_.get(13, {}))
    with mxnet_reshape_converter():
        assert MXNetGraph.registry_[13]["Reshape"] is not before.get("Reshape")
    assert MXNetGraph.registry_.get(13, {}) == before


def test_a_path_of_a_supernet_is_extracted_and_exported(tmp_path):
    mx.random.seed(0)
    space = SPACES["tiny"]
    supernet = SuperNet(space)
    supernet.initialize(mx.init.MSRAPrelu())
    path = save_model(supernet, tmp_path / "super.params")
    arch = random_arch(space, np.random.default_rng(5))
    save_architecture(tmp_path / "arch.json", arch)
    with pytest.raises(UserError, match="is a supernet; export one of its paths"):
        export.main([str(path)])
    summary = export.main([str(path), "--arch", str(tmp_path / "arch.json"), "--to", "symbol",
                           "--bn-calib-images", "64"])
    assert summary["ok"] and summary["arch"] == str(arch)
    for other in (random_arch(SPACES["tiny-plain"], np.random.default_rng(5)),   # same topology
                  random_arch("oneshot", np.random.default_rng(5))):
        save_architecture(tmp_path / "other.json", other)
        with pytest.raises(ArchitectureError, match=f"space '{other.space.name}', which does not match space 'tiny'"):
            export.main([str(path), "--arch", str(tmp_path / "other.json")])


def test_bad_input_is_one_clear_message(tmp_path, monkeypatch):
    net, path = saved_subnet(tmp_path)
    with pytest.raises(UserError, match="unknown export target.*tflite.*symbol,onnx,pytorch,int8"):
        export.main([str(path), "--to", "onnx,tflite"])
    with pytest.raises(UserError, match="does not exist"):
        export.main([str(tmp_path / "missing.params")])
    # parameters of another architecture (the .json says which network the file should hold)
    other, _ = saved_subnet(tmp_path / "other", seed=1)
    (tmp_path / "net.json").write_text((tmp_path / "other" / "net.json").read_text())
    with pytest.raises(UserError, match="does not fit this SubNet"):
        export.main([str(path)])
    with pytest.raises(UserError, match="differs from the one in net.json"):
        export.main([str(path), "--arch", str(net.arch)])
    # a target whose package is missing names the pip package before any work
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match="pip install 'onnxruntime'"):
        export.main([str(path), "--to", "symbol,onnx"])


def test_the_command_line_prints_one_line_not_a_traceback(tmp_path):
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "oneshot_nas.export", str(tmp_path / "nope.params")],
                            capture_output=True, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: model file {tmp_path / 'nope.params'} does not exist"]


def test_checks_run_on_validation_images_or_on_noise_when_the_data_does_not_fit(tmp_path):
    _, path = saved_subnet(tmp_path)
    assert export.main([str(path)])["check_inputs"] == "4 validation images of digits"
    five = SPACES["tiny-plain"].derive("tiny-five", num_classes=5)    # the digits have 10 classes
    net = randomised_subnet(random_arch(five, np.random.default_rng(8)), 8)
    path = save_model(net, tmp_path / "five" / "net.params")
    summary = export.main([str(path), "--to", "symbol,onnx"])
    assert summary["ok"] and summary["check_inputs"] == "4 Gaussian-noise inputs"
    with pytest.raises(UserError, match="the data has 10 classes but the model has 5"):
        export.main([str(path), "--to", "int8"])           # int8 needs data that fits
