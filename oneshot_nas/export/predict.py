"""Top-5 labels for image files with an exported model.

    python -m oneshot_nas.predict MODEL IMAGE... [--labels FILE] [--input-size N] [--crop-ratio R]

MODEL is an exported symbol (EXPORT-symbol.json or EXPORT-int8-symbol.json, parameters beside it),
an ONNX file (EXPORT.onnx, run with onnxruntime) or a Gluon model (NAME.params with NAME.json).
Images get the validation transform of data/slices.py: resize the short side to size / crop-ratio, centre
crop, normalise with the ImageNet mean and std. The input size comes from the model's description
(NAME.json, or EXPORT-export.json written by the exporter) unless --input-size is given.
"""
import json
import sys
from pathlib import Path

import mxnet as mx
import numpy as np

from .. import cli
from ..cli import ArgumentParser
from ..cli.flags import finite
from ..data.slices import normalise, validation_crop
from ..errors import UserError


# ----- models -----------------------------------------------------------------------------------
def _export_summary(model):
    """EXPORT-export.json for EXPORT-symbol.json, EXPORT-int8-symbol.json or EXPORT.onnx, if any."""
    name = model.name
    for suffix in ("-int8-symbol.json", "-symbol.json", ".onnx"):
        if name.endswith(suffix):
            path = model.with_name(name[:-len(suffix)] + "-export.json")
            if path.is_file():
                try:
                    return json.loads(path.read_text())
                except ValueError:
                    return None
    return None


def load_predictor(model, input_size=None):
    """(function NCHW float32 numpy -> logits numpy, input size) for a model file."""
    model = Path(model)
    if not model.is_file():
        raise UserError(f"model file {model} does not exist")
    if model.suffix == ".params" and not model.name.endswith("-0000.params"):
        from ..runs.modelfile import load_model
        net, meta = load_model(model, kind="subnet")
        net.hybridize()
        size = input_size or net.arch.space.input_size
        return (lambda x: net(mx.nd.array(x)).asnumpy()), size
    summary = _export_summary(model)
    size = input_size or (summary or {}).get("input_shape", [None] * 4)[-1]
    if size is None:
        raise UserError(f"cannot tell the input size of {model} (no export summary beside it); "
                        "give the input size", settings="input_size")
    if model.suffix == ".onnx":
        from ..compat import require
        ort = require("onnxruntime", "onnxruntime")
        try:
            session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise UserError(f"{model} is not a loadable ONNX model ({err})") from None
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), size
    if model.name.endswith("-symbol.json"):
        from .quantize import load_symbol_block
        params = model.with_name(model.name[:-len("-symbol.json")] + "-0000.params")
        if not params.is_file():
            raise UserError(f"{model} needs its parameters {params.name} beside it")
        try:
            block = load_symbol_block(model, params)
        except (mx.base.MXNetError, AssertionError, ValueError) as err:
            raise UserError(f"{model} with {params.name} cannot be loaded ({str(err).splitlines()[0]})") from None
        block.hybridize(static_alloc=True)
        return (lambda x: block(mx.nd.array(x)).asnumpy()), size
    raise UserError(f"{model}: pass an exported EXPORT-symbol.json, an EXPORT.onnx, or a NAME.params "
                    "with NAME.json beside it")


# ----- images -----------------------------------------------------------------------------------
def load_image(path, input_size, crop_ratio=0.875):
    """One image file as a normalised (3, S, S) float32 array (the validation transform of
    data/slices.py)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        img = mx.image.imdecode(path.read_bytes(), flag=1)
    except mx.base.MXNetError:
        raise UserError(f"image {path} cannot be decoded (not a JPEG/PNG/BMP image, or damaged)") from None
    chw = validation_crop(img, input_size, int(round(input_size / crop_ratio)))
    return normalise(mx.nd.array(chw[None], dtype="uint8"))[0].asnumpy()


def read_labels(path):
    """Class names, one per line (line i names class i)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels file {path} does not exist")
    labels = [line.strip() for line in path.read_text().splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise UserError(f"labels file {path} is empty; write one class name per line")
    return labels


def softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict(model, images, labels=None, input_size=None, crop_ratio=0.875, top=5, batch_size=32):
    """[(image, [(label, probability), ...top]), ...] for image files with `model`."""
    run, size = load_predictor(model, input_size)
    arrays = [load_image(p, size, crop_ratio) for p in images]   # decode all first: fail early
    results = []
    for start in range(0, len(arrays), batch_size):
        probs = softmax(run(np.stack(arrays[start:start + batch_size]).astype(np.float32)))
        if labels is not None and len(labels) != probs.shape[1]:
            raise UserError(f"the labels file has {len(labels)} labels but the model has "
                            f"{probs.shape[1]} classes")
        for path, p in zip(images[start:start + batch_size], probs):
            best = np.argsort(-p)[:top]
            results.append((str(path), [(labels[i] if labels else str(i), float(p[i])) for i in best]))
    return results


def main(argv=None):
    parser = ArgumentParser(prog="python -m oneshot_nas.predict", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--labels", help="class names, one per line")
    parser.add_argument("--input-size", type=int, help="image size the model takes (default: from its "
                                                        "description or export summary)")
    parser.add_argument("--crop-ratio", type=finite, default=0.875,
                        help="centre crop of the resized image (0.875 ImageNet, 1.0 the digits)")
    parser.add_argument("--top", type=int, default=5, help="classes shown per image")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    args = parser.parse_args(argv)
    if not 0 < args.crop_ratio <= 1 or args.top < 1 or (args.input_size is not None and args.input_size < 1):
        raise UserError("--crop-ratio must be in (0, 1], --top and --input-size positive")
    labels = read_labels(args.labels) if args.labels else None
    for path, best in predict(args.model, args.images, labels, args.input_size, args.crop_ratio, args.top):
        if args.json:
            print(json.dumps({"image": path, "top": [{"label": l, "probability": p} for l, p in best]}))
        else:
            print(path)
            for label, p in best:
                print(f"  {p:7.2%}  {label}")
    sys.stdout.flush()


if __name__ == "__main__":
    cli.run(main)
