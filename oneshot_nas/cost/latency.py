"""A latency table: milliseconds per (position, block, width) on one device, as data.

Like HURRICANE's and Single-Path NAS's runtime models, the latency of an architecture is predicted
as the sum of its parts, each measured alone: stem_ms + head_ms + sum of blocks_ms[p][b][c]. The
parts are measured by cost/timing.py (MXNet); this module only holds, reads, writes and sums
tables, so the cost model and the search use them without MXNet.

File format (a contract with the search; extra keys may be added, these never change meaning):
    {"format": "oneshot-nas-latency-v1", "space": name, "space_key": counting.space_key(space),
     "space_config": {...}, "device": "cpu" | "gpu(0)", "batch_size": int, "dtype": "float32",
     "unit": "ms", "stem_ms": float, "head_ms": float,
     "blocks_ms": [[[ms per channel id] per block id] per position]}
In a space that searches SE (`se_search`) each channel id's entry is [ms without SE, ms with SE].
A measured table adds (extra keys): "protocol" (Protocol.to_dict(): how every part was timed),
"threads_env" (the thread settings MXNet ran with), "call_overhead_ms", "signatures", "calibration"
({"archs", "seed", "fit", "scale", "offset_ms"}; the offset is folded into stem_ms), "measured_at".
"""
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..jsonfile import read_json
from ..space import SearchSpace, get_space
from .counting import cache_dir, space_key

FORMAT = "oneshot-nas-latency-v1"
STATISTICS = ("median", "min")
CLOCKS = ("cpu", "wall")
FITS = ("affine", "scale")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS", "MXNET_ENGINE_TYPE")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How cost/timing.py times every part of a table and every whole network (one place for all
    of it; recorded in the table it measures). Why each default, measured:
    docs/profiling.md#latency-table-hardware-aware.

    Every item (a part, or a network) is built and warmed up `warmup` calls first; then `rounds`
    rounds visit all items in a shuffled order, and in each round an item gets `round_warmup`
    untimed calls and `repeats` timed samples of `calls` forward passes each (every pass waited
    for). Its time is the median of its samples within each round, then the `statistic` ("median"
    or "min") of those over the rounds: a burst of foreign load slows one round of a few items,
    not all the samples of one item. `threads` is the OpenMP thread count the entry points pin
    (OMP_NUM_THREADS) before MXNet loads; None leaves the environment alone. `clock` "cpu" times a
    sample by the CPU time of the process (all its threads), which does not run while another
    process has the core: with one compute thread that is the latency on a core of its own;
    "wall" is the elapsed time (needed with several threads, which the CPU clock would add up)."""
    warmup: int = 3
    rounds: int = 4
    repeats: int = 8
    calls: int = 1
    round_warmup: int = 1
    statistic: str = "median"
    threads: int | None = 1
    clock: str = "cpu"

    def __post_init__(self):
        counts = {"warmup": self.warmup, "round_warmup": self.round_warmup}
        if min(self.rounds, self.repeats, self.calls) < 1 or min(counts.values()) < 0:
            raise UserError(f"a latency protocol needs rounds, repeats and calls >= 1 and warm-ups "
                            f">= 0, got {self}")
        if self.statistic not in STATISTICS:
            raise UserError(f"latency statistic {self.statistic!r}: choose one of {', '.join(STATISTICS)}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"latency protocol threads must be >= 1 (or None), got {self.threads}")
        if self.clock not in CLOCKS:
            raise UserError(f"latency clock {self.clock!r}: choose one of {', '.join(CLOCKS)}")
        if self.clock == "cpu" and self.threads != 1:
            raise UserError(f"the cpu clock measures latency with one thread only (threads=1), got "
                            f"threads={self.threads}: use the wall clock")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """A protocol read back from a table (unknown keys are refused, missing ones default)."""
        try:
            return cls(**data)
        except TypeError as err:
            raise UserError(f"latency protocol {data!r} is not one this version reads ({err})") from None


def pin_threads(threads):
    """Set OMP_NUM_THREADS to `threads` for MXNet (None: leave it); returns the thread settings in
    force. It only takes effect if MXNet is not loaded yet, so entry points call it first."""
    if threads is not None and os.environ.get("OMP_NUM_THREADS") != str(threads):
        if "mxnet" in sys.modules:
            log.warning("MXNet is already loaded: OMP_NUM_THREADS=%d takes effect in a new process only",
                        threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return thread_settings()


def thread_settings():
    """The environment variables that decide MXNet's CPU threads, as set in this process."""
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def timed_groups(space):
    """The gene groups a latency table has an axis for, in gene order: the block, the width and,
    in a space that searches SE, whether SE runs (bit widths have none: a fake-quantized network's
    time is not a quantized network's latency)."""
    return tuple(g for g in space.gene_groups if g.name in ("blocks", "channels", "se"))


def default_path(space, device="cpu", batch_size=1):
    """cache_dir()/latency/<space_key>-<device>-bs<N>.json (device 'gpu(0)' is written gpu0)."""
    tag = device.replace("(", "").replace(")", "")
    return cache_dir() / "latency" / f"{space_key(get_space(space))}-{tag}-bs{batch_size}.json"


class LatencyTable:
    """Measured milliseconds of every part of a space's networks on one device and batch size."""

    def __init__(self, space, device, batch_size, stem_ms, head_ms, blocks_ms, dtype="float32",
                 extra=None):
        self.space = get_space(space)
        self.device, self.batch_size, self.dtype = device, int(batch_size), dtype
        self.stem_ms, self.head_ms = float(stem_ms), float(head_ms)
        self.blocks_ms = np.asarray(blocks_ms, dtype=np.float64)   # (positions, blocks, scales[, SE])
        self.groups = timed_groups(self.space)
        expected = (self.space.num_positions,) + tuple(g.size for g in self.groups)
        if self.blocks_ms.shape != expected:
            axes = ", ".join(["positions"] + [g.name for g in self.groups])
            raise UserError(f"a latency table of space {self.space.name!r} needs blocks_ms of shape "
                            f"{expected} ({axes}), got {self.blocks_ms.shape}")
        self.extra = dict(extra or {})
        self._rows = np.arange(self.space.num_positions)

    @property
    def protocol(self):
        """The Protocol the table was measured with (None for a table that did not record one)."""
        data = self.extra.get("protocol")
        return Protocol.from_dict(data) if data is not None else None

    # ----- prediction ---------------------------------------------------------------------------
    def predict_ms(self, arch):
        """stem_ms + head_ms + the sum of the architecture's blocks."""
        if arch.space != self.space:
            raise UserError(f"architecture {arch} is of space {arch.space.name!r}, but this latency "
                            f"table was measured for {self.space.name!r}")
        return self.stem_ms + self.head_ms + float(
            self.blocks_ms[(self._rows,) + tuple(list(getattr(arch, g.name)) for g in self.groups)].sum())

    def predict_many(self, *ids):
        """Predicted ms of many architectures: one (N, positions) id array per axis of the table
        (blocks, channels, and SE in a space that searches it)."""
        if len(ids) != len(self.groups):
            raise ValueError(f"a latency table of space {self.space.name!r} needs ids of "
                             f"{', '.join(g.name for g in self.groups)}")
        return self.stem_ms + self.head_ms + self.blocks_ms[
            (self._rows,) + tuple(np.asarray(i) for i in ids)].sum(axis=1)

    def fastest_blocks(self, keep):
        """HURRICANE's candidates for this device: at each position the `keep` block choices with
        the lowest latency (mean over the widths), as sorted ids; ties go to the lower id."""
        if not 1 <= keep <= self.space.num_blocks:
            raise UserError(f"--device-blocks {keep}: keep 1 to {self.space.num_blocks} of the "
                            f"{self.space.num_blocks} block choices per position", settings="device_blocks")
        mean = self.blocks_ms.reshape(self.blocks_ms.shape[:2] + (-1,)).mean(axis=2)
        return [tuple(sorted(np.argsort(row, kind="stable")[:keep].tolist())) for row in mean]

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
