"""The cost of a fake-quantized supernet step against the float one, measured in one run.

The same supernet space with and without bit genes (`tiny` and `tiny-q`, or --space NAME and its
`-q` twin), the same block and channel draws, random bit widths on the quantized side; a step is a
training step (path, forward, backward, SGD with momentum) on a random batch. Every path is run
once untimed (graphs, oneDNN kernels), then float and quantized steps alternate in rounds and the
figure is the ratio of the medians: what mixed-precision search costs per supernet step.
"""
import argparse
import statistics
import time

import mxnet as mx
import numpy as np
from mxnet import autograd


def _steps(space_name, paths, batch_size, seed):
    from ..nn.supernet import SuperNet
    from ..space import get_space
    space = get_space(space_name)
    mx.random.seed(seed)
    net = SuperNet(space)
    net.initialize(mx.init.MSRAPrelu())
    net.hybridize()
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(seed)
    x = mx.nd.array(rng.normal(size=(batch_size, 3, space.input_size, space.input_size)))
    y = mx.nd.array(rng.integers(0, space.num_classes, batch_size))

    def step(arch):
        with autograd.record():
            loss = loss_fn(net(x, arch), y)
        loss.backward()
        trainer.step(batch_size, ignore_stale_grad=True)
        loss.wait_to_read()
    return space, step


def measure(space="tiny", batch_size=32, paths=12, rounds=5, seed=0):
    """{'float_ms', 'quantized_ms', 'ratio'}: median milliseconds of a step over `rounds` rounds of
    `paths` paths each, both networks in this process."""
    from ..sample.samplers import UniformSampler
    from ..space import Architecture, get_space
    quantized = get_space(f"{space}-q") if not get_space(space).quantized else get_space(space)
    float_space = get_space(quantized.name[:-2])
    draws = [UniformSampler(quantized)(np.random.default_rng([seed, k])) for k in range(paths)]
    nets = {}
    for kind, name in (("float", float_space.name), ("quantized", quantized.name)):
        sp, step = _steps(name, paths, batch_size, seed)
        archs = draws if sp.quantized else [Architecture(sp, a.blocks, a.channels) for a in draws]
        for arch in archs:
            step(arch)                      # one-time costs
        nets[kind] = (step, archs)
    times = {kind: [] for kind in nets}
    for _ in range(rounds):
        for kind, (step, archs) in nets.items():
            start = time.perf_counter()
            for arch in archs:
                step(arch)
            times[kind].append((time.perf_counter() - start) / len(archs) * 1e3)
    out = {f"{kind}_ms": statistics.median(t) for kind, t in times.items()}
    out["ratio"] = out["quantized_ms"] / out["float_ms"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench quant", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="tiny", help="a float space with a -q twin (tiny, tiny4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--paths", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    r = measure(args.space, args.batch_size, args.paths, args.rounds)
    print(f"supernet step on {args.space} (batch {args.batch_size}, {args.paths} paths, median of {args.rounds} "
          f"rounds): float {r['float_ms']:.1f} ms, fake-quantized {r['quantized_ms']:.1f} ms, "
          f"ratio {r['ratio']:.2f}x")
