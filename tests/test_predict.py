"""predict: top-5 labels for image files with any exported model; bad input is one clear line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.data import sources as data
from oneshot_nas.data.slices import val_slice
from oneshot_nas.export import formats as export, predict
from oneshot_nas.errors import UserError
from oneshot_nas.runs.modelfile import save_model
from oneshot_nas.nn.supernet import SuperNet
from tests.test_merge_bn import SPACES, randomised_subnet
from tests.test_space import random_arch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A randomised tiny SubNet saved and exported (symbol, ONNX), and digit images as PNG files."""
    folder = tmp_path_factory.mktemp("predict")
    net = randomised_subnet(random_arch(SPACES["tiny"], np.random.default_rng(20)), 20)
    path = save_model(net, folder / "net.params")
    export.export(net, name="net", out_dir=folder, targets=["symbol", "onnx"])
    dataset = data.resolve_dataset(num_classes=10)
    images = write_images(dataset, folder / "images", 5)
    return net, path, folder, dataset, images


def write_images(dataset, folder, count):
    """The first `count` validation digits as PNG files (the very bytes the RecordIO holds)."""
    folder.mkdir(exist_ok=True)
    reader = mx.recordio.MXIndexedRecordIO(str(dataset.val.idx), str(dataset.val.rec), "r")
    paths = []
    for key in dataset.val.keys()[:count]:
        header, payload = mx.recordio.unpack(reader.read_idx(key))
        paths.append(folder / f"{len(paths)}-digit{int(header.label)}.png")
        paths[-1].write_bytes(payload)
    reader.close()
    return paths


@pytest.mark.parametrize("model", ["net-symbol.json", "net.onnx", "net.params"])
def test_probabilities_are_the_networks_on_the_validation_transform(exported, model):
    net, _, folder, dataset, images = exported
    x = val_slice(dataset, len(images), 32).data()   # digits: crop ratio 1.0
    expected = predict.softmax(net(x).asnumpy())
    results = predict.predict(folder / model, images, crop_ratio=1.0)
    assert [r[0] for r in results] == [str(p) for p in images]
    for (_, best), probs in zip(results, expected):
        assert len(best) == 5
        assert [int(label) for label, _ in best] == list(np.argsort(-probs)[:5])
        assert np.allclose([p for _, p in best], np.sort(probs)[::-1][:5], atol=1e-5)


def test_labels_and_command_line_output(exported, tmp_path):
    _, _, folder, _, images = exported
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    result = _cli([folder / "net-symbol.json", images[0], "--labels", labels, "--json", "--top", "3"])
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["image"] == str(images[0]) and len(record["top"]) == 3
    assert all(t["label"].startswith("digit ") for t in record["top"])
    labels.write_text("a\nb\n")
    with pytest.raises(UserError, match="2 labels but the model has 10 classes"):
        predict.predict(folder / "net.onnx", images[:1], predict.read_labels(labels))


def test_bad_input_is_one_clear_message(exported, tmp_path):
    _, path, folder, _, images = exported
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not really a JPEG")
    result = _cli([folder / "net-symbol.json", images[0], broken])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: image {broken} cannot be decoded (not a JPEG/PNG/BMP image, or damaged)"]
    assert result.stdout == ""            # nothing is predicted before every image decodes
    with pytest.raises(UserError, match="image .*missing.png does not exist"):
        predict.predict(folder / "net.onnx", [tmp_path / "missing.png"])
    with pytest.raises(UserError, match="model file .* does not exist"):
        predict.predict(tmp_path / "none-symbol.json", images)
    lone = tmp_path / "lone-symbol.json"        # no export summary beside it: size unknown
    lone.write_text((folder / "net-symbol.json").read_text())
    (tmp_path / "lone-0000.params").write_bytes((folder / "net-0000.params").read_bytes())
    with pytest.raises(UserError, match="give the input size"):
        predict.predict(lone, images)
    assert len(predict.predict(lone, images[:1], input_size=32)[0][1]) == 5
    (tmp_path / "lone-0000.params").unlink()
    with pytest.raises(UserError, match="needs its parameters lone-0000.params"):
        predict.predict(lone, images, input_size=32)
    mx.random.seed(0)
    supernet = SuperNet(SPACES["tiny"])
    supernet.initialize()
    with pytest.raises(UserError, match="holds a supernet"):
        predict.predict(save_model(supernet, tmp_path / "super.params"), images)


def _cli(args):
    return subprocess.run([sys.executable, "-m", "oneshot_nas.predict", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
