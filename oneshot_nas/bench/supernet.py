"""Training-step throughput of the supernet on random paths vs the standalone sampled subnets.

For each space, the same random paths are trained (forward + backward + SGD step) two ways: in the
weight-sharing supernet, and as standalone hybridized subnets (static graphs, the fastest way MXNet
trains a fixed network). Both are warmed up on every path first, so one-time costs (graph building,
oneDNN primitive creation) are not timed. Target: supernet/standalone >= 0.8.
"""
import argparse
import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..sample.samplers import UniformSampler
from ..space import get_space
from ..nn.subnet import SubNet
from ..nn.supernet import SuperNet


def _step(net, trainer, loss_fn, x, y, arch=None):
    with autograd.record():
        out = net(x, arch) if arch is not None else net(x)
        loss = loss_fn(out, y)
    loss.backward()
    trainer.step(x.shape[0], ignore_stale_grad=True)


def measure(space_name, batch_size, paths, repeats, seed=0):
    """(supernet images/s, standalone images/s) over `paths` random paths."""
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    archs = [UniformSampler(space)(rng) for _ in range(paths)]
    x = mx.nd.array(rng.normal(size=(batch_size, 3, space.input_size, space.input_size)))
    y = mx.nd.array(rng.integers(0, space.num_classes, batch_size))
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    opt = {"learning_rate": 0.01, "momentum": 0.9, "wd": 4e-5}

    supernet = SuperNet(space)
    supernet.initialize(mx.init.MSRAPrelu())
    supernet.hybridize(static_alloc=True)
    trainer = mx.gluon.Trainer(supernet.collect_params(), "nag", opt)
    for arch in archs:                                   # warm-up: every path once
        _step(supernet, trainer, loss_fn, x, y, arch)
    mx.nd.waitall()
    start = time.perf_counter()
    for _ in range(repeats):
        for arch in archs:
            _step(supernet, trainer, loss_fn, x, y, arch)
    mx.nd.waitall()
    super_time = time.perf_counter() - start

    alone_time = 0.0
    for arch in archs:
        net = SubNet(arch)
        net.initialize(mx.init.MSRAPrelu())
        net.hybridize(static_alloc=True, static_shape=True)
        sub_trainer = mx.gluon.Trainer(net.collect_params(), "nag", opt)
        _step(net, sub_trainer, loss_fn, x, y)
        _step(net, sub_trainer, loss_fn, x, y)
        mx.nd.waitall()
        start = time.perf_counter()
        for _ in range(repeats):
            _step(net, sub_trainer, loss_fn, x, y)
        mx.nd.waitall()
        alone_time += time.perf_counter() - start
    images = batch_size * paths * repeats
    return images / super_time, images / alone_time


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench supernet", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer paths and repeats")
    args = parser.parse_args(argv)
    cases = [("tiny", 128, 8 if args.quick else 20, 2 if args.quick else 3),
             ("oneshot+", 8, 3 if args.quick else 6, 1 if args.quick else 2)]
    print(f"{'space':10s} {'input':>7s} {'batch':>5s} {'paths':>5s} {'supernet img/s':>15s} "
          f"{'standalone img/s':>17s} {'ratio':>6s}")
    for name, batch, paths, repeats in cases:
        space = get_space(name)
        sup, alone = measure(name, batch, paths, repeats)
        print(f"{name:10s} {space.input_size:>4d}px {batch:>5d} {paths:>5d} {sup:>15.1f} {alone:>17.1f} "
              f"{sup / alone:>6.3f}", flush=True)
    print("target: ratio >= 0.8 (the weight-sharing machinery costs at most a quarter)")


if __name__ == "__main__":
    main()
