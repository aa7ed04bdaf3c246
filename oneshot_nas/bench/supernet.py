"""Supernet training steps against the networks they run: speed, width scaling, PyTorch, memory.

Every configuration runs in a fresh process (so peak memory is its own), in interleaved rounds;
the figures are medians over rounds. A step is a training step: draw the path, forward, backward,
update (SGD with Nesterov momentum, 1000 classes). Each process first runs every path it will time
(one-time costs: graph building, oneDNN kernels, new widths), then times its steps. Targets:
- a supernet step on the OneShot-S+ path >= 0.95 of the standalone hybridized SubNet of that path,
  at 64 px (batch 32) and 224 px (batch 16);
- random widths follow their MACs: (random-width step / widest step) within 10% of
  (random-width MACs / widest MACs);
- >= 1.0 of a PyTorch eager single-path supernet built from the same recipes, in the block-only
  setting (`oneshot`, no SE, random blocks, every width at scale 1.0) and in ours (oneshot+, random
  blocks and widths);
- peak memory of supernet training <= 1.2x that of the standalone widest path, flat after warm-up.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# name: (framework, space, what each step trains)
CONFIGS = {
    "supernet-s+": ("mxnet", "oneshot+", "oneshot-s+"),
    "standalone-s+": ("mxnet-subnet", "oneshot+", "oneshot-s+"),
    "supernet-random": ("mxnet", "oneshot+", "random"),
    "supernet-widest": ("mxnet", "oneshot+", "widest-blocks"),
    "standalone-widest": ("mxnet-subnet", "oneshot+", "largest"),
    "standalone-random": ("mxnet-subnet", "oneshot+", "random"),          # the same 12 paths as
    "standalone-widest-blocks": ("mxnet-subnet", "oneshot+", "widest-blocks"),   # the supernet's
    "torch-random": ("torch", "oneshot+", "random"),
    "blocks-mxnet": ("mxnet", "oneshot", "blocks-at-1.0"),
    "blocks-torch": ("torch", "oneshot", "blocks-at-1.0"),
}
SIZES = {64: 32, 224: 16}           # input size -> batch size


def _paths(space, kind, count, seed=0):
    from ..space import Architecture, load_architecture
    from ..sample.samplers import UniformSampler
    rng = np.random.default_rng(seed)
    n = space.num_positions
    if kind == "oneshot-s+":
        arch = load_architecture(Path(__file__).resolve().parents[2] / "models" / "oneshot-s+.json")
        return [Architecture(space, arch.blocks, arch.channels)]
    if kind == "largest":
        return [Architecture.largest(space)]
    if kind == "random":
        return [UniformSampler(space)(rng) for _ in range(count)]
    widest = space.num_scales - 1 if kind == "widest-blocks" else space.channel_scales.index(1.0)
    return [Architecture(space, rng.integers(space.num_blocks, size=n).tolist(), [widest] * n)
            for _ in range(count)]


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(name, size, steps, seed=0):
    """One configuration in this process: {'images_per_sec', 'macs', 'rss_warm_mb', 'rss_end_mb'}."""
    framework, space_name, kind = CONFIGS[name]
    from ..cost.model import CostModel
    from ..space import get_space
    space = get_space(space_name).derive(space_name, input_size=size)
    batch = SIZES[size]
    paths = _paths(space, kind, count=12, seed=seed)
    macs = float(np.mean([CostModel(space).measure(a)["macs"] for a in paths]))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, space.num_classes, batch)
    step = _torch_step(space, x, y) if framework == "torch" else _mxnet_step(framework, space, x, y, paths)
    for arch in paths:                 # warm-up: every path once (twice for a single path)
        step(arch)
        if len(paths) == 1:
            step(arch)
    step(None)
    warm = _rss_mb()
    start = time.perf_counter()
    for i in range(steps):
        step(paths[i % len(paths)])
    step(None)
    seconds = time.perf_counter() - start
    return {"images_per_sec": batch * steps / seconds, "macs": macs, "rss_warm_mb": warm, "rss_end_mb": _rss_mb()}


def _mxnet_step(framework, space, x, y, paths):
    import mxnet as mx
    from mxnet import autograd
    from ..nn.subnet import SubNet
    from ..nn.supernet import SuperNet
    from ..train.loop import smoothed_cross_entropy
    x, y = mx.nd.array(x), mx.nd.array(y)
    nets = {}

    single = len(paths) == 1

    def network(arch):
        if framework == "mxnet":
            if "net" not in nets:
                nets["net"] = SuperNet(space)
                nets["net"].initialize(mx.init.MSRAPrelu())
                nets["net"].hybridize(static_alloc=True)
            return nets["net"], lambda data: nets["net"](data, arch)
        if str(arch) not in nets:
            net = SubNet(arch)
            net.initialize(mx.init.MSRAPrelu())
            # one path: static memory, its best case; several: none (12 static 224-px graphs exhaust
            # 24 GB), as the supernet's (candidate, width) blocks
            net.hybridize(**(dict(static_alloc=True, static_shape=True) if single else {}))
            nets[str(arch)] = net
        return nets[str(arch)], nets[str(arch)]

    trainers = {}

    def step(arch):
        if arch is None:
            mx.nd.waitall()
            return
        net, forward = network(arch)
        if id(net) not in trainers:
            trainers[id(net)] = mx.gluon.Trainer(net.collect_params(), "nag",
                                                 {"learning_rate": 0.01, "momentum": 0.9, "wd": 4e-5})
        with autograd.record():
            loss = smoothed_cross_entropy(forward(x), y)
        loss.backward()
        trainers[id(net)].step(x.shape[0], ignore_stale_grad=True)
    return step


def _torch_step(space, x, y):
    from .torch_supernet import TorchSuperNet, torch
    net = TorchSuperNet(space)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-5)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()

    def step(arch):
        if arch is None:
            return
        opt.zero_grad(set_to_none=True)    # unused candidates keep no gradient: SGD skips them
        torch.nn.functional.cross_entropy(net(x, arch), y).backward()
        opt.step()
    return step


def measure(rounds, sizes, steps, names=tuple(CONFIGS)):
    """{(name, size): [result of each round]}, each configuration in a fresh process per round."""
    results = {}
    for r in range(rounds):
        for size in sizes:
            for name in names:
                out = subprocess.run([sys.executable, "-m", "oneshot_nas.bench", "supernet", "--one", name,
                                      "--size", str(size), "--steps", str(steps[size]), "--seed", str(r)],
                                     capture_output=True, text=True)
                if out.returncode:
                    why = (f"killed by signal {-out.returncode}{' (out of memory?)' * (out.returncode == -9)}"
                           if out.returncode < 0 else (out.stderr.strip().splitlines() or ["no message"])[-1])
                    print(f"  round {r + 1}/{rounds} {size}px {name}: failed, {why}; left out", file=sys.stderr,
                          flush=True)
                    continue
                results.setdefault((name, size), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  round {r + 1}/{rounds} {size}px {name}: "
                      f"{results[(name, size)][-1]['images_per_sec']:.1f} img/s", file=sys.stderr, flush=True)
    return results


def report(results, sizes):
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in results.items()}
    ips = {k: v["images_per_sec"] for k, v in med.items()}
    print(f"{'configuration':24s} " + " ".join(f"{s:>6d}px" for s in sizes) + "   (images/s, medians)")
    for name in CONFIGS:
        if all((name, s) in ips for s in sizes):
            print(f"{name:24s} " + " ".join(f"{ips[(name, s)]:8.1f}" for s in sizes))
    print()
    rows = [("supernet / standalone, OneShot-S+ path", "supernet-s+", "standalone-s+", 0.95),
            ("oneshot+ random paths / PyTorch supernet", "supernet-random", "torch-random", 1.0),
            ("block-only / PyTorch supernet", "blocks-mxnet", "blocks-torch", 1.0)]
    print(f"{'target':44s} " + " ".join(f"{s:>6d}px" for s in sizes) + "  goal")
    have = lambda *names: all((n, s) in ips for n in names for s in sizes)  # noqa: E731
    for label, a, b, goal in rows:
        if not have(a, b):
            continue
        print(f"{label:44s} " + " ".join(f"{ips[(a, s)] / ips[(b, s)]:8.3f}" for s in sizes) + f"  >= {goal}")
    if have("standalone-random", "torch-random"):      # no weight sharing at all: MXNet's own kernels
        print(f"{'  floor: standalone SubNets / PyTorch':44s} "
              + " ".join(f"{ips[('standalone-random', s)] / ips[('torch-random', s)]:8.3f}" for s in sizes)
              + "  (the same random paths, each its own hybridized MXNet net)")
    for s in sizes if have("supernet-widest", "supernet-random") else ():
        time_ratio = ips[("supernet-widest", s)] / ips[("supernet-random", s)]
        macs_ratio = med[("supernet-random", s)]["macs"] / med[("supernet-widest", s)]["macs"]
        print(f"random widths at {s}px: step-time ratio random/widest {time_ratio:.3f}, MACs ratio "
              f"{macs_ratio:.3f}: off by {100 * (time_ratio / macs_ratio - 1):+.1f}% (goal within 10%)")
        if ("standalone-random", s) in ips and ("standalone-widest-blocks", s) in ips:
            alone = ips[("standalone-widest-blocks", s)] / ips[("standalone-random", s)]
            print(f"  the same paths as standalone hybridized SubNets: step-time ratio {alone:.3f} "
                  f"(what the hardware gives for those widths); supernet / standalone, random paths "
                  f"{ips[('supernet-random', s)] / ips[('standalone-random', s)]:.3f}, random blocks at the widest "
                  f"{ips[('supernet-widest', s)] / ips[('standalone-widest-blocks', s)]:.3f}")
    for s in sizes if have("supernet-random", "standalone-widest", "torch-random") else ():
        sup, alone = med[("supernet-random", s)], med[("standalone-widest", s)]
        print(f"peak memory at {s}px: supernet (random paths) {sup['rss_end_mb']:.0f} MB "
              f"(after warm-up {sup['rss_warm_mb']:.0f} MB), standalone widest {alone['rss_end_mb']:.0f} MB: "
              f"ratio {sup['rss_end_mb'] / alone['rss_end_mb']:.2f} (goal <= 1.2), growth after warm-up "
              f"{sup['rss_end_mb'] - sup['rss_warm_mb']:.0f} MB; PyTorch supernet "
              f"{med[('torch-random', s)]['rss_end_mb']:.0f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench supernet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--quick", action="store_true", help="64 px only, 2 rounds, fewer steps")
    parser.add_argument("--configs", help="only these configurations (comma-separated, of: "
                        f"{', '.join(CONFIGS)}); targets whose baseline is left out are not printed")
    parser.add_argument("--one", choices=tuple(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.steps, args.seed)))
        return
    sizes = (64,) if args.quick else (64, 224)
    steps = {64: 12 if args.quick else 24, 224: 8}
    rounds = 2 if args.quick else args.rounds
    print(f"{rounds} interleaved rounds, each configuration a fresh process; steps timed per process: "
          + ", ".join(f"{steps[s]} at {s}px (batch {SIZES[s]})" for s in sizes), flush=True)
    names = tuple(CONFIGS)
    if args.configs:
        names = tuple(n.strip() for n in args.configs.split(","))
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    report(measure(rounds, sizes, steps, names), sizes)


if __name__ == "__main__":
    main()
