"""Measuring latency on a device: each part of a space alone (a latency table), whole networks end to
end, and the table's prediction error.

Every part runs as a hybridized block (static graph) on random input. Positions with the same
context (c_in, c_out, stride, input size, activation, SE) run identical candidates, so each such
signature is measured once and shared (8 signatures in the presets, not 20 positions). In a space
that searches SE every candidate is timed without and with its SE module.

The protocol (`Protocol` in cost/latency.py, recorded in the table) is built for a shared CPU,
where other processes add time in bursts but never take any away:
- every item is built first, then timed in several rounds that visit all items in a shuffled
  order; an item's time is the median within each round, then the median (or min) over rounds.
  A burst of foreign load then spoils one round of a few items, which the statistic over rounds
  drops, instead of every sample of whichever item was unlucky enough to run during it;
- whole networks, the ones a table is calibrated on and the ones it is judged against, are timed
  the same way, or the "truth" would be noisier than the prediction;
- the garbage collector is off while timing (its pauses are not the network's);
- the OpenMP thread count is pinned by the entry points (MXNet's own default on 2 cores is one
  thread per operator; pinning it makes table and networks agree wherever they are measured).

A timed call also pays the framework's fixed cost of one hybridized call (Python, CachedOp, engine
sync), which a whole network pays once, not once per block. That cost is measured the same way on
an identity block and taken out of every part except the stem. Parts timed alone still miss what a
whole network pays between them, so a few random networks are timed end to end and the table is
fitted to them (`calibrate_table`): by default measured = offset + scale x sum of parts (least
squares), which also absorbs whatever the per-call overhead left over, since every network of a
space has the same number of parts; `fit="scale"` keeps the earlier median ratio.
"""
import gc
import itertools
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
from .latency import FITS, LatencyTable, Protocol, thread_settings, timed_groups

log = logging.getLogger(__name__)
CALIBRATION_SEED = 1_000_003   # calibration networks never coincide with a report's (seeded 0, 1, ...)
ORDER_SEED = 0                 # the shuffled order of items within each round


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
    """Median milliseconds of one forward pass of `net` on `x` (each pass waited for); a quick
    single-item timing (int8 comparisons). Tables use `time_items`."""
    for _ in range(warmup):
        net(x).wait_to_read()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(x).wait_to_read()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def robust_ms(rounds, statistic="median"):
    """One item's time from its samples, grouped by round: the median within each round, then the
    median (or the min) over the rounds. Foreign load only adds time, and it comes in bursts."""
    per_round = [statistics.median(samples) for samples in rounds]
    return min(per_round) if statistic == "min" else statistics.median(per_round)


def time_items(items, protocol, bar=None):
    """Milliseconds per forward pass of each (net, x) in `items`, timed in interleaved rounds by
    `protocol` (see the module docstring); returns one robust time per item, in order."""
    order = np.random.default_rng(ORDER_SEED)
    clock = time.process_time if protocol.clock == "cpu" else time.perf_counter
    samples = [[[] for _ in range(protocol.rounds)] for _ in items]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for net, x in items:
            for _ in range(protocol.warmup):
                net(x).wait_to_read()
        for r in range(protocol.rounds):
            for i in order.permutation(len(items)).tolist():
                net, x = items[i]
                for _ in range(protocol.round_warmup):
                    net(x).wait_to_read()
                for _ in range(protocol.repeats):
                    start = clock()
                    for _ in range(protocol.calls):
                        net(x).wait_to_read()
                    samples[i][r].append((clock() - start) * 1e3 / protocol.calls)
                if bar:
                    bar.update(1)
    finally:
        if enabled:
            gc.enable()
    return [robust_ms(s, protocol.statistic) for s in samples]


def _check_clock(protocol, ctx):
    if protocol.clock == "cpu" and not ctx.device_type.startswith("cpu"):
        raise UserError(f"the cpu clock times the host, not {device_name(ctx)}: time a GPU by the wall "
                        "clock", settings="clock")


def _built(block, shape, ctx):
    block.initialize(mx.init.Xavier(), ctx=ctx)
    block.hybridize(static_alloc=True, static_shape=True)
    return block, mx.nd.random.normal(shape=shape, ctx=ctx)


def _progress(total, enabled, desc):
    if enabled:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, leave=False, disable=None)  # None: only on a terminal
    return None


def measure_table(space, ctx=None, batch_size=1, protocol=None, progress=False, calibration_archs=5,
                  calibration_fit="affine"):
    """Measure every part of `space` on `ctx` (default CPU) by `protocol` (default Protocol());
    see the module docstring.

    Parts timed alone miss what a whole network pays between them (memory traffic, cache
    misses), so their sum runs 5-17% short on this CPU while ranking networks almost perfectly.
    `calibration_archs` random networks (their own seed, never those of a report) are timed end
    to end and the table is fitted to them (`calibrate_table`); 0 leaves the raw sums.
    """
    space, ctx, protocol = get_space(space), ctx or mx.cpu(), protocol or Protocol()
    if getattr(space, "bit_widths", ()):
        raise UserError(f"space {space.name!r} is fake-quantized: its networks compute in float, so their "
                        "time is not a quantized network's latency, and a latency table holds no bit-width "
                        "entries; measure the float space (e.g. tiny4 for tiny4-q)")
    _check_clock(protocol, ctx)
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    n, size = batch_size, space.input_size
    groups = {}
    for p in space.positions:
        groups.setdefault(signature(p), []).append(p.index)
    items = [_built(_Identity(), (n, 3, size, size), ctx), _built(Stem(space), (n, 3, size, size), ctx),
             _built(Head(space), (n, space.stage_channels[-1], space.final_size, space.final_size), ctx)]
    where, cells = [], list(itertools.product(*(range(g.size) for g in timed_groups(space))))
    for indices in groups.values():
        for b, c, *se in cells:         # (b, c, SE id) where SE is searched: timed without and with it
            p = space.position(indices[0], *se)
            items.append(_built(ChoiceBlock(space.block_choices[b], p, space.mid(p.index, c)),
                                (n, p.c_in, p.in_size, p.in_size), ctx))
            where.append((indices, b, c, *se))
    bar = _progress(len(items) * protocol.rounds, progress, f"latency {space.name}")
    overhead, stem, head, *parts = time_items(items, protocol, bar)
    if bar:
        bar.close()
    blocks = np.zeros((space.num_positions,) + tuple(g.size for g in timed_groups(space)))
    for (indices, *cell), ms in zip(where, parts):
        blocks[(indices, *cell)] = max(ms - overhead, 0.0)
    log.info("latency table of %s on %s: %d signatures for %d positions, call overhead %.3f ms",
             space.name, device_name(ctx), len(groups), space.num_positions, overhead)
    extra = {"call_overhead_ms": overhead, "signatures": len(groups), "protocol": protocol.to_dict(),
             "threads_env": thread_settings(), "repeats": protocol.repeats, "warmup": protocol.warmup,
             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "mxnet": mx.__version__}
    table = LatencyTable(space, device_name(ctx), batch_size, stem, max(head - overhead, 0.0), blocks,
                         extra=extra)
    if calibration_archs > 0:
        calibrate_table(table, ctx, calibration_archs, protocol, calibration_fit)
    return table


# ----- calibration on whole networks ------------------------------------------------------------
def calibration_archs(space, count):
    """The `count` random networks a table of `space` is calibrated on (their own seed)."""
    rng, space = np.random.default_rng(CALIBRATION_SEED), get_space(space)
    return [Architecture(space, **{g.name: rng.integers(0, g.size, space.num_positions).tolist()
                                   for g in space.gene_groups})
            for _ in range(count)]


def fit_calibration(summed_ms, measured_ms, fit="affine"):
    """(scale, offset_ms) such that measured ~ offset + scale * summed.

    "affine": least squares over the networks; with fewer than 3, with sums that span less than 1%
    or with a slope <= 0 there is no line to fit, and it falls back to "scale": the median ratio
    measured / summed, offset 0.
    """
    if fit not in FITS:
        raise UserError(f"calibration fit {fit!r}: choose one of {', '.join(FITS)}")
    summed, measured = np.asarray(summed_ms, dtype=float), np.asarray(measured_ms, dtype=float)
    if len(summed) != len(measured) or len(summed) < 1:
        raise UserError(f"calibration needs one measured time per summed one, got {len(summed)} "
                        f"and {len(measured)}")
    if fit == "affine" and len(summed) >= 3 and np.ptp(summed) > 0.01 * summed.mean():
        scale, offset = np.polyfit(summed, measured, 1)
        if scale > 0:
            return float(scale), float(offset)
    if fit == "affine":
        log.warning("affine calibration: no line through %d networks; using the median ratio", len(summed))
    return float(np.median(measured / summed)), 0.0


def apply_calibration(table, archs, measured_ms, fit="affine"):
    """Fit `table` to the measured times of `archs` (fit_calibration) and rewrite its entries: every
    entry x scale, the offset folded into stem_ms, so stem + head + blocks stays the prediction."""
    summed = [table.predict_ms(a) for a in archs]
    scale, offset = fit_calibration(summed, measured_ms, fit)
    if table.stem_ms * scale + offset < 0:
        # a noisy line through networks of nearly equal cost can cross zero far from them: a
        # negative stem is no latency, and the median ratio is the safer reading of such networks
        log.warning("affine calibration: offset %+.3f ms would make the stem negative; using the median "
                    "ratio", offset)
        scale, offset = fit_calibration(summed, measured_ms, "scale")
        fit = "scale"
    table.stem_ms, table.head_ms = table.stem_ms * scale + offset, table.head_ms * scale
    table.blocks_ms = table.blocks_ms * scale
    table.extra["calibration"] = {"archs": len(archs), "seed": CALIBRATION_SEED, "fit": fit,
                                  "scale": scale, "offset_ms": offset}
    log.info("latency table fitted to %d networks (%s): x%.4f %+.3f ms", len(archs), fit, scale, offset)
    return scale, offset


def calibrate_table(table, ctx, count, protocol=None, fit="affine"):
    """Time `count` random networks end to end and fit the table to them (apply_calibration)."""
    archs = calibration_archs(table.space, count)
    measured = measure_archs_ms(archs, ctx, table.batch_size, protocol)
    return apply_calibration(table, archs, measured, fit)


# ----- how good is the prediction ---------------------------------------------------------------
def measure_archs_ms(archs, ctx=None, batch_size=1, protocol=None, progress=False):
    """End-to-end milliseconds of the hybridized SubNet of each of `archs`, timed together in
    interleaved rounds by the same protocol as the table."""
    protocol, ctx = protocol or Protocol(), ctx or mx.cpu()
    _check_clock(protocol, ctx)
    items = [_built(SubNet(a), (batch_size, 3, a.space.input_size, a.space.input_size), ctx)
             for a in archs]
    bar = _progress(len(items) * protocol.rounds, progress, "end to end")
    times = time_items(items, protocol, bar)
    if bar:
        bar.close()
    return times


def measure_arch_ms(arch, ctx=None, batch_size=1, protocol=None):
    """End-to-end milliseconds of one architecture's hybridized SubNet (measure_archs_ms)."""
    return measure_archs_ms([arch], ctx, batch_size, protocol)[0]


def report_rows(table, archs, measured_ms):
    """[{arch, predicted_ms, measured_ms, error_pct}] of `table` against measured times."""
    rows = []
    for arch, measured in zip(archs, measured_ms):
        predicted = table.predict_ms(arch)
        rows.append({"arch": str(arch), "predicted_ms": predicted, "measured_ms": measured,
                     "error_pct": 100.0 * (predicted - measured) / measured})
    return rows


def prediction_report(table, archs, ctx=None, protocol=None, progress=False):
    """report_rows for `archs` measured end to end (measure_archs_ms)."""
    return report_rows(table, archs, measure_archs_ms(archs, ctx, table.batch_size, protocol, progress))


def error_summary(rows):
    """(mean absolute %, max absolute %) of a prediction report."""
    errors = [abs(r["error_pct"]) for r in rows]
    return statistics.fmean(errors), max(errors)
