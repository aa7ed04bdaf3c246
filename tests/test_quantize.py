"""int8 quantization (oneDNN, calibrated on training batches) keeps a trained network's predictions."""
import json

import mxnet as mx
import pytest

from oneshot_nas.data import sources as data
from oneshot_nas.data.slices import val_slice
from oneshot_nas.export import quantize
from oneshot_nas.bench.int8 import train_digits
from oneshot_nas.export.formats import export
from oneshot_nas.space import Architecture, get_space


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SubNet trained 3 epochs on the digits (~85% top-1 in ~8 s), exported to int8."""
    arch = Architecture(get_space("tiny"), [0, 1, 2, 3] * 5, [4] * 20)
    dataset = data.resolve_dataset(num_classes=10)
    net, accuracy = train_digits(arch, epochs=3, dataset=dataset)
    out = tmp_path_factory.mktemp("int8")
    summary = export(net, name="digits", out_dir=out, targets=["symbol", "int8"], dataset=dataset,
                     calib_batches=2, latency_repeats=2)
    return net, accuracy, dataset, out, summary


def test_int8_keeps_the_predictions(trained):
    net, accuracy, dataset, out, summary = trained
    q = summary["checks"]["int8"]
    assert accuracy > 0.6                                  # chance is 0.1: the network learned
    assert q["fp32"]["top1"] == pytest.approx(accuracy)   # the exported fp32 symbol = the SubNet
    assert q["fp32"]["val_images"] == q["int8"]["val_images"] == len(dataset.val)
    assert abs(q["top1_delta"]) < 0.1, (q["fp32"]["top1"], q["int8"]["top1"])
    assert q["calibration_images"] == 64
    fp32 = quantize.load_symbol_block(out / "digits-symbol.json", out / "digits-0000.params")
    int8 = quantize.load_symbol_block(out / "digits-int8-symbol.json", out / "digits-int8-0000.params")
    x = val_slice(dataset, 100, 32).data()
    agree = (fp32(x).asnumpy().argmax(1) == int8(x).asnumpy().argmax(1)).mean()
    assert agree > 0.8
    for kind in ("fp32", "int8"):
        for b in (1, 32):
            assert q[kind][f"latency_ms_batch{b}"] > 0


def test_the_int8_model_is_quantized(trained):
    out = trained[3]
    nodes = json.loads((out / "digits-int8-symbol.json").read_text())["nodes"]
    convs = [n for n in nodes if n["op"] == "_sg_mkldnn_conv"]
    assert convs and all(n["attrs"].get("quantized", "").lower() == "true" for n in convs)
    assert not any(n["op"] == "Convolution" for n in nodes)         # no fp32 conv left
    fcs = [n for n in nodes if n["op"] == "_sg_mkldnn_fully_connected"]
    assert len(fcs) == 1 and fcs[0]["attrs"].get("quantized", "").lower() == "true"
    # every quantized layer carries its calibrated output range (calibration ran)
    assert all("min_calib_range" in n["attrs"] for n in convs)


def test_calibration_mode_is_checked():
    with pytest.raises(ValueError, match="calib_mode"):
        quantize.quantize_symbol(None, {}, {}, mx.nd.zeros((1, 3, 4, 4)), calib_mode="minmax")


def test_predict_reads_the_int8_model(trained, tmp_path):
    from oneshot_nas.export import predict
    from tests.test_predict import write_images
    dataset, out = trained[2], trained[3]
    images = write_images(dataset, tmp_path, 40)
    truth = [path.stem.split("digit")[1] for path in images]
    top = {kind: [best[0][0] for _, best in predict.predict(out / f"digits{kind}-symbol.json", images,
                                                             crop_ratio=1.0)]
           for kind in ("", "-int8")}
    assert sum(a == b for a, b in zip(top["-int8"], truth)) >= 0.6 * len(images)   # reads digits
    assert sum(a == b for a, b in zip(top["-int8"], top[""])) >= 0.8 * len(images)  # as fp32 does
