"""Lookup-table counting rate (archs/s) against counting op by op and against the graph profiler.

Search checks millions of candidates against MACs / params / MicroNet budgets, so counting must be
a table lookup. For each space this times, on the same random architectures:
  table.count(arch)           one architecture at a time (every metric, as Counts)
  table.count_many(B, C)      a batch of architectures as (N, positions) id arrays
  Counts.of(count_ops(arch))  the analytic op-by-op count the table is built from (baseline)
  profile_arch(arch)          the graph profiler: build the SubNet symbol, infer shapes, walk it
and checks all four agree. Target: >= 100,000 architectures per second.
"""
import argparse
import time

import numpy as np

from ..cost.counting import Counts, LookupTable, count_ops
from ..cost.graph import profile_arch
from ..sample.samplers import UniformSampler
from ..space import get_space


def rate(fn, items, min_seconds):
    """Items per second of `fn` over `items`, looping until `min_seconds` have passed."""
    done, start = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def measure(space_name, archs=2000, batch=10_000, seconds=1.0, graph_archs=10, seed=0):
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    sampler = UniformSampler(space)
    sample = [sampler(rng) for _ in range(archs)]
    table = LookupTable.load(space)
    blocks = rng.integers(0, space.num_blocks, (batch, space.num_positions))
    channels = rng.integers(0, space.num_scales, (batch, space.num_positions))

    for arch in sample[:graph_archs]:               # all four agree before anything is timed
        expected = Counts.of(count_ops(arch))
        assert table.count(arch) == expected == profile_arch(arch).counts, str(arch)
    many = table.count_many([a.blocks for a in sample], [a.channels for a in sample])
    assert [Counts(*row) for row in many.tolist()] == [table.count(a) for a in sample]

    return {
        "count": rate(table.count, sample, seconds),
        "count_many": rate(lambda _: table.count_many(blocks, channels), [None], seconds) * batch,
        "count_ops": rate(lambda a: Counts.of(count_ops(a)), sample[:200], seconds),
        "graph": rate(lambda a: profile_arch(a).counts, sample[:graph_archs], seconds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oneshot_nas.bench lookup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=["oneshot", "oneshot+", "tiny"])
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per figure")
    parser.add_argument("--batch", type=int, default=10_000, help="archs per count_many call")
    args = parser.parse_args(argv)
    print(f"{'space':9s} {'count':>12s} {'count_many':>12s} {'count_ops':>10s} {'graph':>7s}   "
          f"{'count/ops':>9s} {'many/ops':>9s} {'count/graph':>11s} {'many/graph':>10s}")
    print(f"{'':9s} {'archs/s':>12s} {'archs/s':>12s} {'archs/s':>10s} {'archs/s':>7s}")
    for name in args.spaces:
        r = measure(name, batch=args.batch, seconds=args.seconds)
        print(f"{name:9s} {r['count']:12,.0f} {r['count_many']:12,.0f} {r['count_ops']:10,.0f} "
              f"{r['graph']:7.1f}   {r['count'] / r['count_ops']:8.0f}x {r['count_many'] / r['count_ops']:8.0f}x "
              f"{r['count'] / r['graph']:10.0f}x {r['count_many'] / r['graph']:9.0f}x", flush=True)
    print("target: >= 100,000 architectures per second (search counts candidates in batches with "
          "count_many; count is the one-at-a-time path)")


if __name__ == "__main__":
    main()
