"""Measuring latency on a device: each part of a space alone (a latency table), whole networks end to
end, and the table's prediction error.

Every part runs as a hybridized block (static graph) on random input, after warm-up, and its time is
the median of `repeats` timed forward passes (each waited for). Positions with the same context
(c_in, c_out, stride, input size, activation, SE) run identical candidates, so each such signature
is measured once and shared (8 signatures in the presets, not 20 positions).

A timed call also pays the framework's fixed cost of one hybridized call (Python, CachedOp, engine
sync), which a whole network pays once, not once per block. That cost is measured the same way on
an identity block and taken out of every part except the stem, so the sum holds one call's worth.
Parts timed alone still miss what a whole network pays between them, so a few random networks are
timed end to end and every entry is scaled by the median ratio (`calibrate_table`).
"""
import logging
import statistics
import time

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from ..errors import UserError
from ..nn.blocks import ChoiceBlock, Head, Stem
from ..nn.subnet import SubNet
from ..space import Architecture, get_space
from .latency import LatencyTable

log = logging.getLogger(__name__)
CALIBRATION_SEED = 1_000_003   # calibration networks never coincide with a report's (seeded 0, 1, ...)


def device_name(ctx):
    """'cpu' or 'gpu(i)': how a table names the device it was measured on."""
    return "cpu" if ctx.device_type.startswith("cpu") else f"gpu({ctx.device_id})"


def signature(position):
    """What a candidate's latency depends on besides its own choice and width."""
    return (position.c_in, position.c_out, position.stride, position.in_size, position.act, position.se)


class _Identity(HybridBlock):
    def hybrid_forward(self, F, x):
        return F.identity(x)


def time_ms(net, x, repeats, warmup):
    """Median milliseconds of one forward pass of `net` on `x` (each pass waited for)."""
    for _ in range(warmup):
        net(x).wait_to_read()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(x).wait_to_read()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _timed(block, shape, ctx, repeats, warmup):
    block.initialize(mx.init.Xavier(), ctx=ctx)
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=shape, ctx=ctx)
    return time_ms(block, x, repeats, warmup)


def _progress(total, enabled, desc):
    if enabled:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, leave=False, disable=None)  # None: only on a terminal
    return None


def measure_table(space, ctx=None, batch_size=1, repeats=20, progress=False, warmup=5,
                  calibration_archs=5):
    """Measure every part of `space` on `ctx` (default CPU); see the module docstring.

    Parts timed alone miss what a whole network pays between them (memory traffic, cache
    misses), so the sum runs about 8% short on this CPU while ranking networks almost perfectly.
    `calibration_archs` random networks (their own seed, never those of a report) are timed end
    to end and every entry is scaled by the median ratio measured / summed; the file keeps the
    factor. 0 leaves the raw sums.
    """
    space, ctx = get_space(space), ctx or mx.cpu()
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise UserError(f"repeats and batch size must be >= 1 and warm-up >= 0, got "
                        f"repeats={repeats}, batch_size={batch_size}, warmup={warmup}")
    n, size = batch_size, space.input_size
    groups = {}
    for p in space.positions:
        groups.setdefault(signature(p), []).append(p.index)
    bar = _progress(len(groups) * space.num_blocks * space.num_scales + 3, progress,
                    f"latency {space.name}")
    overhead = _timed(_Identity(), (n, 3, size, size), ctx, repeats, warmup)
    stem = _timed(Stem(space), (n, 3, size, size), ctx, repeats, warmup)
    head = _timed(Head(space), (n, space.stage_channels[-1], space.final_size, space.final_size),
                  ctx, repeats, warmup) - overhead
    if bar:
        bar.update(3)
    blocks = np.zeros((space.num_positions, space.num_blocks, space.num_scales))
    for indices in groups.values():
        p = space.positions[indices[0]]
        for b, choice in enumerate(space.block_choices):
            for c in range(space.num_scales):
                block = ChoiceBlock(choice, p, space.mid(p.index, c))
                ms = _timed(block, (n, p.c_in, p.in_size, p.in_size), ctx, repeats, warmup)
                blocks[indices, b, c] = max(ms - overhead, 0.0)
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    log.info("latency table of %s on %s: %d signatures for %d positions, call overhead %.3f ms",
             space.name, device_name(ctx), len(groups), space.num_positions, overhead)
    extra = {"call_overhead_ms": overhead, "signatures": len(groups), "repeats": repeats,
             "warmup": warmup, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "mxnet": mx.__version__}
    table = LatencyTable(space, device_name(ctx), batch_size, stem, max(head, 0.0), blocks, extra=extra)
    if calibration_archs > 0:
        calibrate_table(table, ctx, calibration_archs, repeats, warmup)
    return table


def calibrate_table(table, ctx, count, repeats, warmup):
    """Scale every entry by the median measured/predicted ratio of `count` random networks."""
    rng, space = np.random.default_rng(CALIBRATION_SEED), table.space
    ratios = []
    for _ in range(count):
        arch = Architecture(space, rng.integers(0, space.num_blocks, space.num_positions).tolist(),
                            rng.integers(0, space.num_scales, space.num_positions).tolist())
        ratios.append(measure_arch_ms(arch, ctx, table.batch_size, repeats, warmup) / table.predict_ms(arch))
    scale = float(np.median(ratios))
    table.stem_ms, table.head_ms = table.stem_ms * scale, table.head_ms * scale
    table.blocks_ms = table.blocks_ms * scale
    table.extra["calibration"] = {"archs": count, "seed": CALIBRATION_SEED, "scale": scale}
    log.info("latency table scaled by %.4f (median measured/summed over %d networks)", scale, count)


# ----- how good is the prediction ---------------------------------------------------------------
def measure_arch_ms(arch, ctx=None, batch_size=1, repeats=20, warmup=5):
    """End-to-end milliseconds of the hybridized SubNet of `arch`, same protocol as the table."""
    size = arch.space.input_size
    return _timed(SubNet(arch), (batch_size, 3, size, size), ctx or mx.cpu(), repeats, warmup)


def prediction_report(table, archs, ctx=None, repeats=20, warmup=5, progress=False):
    """[{arch, predicted_ms, measured_ms, error_pct}] for `archs` measured end to end."""
    rows = []
    bar = _progress(len(archs), progress, "end to end")
    for arch in archs:
        predicted = table.predict_ms(arch)
        measured = measure_arch_ms(arch, ctx, table.batch_size, repeats, warmup)
        rows.append({"arch": str(arch), "predicted_ms": predicted, "measured_ms": measured,
                     "error_pct": 100.0 * (predicted - measured) / measured})
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return rows


def error_summary(rows):
    """(mean absolute %, max absolute %) of a prediction report."""
    errors = [abs(r["error_pct"]) for r in rows]
    return statistics.fmean(errors), max(errors)
