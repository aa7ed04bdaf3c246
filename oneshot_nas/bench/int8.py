"""int8 vs fp32: top-1 and CPU latency of a tiny SubNet briefly trained on the embedded digits.

Trains one tiny-space architecture from scratch on the digits (NAG, cosine learning rate, a few
epochs), exports it as an MXNet symbol, quantizes it with oneDNN (calibrated on training batches)
and reports fp32 vs int8 validation top-1 and batch-1 / batch-32 latency, both measured here.
"""
import argparse
import logging
import math
import tempfile
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..data.iterators import labelled_batches, val_iter
from ..data.slices import ImageSlice, calibration_slice
from ..data.sources import resolve_dataset
from ..export.formats import export
from ..nn.pathgraph import PathGraph
from ..nn.subnet import SubNet
from ..space import Architecture, load_architecture

# One fixed architecture, so figures compare across machines: mixed blocks, mid widths.
ARCH = "tiny_B0123-3210-01230123-3012_C4444-4444-44444444-4444"


def train_digits(arch, epochs=8, batch_size=64, lr=0.1, seed=0, dataset=None):
    """A SubNet of `arch` trained from scratch on the digits: NAG (momentum 0.9, wd 4e-5), cosine
    learning rate from `lr` to 0. Returns (net, validation top-1).

    The training images are decoded once (validation transform, no augmentation) and shuffled by a
    seeded generator, so a run depends on `seed` and not on decoder threads.
    """
    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    dataset = dataset or resolve_dataset(num_classes=arch.space.num_classes)
    size = arch.space.input_size
    train = ImageSlice.load(dataset, dataset.train, dataset.train.keys(), size)
    images, labels = train.data(), mx.nd.array(train.labels)
    net = SubNet(arch)
    net.initialize(mx.init.MSRAPrelu())
    net.hybridize(static_alloc=True, static_shape=True)
    per_epoch = len(labels) // batch_size
    schedule = mx.lr_scheduler.CosineScheduler(max_update=max(epochs * per_epoch, 1), base_lr=lr,
                                               final_lr=0)
    trainer = mx.gluon.Trainer(net.collect_params(), "nag", {
        "learning_rate": lr, "momentum": 0.9, "wd": 4e-5, "lr_scheduler": schedule})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(epochs):
        order = mx.nd.array(rng.permutation(len(labels)), dtype="int64")
        for step in range(per_epoch):
            pick = order[step * batch_size:(step + 1) * batch_size]
            x, y = mx.nd.take(images, pick), mx.nd.take(labels, pick)
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(batch_size)
    mx.nd.waitall()
    return net, evaluate(net, dataset, size)


def untrained(arch, images=256, seed=0):
    """A randomly initialised SubNet whose BN statistics are estimated on training images (so
    activations, and hence int8 ranges, are of realistic size)."""
    mx.random.seed(seed)
    dataset = resolve_dataset(num_classes=arch.space.num_classes)
    net = SubNet(arch)
    net.initialize(mx.init.MSRAPrelu())
    graph = PathGraph(net)
    graph.calibrate(calibration_slice(dataset, images, arch.space.input_size).batches(32))
    graph.store_statistics()
    return net


def evaluate(net, dataset, input_size, batch_size=64):
    correct = seen = 0
    for x, labels in labelled_batches(val_iter(dataset, batch_size, input_size)):
        correct += int((net(x.as_in_context(mx.cpu())).asnumpy().argmax(axis=1) == labels).sum())
        seen += len(labels)
    return correct / seen


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench int8", description=__doc__)
    parser.add_argument("--arch", default=ARCH)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--merge-bn", action="store_true")
    parser.add_argument("--untrained", action="store_true",
                        help="latency only: skip training (random weights, BN statistics estimated "
                             "on training images), e.g. for --arch models/oneshot+.json at 224 px")
    parser.add_argument("--val-images", type=int, help="evaluate on at most this many images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    arch = (load_architecture(args.arch) if args.arch.endswith(".json")
            else Architecture.from_str(args.arch))
    start = time.perf_counter()
    if args.untrained:
        net = untrained(arch)
        print(f"{arch}: untrained (top-1 below is meaningless; the latencies are the point)")
    else:
        net, accuracy = train_digits(arch, epochs=args.epochs)
        print(f"{arch}: trained {args.epochs} epochs in {time.perf_counter() - start:.1f} s, "
              f"val top-1 {100 * accuracy:.2f}%")
    with tempfile.TemporaryDirectory() as tmp:
        summary = export(net, name="bench", out_dir=Path(tmp), targets=["int8"],
                         merge_bn=args.merge_bn, calib_batches=args.calib_batches,
                         calib_mode=args.calib_mode, latency_repeats=args.repeats,
                         val_images=args.val_images)
    q = summary["checks"]["int8"]
    print(f"{'model':6s} {'top-1':>8s} {'batch 1 ms':>11s} {'batch 32 ms':>12s}")
    for kind in ("fp32", "int8"):
        r = q[kind]
        print(f"{kind:6s} {100 * r['top1']:>7.2f}% {r['latency_ms_batch1']:>11.2f} "
              f"{r['latency_ms_batch32']:>12.2f}")
    print(f"int8 - fp32 top-1: {100 * q['top1_delta']:+.2f} points on {q['int8']['val_images']} images; "
          f"speed-up x{q['speedup_batch1']:.2f} (batch 1), x{q['speedup_batch32']:.2f} (batch 32); "
          f"calibration: {q['calibration_images']} training images, {q['calib_mode']}")
    if not math.isfinite(q["top1_delta"]):
        raise SystemExit("no validation images")


if __name__ == "__main__":
    main()
