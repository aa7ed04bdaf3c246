"""The supernet training loop on the embedded digits: images/s and how an epoch's time splits between
training and validation, and the data pipeline alone.

Cases: `train.fit` itself on the tiny supernet (real ImageRecordIter data with augmentation, one
path drawn per step, validation of every epoch, records), with the quickstart's validation settings
(3 paths and the reference path, 500 calibration images) and with train_supernet.py's defaults
(5 paths, 1,000 calibration images), each validating every epoch: the second of two epochs is
timed (the first pays one-time costs: oneDNN kernels, graphs of new widths); and train_supernet.py's
defaults as they are (`--val-every auto`) over epochs 1-11 of 12. Target: validation <= 25% of an
epoch.
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
from ..space import Architecture, get_space
from ..nn.supernet import SuperNet
from ..train.loop import fit
from ..train.settings import Settings, initialize
from ..train.tasks import SupernetTask


def loop_on_digits(batch_size, threads, val_paths, calib_images, reference=True, seed=0, epochs=2,
                   val_every=1):
    """(images/s, train seconds, validation seconds) of the second of two `fit` epochs of the
    tiny supernet on the digits; with more `epochs`, the totals of every epoch but the first."""
    dataset = resolve_dataset()
    space = get_space("tiny")
    net = SuperNet(space)
    initialize(net, [mx.cpu()], seed=seed)
    net.hybridize(static_alloc=True)
    task = SupernetTask(net, PathSampler(space), channel_schedule(space, epochs),
                        calibration_slice(dataset, calib_images, space.input_size), val_paths=val_paths,
                        reference=Architecture.largest(space) if reference else None)
    settings = Settings(num_epochs=epochs, batch_size=batch_size, lr=0.1, seed=seed, threads=threads,
                        val_every=val_every)
    timed = fit(task, dataset, settings, [mx.cpu()], Workers("device"), progress=False)[1:]
    images = sum(r["images_per_sec"] * r["seconds"] for r in timed)
    train_s, val_s = (sum(r[k] for r in timed) for k in ("seconds", "val_seconds"))
    return images / train_s, train_s, val_s


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
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer synthetic JPEGs")
    parser.add_argument("-j", "--threads", type=int, default=2, help="decode threads")
    args = parser.parse_args(argv)
    print(f"{'tiny supernet on the digits, batch 64':52s} {'img/s':>7s} {'train s':>8s} {'val s':>6s} "
          f"{'val share':>9s}")
    for label, paths, calib, epochs, every in (
            ("quickstart validation (3 + ref, 500 images)", 3, 500, 2, 1),
            ("default paths (5 + ref, 1000 images), every epoch", 5, 1000, 2, 1),
            ("the defaults: --val-every auto, epochs 1-11", 5, 1000, 12, "auto")):
        ips, train_s, val_s = loop_on_digits(64, args.threads, paths, calib, epochs=epochs, val_every=every)
        print(f"{label:52s} {ips:7.1f} {train_s:8.2f} {val_s:6.2f} {val_s / (train_s + val_s):9.1%}",
              flush=True)
    print("target: validation <= 25% of an epoch (auto: the share over epochs 1-11, the last one validated "
          "whatever it costs)\n")
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
