"""A measured latency table: milliseconds per (position, block, width) on one device.

Like HURRICANE's and Single-Path NAS's runtime models, the latency of an architecture is predicted
as the sum of its parts, each measured alone: stem_ms + head_ms + sum of blocks_ms[p][b][c]. Every
part runs as a hybridized block (static graph) on random input, after warm-up, and its time is the
median of `repeats` timed forward passes (each waited for). Positions with the same context
(c_in, c_out, stride, input size, activation, SE) run identical candidates, so each such signature
is measured once and shared (8 signatures in the presets, not 20 positions).

A timed call also pays the framework's fixed cost of one hybridized call (Python, CachedOp, engine
sync), which a whole network pays once, not once per block. That cost is measured the same way on
an identity block and taken out of every part except the stem, so the sum holds one call's worth.
Parts timed alone still miss what a whole network pays between them, so a few random networks are
timed end to end and every entry is scaled by the median ratio (`LatencyTable.calibrate`).

File format (a contract with the search; extra keys may be added, these never change meaning):
    {"format": "oneshot-nas-latency-v1", "space": name, "space_key": counting.space_key(space),
     "space_config": {...}, "device": "cpu" | "gpu(0)", "batch_size": int, "dtype": "float32",
     "unit": "ms", "stem_ms": float, "head_ms": float,
     "blocks_ms": [[[ms per channel id] per block id] per position]}
"""
import json
import logging
import os
import statistics
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from ..nn.blocks import ChoiceBlock, Head, Stem
from .counting import cache_dir, space_key
from ..errors import UserError
from ..jsonfile import read_json
from ..space import Architecture, SearchSpace, get_space
from ..nn.subnet import SubNet

log = logging.getLogger(__name__)
FORMAT = "oneshot-nas-latency-v1"
CALIBRATION_SEED = 1_000_003   # calibration networks never coincide with a report's (seeded 0, 1, ...)


def device_name(ctx):
    """'cpu' or 'gpu(i)': how a table names the device it was measured on."""
    return "cpu" if ctx.device_type.startswith("cpu") else f"gpu({ctx.device_id})"


def default_path(space, device="cpu", batch_size=1):
    """cache_dir()/latency/<space_key>-<device>-bs<N>.json (device 'gpu(0)' is written gpu0)."""
    tag = device.replace("(", "").replace(")", "")
    return cache_dir() / "latency" / f"{space_key(get_space(space))}-{tag}-bs{batch_size}.json"


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


class LatencyTable:
    """Measured milliseconds of every part of a space's networks on one device and batch size."""

    def __init__(self, space, device, batch_size, stem_ms, head_ms, blocks_ms, dtype="float32",
                 extra=None):
        self.space = get_space(space)
        self.device, self.batch_size, self.dtype = device, int(batch_size), dtype
        self.stem_ms, self.head_ms = float(stem_ms), float(head_ms)
        self.blocks_ms = np.asarray(blocks_ms, dtype=np.float64)   # (positions, blocks, scales)
        expected = (self.space.num_positions, self.space.num_blocks, self.space.num_scales)
        if self.blocks_ms.shape != expected:
            raise UserError(f"a latency table of space {self.space.name!r} needs blocks_ms of shape "
                            f"{expected} (positions, blocks, scales), got {self.blocks_ms.shape}")
        self.extra = dict(extra or {})
        self._rows = np.arange(self.space.num_positions)

    # ----- prediction ---------------------------------------------------------------------------
    def predict_ms(self, arch):
        """stem_ms + head_ms + the sum of the architecture's blocks."""
        if arch.space != self.space:
            raise UserError(f"architecture {arch} is of space {arch.space.name!r}, but this latency "
                            f"table was measured for {self.space.name!r}")
        return self.stem_ms + self.head_ms + float(
            self.blocks_ms[self._rows, list(arch.blocks), list(arch.channels)].sum())

    def predict_many(self, blocks, channels):
        """Predicted ms of many architectures: `blocks`, `channels` are (N, positions) id arrays."""
        return self.stem_ms + self.head_ms + self.blocks_ms[
            self._rows, np.asarray(blocks), np.asarray(channels)].sum(axis=1)

    # ----- measurement --------------------------------------------------------------------------
    @classmethod
    def measure(cls, space, ctx=None, batch_size=1, repeats=20, progress=False, warmup=5,
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
        table = cls(space, device_name(ctx), batch_size, stem, max(head, 0.0), blocks, extra=extra)
        if calibration_archs > 0:
            table.calibrate(ctx, calibration_archs, repeats, warmup)
        return table

    def calibrate(self, ctx, count, repeats, warmup):
        """Scale every entry by the median measured/predicted ratio of `count` random networks."""
        rng, space = np.random.default_rng(CALIBRATION_SEED), self.space
        ratios = []
        for _ in range(count):
            arch = Architecture(space, rng.integers(0, space.num_blocks, space.num_positions).tolist(),
                                rng.integers(0, space.num_scales, space.num_positions).tolist())
            ratios.append(measure_arch_ms(arch, ctx, self.batch_size, repeats, warmup) / self.predict_ms(arch))
        scale = float(np.median(ratios))
        self.stem_ms, self.head_ms, self.blocks_ms = (self.stem_ms * scale, self.head_ms * scale,
                                                      self.blocks_ms * scale)
        self.extra["calibration"] = {"archs": count, "seed": CALIBRATION_SEED, "scale": scale}
        log.info("latency table scaled by %.4f (median measured/summed over %d networks)", scale, count)

    # ----- files --------------------------------------------------------------------------------
    def to_dict(self):
        return {"format": FORMAT, "space": self.space.name, "space_key": space_key(self.space),
                "space_config": self.space.to_dict(), "device": self.device,
                "batch_size": self.batch_size, "dtype": self.dtype, "unit": "ms",
                "stem_ms": self.stem_ms, "head_ms": self.head_ms,
                "blocks_ms": self.blocks_ms.tolist(), **self.extra}

    def save(self, path=None):
        """Write the table as JSON (default: default_path(...)); returns the path."""
        path = Path(path or default_path(self.space, self.device, self.batch_size))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict()) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path, space=None):
        """Read a table; with `space`, refuse a table measured for any other space definition."""
        path = Path(path)
        data = read_json(path, missing="latency table {path} does not exist; measure one with "
                                       "python profiling/latency_table.py --space NAME",
                         invalid="latency table {path} is damaged ({err}); measure it again")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path} is not a latency table (expected \"format\": \"{FORMAT}\"); "
                            "measure one with python profiling/latency_table.py")
        try:
            table_space = SearchSpace.from_dict(data["space_config"])
            core = {"stem_ms", "head_ms", "blocks_ms", "device", "batch_size", "space_key"}
            extra = {k: v for k, v in data.items() if k not in core | {
                "format", "space", "space_config", "dtype", "unit"}}
            table = cls(table_space, data["device"], data["batch_size"], data["stem_ms"],
                        data["head_ms"], data["blocks_ms"], data.get("dtype", "float32"), extra)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"latency table {path} is damaged ({type(err).__name__}: {err}); "
                            "measure it again") from None
        if data["space_key"] != space_key(table_space):
            raise UserError(f"latency table {path} is damaged: its space_key does not match its "
                            "space_config; measure it again")
        if space is not None and space_key(get_space(space)) != data["space_key"]:
            other = get_space(space)
            raise UserError(f"latency table {path} was measured for space {data['space']!r} "
                            f"({data['space_key']}), not for {other.name!r} ({space_key(other)}); "
                            "measure a table for this space with python profiling/latency_table.py")
        return table


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
