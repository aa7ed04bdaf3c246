"""Devices and workers: the contexts a run uses, and the one kvstore that keeps devices and worker
processes in step, for training and search alike.

One `Workers` object owns the kvstore. The Gluon Trainer is built without one (it only applies the
optimizer on each device), because its all-reduce pushes the gradient of every parameter, including
the stale gradients of supernet candidates the step did not use: 3/4 of the supernet's traffic is
wasted that way, and a stale gradient summed across workers is meaningless. Here only the
parameters the step's path touched are reduced, and since every device and every worker draws the
same path (same seed stream), every worker pushes the same keys in the same order. A search shares
out its candidates (`mine`) and gathers every worker's scores (`gather`).

Create it first thing in an entry point: under MXNet's launcher, a worker that stops before joining
the kvstore leaves the others waiting forever; after joining, `check_inputs` lets every worker stop
on bad input that only one of them sees.
"""
import logging
import os

import mxnet as mx
import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)
KV_TYPES = ("none", "device", "local", "dist_sync", "dist_device_sync")
METRIC_SLOTS = 16      # metrics summed across workers travel as one array of this many floats
METRIC_KEY = 1 << 24   # their kvstore key, far above the parameters' keys (0, 1, 2, ...)
GATHER_KEY = METRIC_KEY + 1   # gathered tables take the keys from here on, one per call


def device_count(gpus=""):
    """How many devices `gpus` ('0,1,...') names (1 for the CPU), without checking that they exist."""
    return max(1, len([g for g in str(gpus or "").split(",") if g.strip()]))


def contexts_from(gpus=""):
    """[mx.gpu(i) for i in '0,1,...'] or [mx.cpu()] when `gpus` is empty."""
    ids = [g.strip() for g in str(gpus or "").split(",") if g.strip()]
    if not ids:
        return [mx.cpu()]
    try:
        ids = [int(g) for g in ids]
    except ValueError:
        raise UserError(f"GPUs {gpus!r}: give GPU numbers separated by commas, e.g. 0,1") from None
    available = mx.context.num_gpus()
    if available == 0:
        raise UserError(f"GPUs {gpus}: this MXNet build has no GPU support (or no GPU is visible); "
                        "run on the CPU instead, or install a CUDA build of mxnet 1.9.1")
    missing = [g for g in ids if not 0 <= g < available]
    if missing:
        raise UserError(f"GPUs {gpus}: GPU {missing[0]} does not exist (this machine has {available})")
    return [mx.gpu(g) for g in ids]


class Workers:
    """Gradient, statistics and result exchange between devices (kvstore device/local) and worker
    processes (dist_sync/dist_device_sync under MXNet's launcher). With one device and no
    distribution (or kv_type 'none') there is nothing to exchange and no kvstore is created."""

    def __init__(self, kv_type="none", num_devices=1):
        if kv_type not in KV_TYPES:
            raise UserError(f"kvstore {kv_type!r} is not supported; choose one of {', '.join(KV_TYPES)} "
                            "(asynchronous kvstores cannot keep a shared path per step)")
        self.distributed = kv_type.startswith("dist")
        if self.distributed and "DMLC_ROLE" not in os.environ:
            raise UserError(f"kvstore {kv_type} needs MXNet's parameter-server launcher: "
                            "python -m oneshot_nas.launch -n WORKERS -s SERVERS --launcher local|ssh ... "
                            "(see docs/training.md); on one machine use the kvstore 'device'")
        local = num_devices > 1 and kv_type != "none"
        self.kv = mx.kv.create(kv_type) if self.distributed or local else None
        self.rank = self.kv.rank if self.distributed else 0
        self.num_workers = self.kv.num_workers if self.distributed else 1
        self.contexts = [None] * num_devices
        self.keys = {}
        self._next_key = 0       # a later network (e.g. the next search of a sequence) takes new keys
        self._gathers = 0
        if self.distributed:
            self.kv.init(METRIC_KEY, mx.nd.zeros(METRIC_SLOTS))

    @property
    def is_chief(self):
        """The worker that writes logs, records and checkpoints."""
        return self.rank == 0

    def who(self):
        """'[worker r/n] ' in a multi-worker job, '' otherwise (a prefix for log lines)."""
        return f"[worker {self.rank}/{self.num_workers}] " if self.num_workers > 1 else ""

    def barrier(self):
        """Wait until every worker gets here."""
        if self.distributed:
            self.kv._barrier()     # private in 1.x but stable; the public name came in 2.0

    def all_ok(self, ok):
        """True when every worker passes ok=True (each must call this at the same point)."""
        return bool(self.sum([1.0 if ok else 0.0])[0] >= self.num_workers - 0.5)

    def check_inputs(self, prepare):
        """Run the input checks `prepare()` on every worker, the chief first (so that it alone packs
        the embedded data into the shared cache); if any worker finds bad input, every worker stops
        with a UserError. Returns what `prepare` returned."""
        error = result = None
        if not self.is_chief:
            self.barrier()
        try:
            result = prepare()
        except UserError as err:
            error = err
        finally:
            if self.is_chief:
                self.barrier()
        if not self.all_ok(error is None):
            raise error or UserError("another worker stopped on bad input (see its message)")
        return result

    # ----- training: gradients and statistics --------------------------------------------------
    def register(self, params, contexts):
        """Give each parameter (an ordered list, the same on every worker) a key and make every
        copy equal to worker 0's first device. Each call takes fresh keys, so one Workers can train
        several networks in turn."""
        if len(contexts) != len(self.contexts):
            raise ValueError(f"these Workers were made for {len(self.contexts)} devices, not {len(contexts)}")
        self.contexts = list(contexts)
        keys = list(range(self._next_key, self._next_key + len(params)))
        self._next_key += len(params)
        self.keys = {p.name: k for p, k in zip(params, keys)}
        if self.kv is None:
            return
        self.kv.init(keys, [p.data(self.contexts[0]) for p in params])
        self.kv.pull(keys, out=[p.list_data() for p in params])

    def reduce_grads(self, params):
        """Sum the gradients of `params` over devices and workers (in place, on every device)."""
        if self.kv is None:
            return
        for p in params:
            key = self.keys[p.name]
            self.kv.pushpull(key, p.list_grad(), priority=-key)

    def average_data(self, params):
        """Make every copy of `params` (BatchNorm running statistics) the mean over all copies."""
        if self.kv is None:
            return
        copies = len(self.contexts) * self.num_workers
        for p in params:
            arrays = p.list_data()
            self.kv.pushpull(self.keys[p.name], arrays)
            for a in arrays:
                a /= copies

    # ----- results: sums and tables ------------------------------------------------------------
    def sum(self, values):
        """Element-wise sum of a few floats over workers (each worker passes its own)."""
        values = np.asarray(values, dtype=np.float64)
        if not self.distributed:
            return values
        if len(values) > METRIC_SLOTS:
            raise ValueError(f"at most {METRIC_SLOTS} values can be summed at once")
        buf = mx.nd.zeros(METRIC_SLOTS)
        buf[:len(values)] = mx.nd.array(values)
        self.kv.pushpull(METRIC_KEY, buf, out=buf)
        return buf.asnumpy()[:len(values)].astype(np.float64)

    def mine(self, count):
        """Indices of the items (e.g. candidates) this worker handles, round-robin."""
        return list(range(self.rank, count, self.num_workers))

    def gather(self, rows):
        """rows: (count, fields) float64, filled only in this worker's rows (zeros elsewhere);
        returns the sum over workers, i.e. every row filled. The same order of calls on all workers."""
        rows = np.asarray(rows, dtype=np.float64)
        if not self.distributed or rows.size == 0:
            return rows
        key = GATHER_KEY + self._gathers
        self._gathers += 1
        self.kv.init(key, mx.nd.zeros(rows.size, dtype="float64"))
        self.kv.push(key, mx.nd.array(rows.ravel(), dtype="float64"))
        out = mx.nd.zeros(rows.size, dtype="float64")
        self.kv.pull(key, out=out)
        return out.asnumpy().reshape(rows.shape)
