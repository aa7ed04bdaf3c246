"""Training throughput: the supernet training loop end to end, against the standalone sampled networks.

Cases (images/s of training steps, validation excluded):
- `tiny` on the embedded digits, batch 64: `train.fit` itself, real ImageRecordIter data with
  augmentation, one path drawn per step, records; the second epoch is timed (the first pays the
  one-time costs: oneDNN kernels for every candidate width, graph building);
- `oneshot+` on synthetic 224x224 ImageNet-shaped batches, batch 8: `train.train_epoch` (the loop's
  inner part) on an in-memory batch, on paths that were run once before timing.
Baseline, in the same process: `bench.supernet.measure`, i.e. the same number of random paths
trained as standalone hybridized SubNets (and the bare supernet step, for reference).
Target: loop / standalone >= 0.8.
The data pipeline alone: images/s decoded and augmented by ImageRecordIter, on the digits (32 px)
and on a RecordIO of synthetic 320x256 JPEGs cropped to 224 (what an ImageNet epoch asks of the CPU).
"""
import argparse
import tempfile
import time
from pathlib import Path

import mxnet as mx
import numpy as np

from ..data.iterators import train_iter
from ..data.slices import calibration_slice
from ..data.sources import Dataset, _pack, resolve_dataset
from ..runs.workers import Workers
from ..sample.training import PathSampler
from ..sample.schedule import channel_schedule
from ..space import get_space
from ..nn.supernet import SuperNet
from ..train.loop import fit, train_epoch
from ..train.settings import Settings, initialize, make_trainer, ordered_params
from ..train.tasks import SupernetTask
from .supernet import measure


class Repeat:
    """A DataIter-like source that serves the same in-memory batch forever."""

    def __init__(self, batch):
        self.batch, self.batch_size = batch, batch.data[0].shape[0]

    def next(self):
        return self.batch


def loop_on_digits(batch_size, threads, seed=0):
    """images/s of the second of two `fit` epochs of the tiny supernet on the digits."""
    dataset = resolve_dataset()
    space = get_space("tiny")
    net = SuperNet(space)
    initialize(net, [mx.cpu()], seed=seed)
    net.hybridize(static_alloc=True)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 2),
                        calibration_slice(dataset, 32, space.input_size), val_paths=0)
    settings = Settings(num_epochs=2, batch_size=batch_size, lr=0.1, seed=seed, threads=threads)
    history = fit(task, dataset, settings, [mx.cpu()], Workers("device"), progress=False)
    return history[-1]["images_per_sec"], history[-1]["updates"] // 2


def loop_on_synthetic(space_name, batch_size, paths, repeats, seed=0):
    """images/s of `train_epoch` on one synthetic batch, the same `paths` paths warmed up first."""
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    size = space.input_size
    batch = mx.io.DataBatch([mx.nd.array(rng.normal(size=(batch_size, 3, size, size)))],
                            [mx.nd.array(rng.integers(0, space.num_classes, batch_size))])
    net = SuperNet(space)
    initialize(net, [mx.cpu()], seed=seed)
    net.hybridize(static_alloc=True)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, 1), calibration=[batch.data[0]])
    task.start_epoch(0)
    sync = Workers("device")
    params = ordered_params(net)
    sync.register(params, [mx.cpu()])
    trainer = make_trainer(params, Settings(lr=0.01))
    source = Repeat(batch)

    def run():   # the same paths as bench.supernet.measure draws with this seed
        return train_epoch(task, trainer, source, paths, [mx.cpu()], sync, np.random.default_rng(seed),
                           lambda update: 0.01, 0)
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return batch_size * paths * repeats / (time.perf_counter() - start)


def synthetic_jpegs(folder, count=256, seed=0):
    """A RecordIO of smooth random 320x256 JPEGs (about as compressible as photographs)."""
    import cv2
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        small = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        image = cv2.resize(small, (320, 256), interpolation=cv2.INTER_CUBIC)
        items.append((i % 1000, image))
    records = _pack(Path(folder) / "synthetic", items,
                    lambda header, img: mx.recordio.pack_img(header, img, quality=90, img_fmt=".jpg"))
    return Dataset("synthetic-jpeg", records, records, 1000)


def decode_rate(dataset, batch_size, input_size, threads, passes=2):
    """images/s ImageRecordIter delivers (decode + augmentation), after one warm-up pass."""
    def one_pass():
        reader = train_iter(dataset, batch_size, input_size, threads=threads, seed=1)
        images = 0
        for batch in reader:
            batch.data[0].wait_to_read()
            images += batch.data[0].shape[0]
        return images
    one_pass()
    start = time.perf_counter()
    images = sum(one_pass() for _ in range(passes))
    return images / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench train", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer paths and repeats")
    parser.add_argument("-j", "--threads", type=int, default=2, help="decode threads")
    args = parser.parse_args(argv)
    print(f"{'case':40s} {'batch':>5s} {'paths':>5s} {'loop img/s':>11s} {'bare step':>10s} "
          f"{'standalone':>11s} {'loop/standalone':>15s}")
    cases = [("tiny, embedded digits (fit)", "tiny", 64, 12 if args.quick else 23, 2 if args.quick else 3),
             ("oneshot+, synthetic 224 px", "oneshot+", 8, 3 if args.quick else 6, 1 if args.quick else 2)]
    for label, name, batch, paths, repeats in cases:
        if name == "tiny":
            loop, paths = loop_on_digits(batch, args.threads)
        else:
            loop = loop_on_synthetic(name, batch, paths, repeats)
        bare, alone = measure(name, batch, paths, repeats)
        print(f"{label:40s} {batch:>5d} {paths:>5d} {loop:>11.1f} {bare:>10.1f} {alone:>11.1f} "
              f"{loop / alone:>15.3f}", flush=True)
    print("target: loop / standalone >= 0.8\n")
    print(f"{'data pipeline alone':40s} {'input':>7s} {'threads':>7s} {'images/s':>10s}")
    print(f"{'digits RecordIO (PNG, augmented)':40s} {'32px':>7s} {args.threads:>7d} "
          f"{decode_rate(resolve_dataset(), 64, 32, args.threads):>10.1f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        jpegs = synthetic_jpegs(folder, 128 if args.quick else 256)
        print(f"{'synthetic JPEG RecordIO (ImageNet aug)':40s} {'224px':>7s} {args.threads:>7d} "
              f"{decode_rate(jpegs, 32, 224, args.threads):>10.1f}", flush=True)
    print("the loop is data-bound when the decode rate is below its images/s: raise -j")


if __name__ == "__main__":
    main()
