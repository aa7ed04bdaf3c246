"""Single-Path NAS's search as a training task: cross-entropy + lambda * log(R), R the runtime model.

The runtime model is the cost model's own table (cost/model.py: latency_ms from a latency table, or
macs), read the Single-Path NAS way: at each position the kernel and width decisions pick one entry
of the (block, width) table, and with the relaxed decisions R is differentiable:

    R = fixed + sum_p  P_kernel(p)^T  T_p  P_width(p)

where T_p[j, c] is the cost of the SNB block of the j-th kernel size at width c (in a space that
searches SE, T_p mixes the tables without and with SE by P_se = [1 - c_se, c_se]), and the "one-hot"
vectors are made of the cumulative decisions c_1 >= c_2 >= ... (P_0 = 1 - c_1, P_j = c_j - c_(j+1),
P_last = c_last). With hard decisions (the forward values) R is exactly the table's sum for the
architecture the network computes; its gradient flows through the same sigmoids as the network's.
The form of the loss is the paper's CE + lambda * log(R), written CE + lambda * log(R / target):
the same gradients, and a loss that reads as cross-entropy plus how far (in log) the network is
above the target. The log makes lambda independent of the unit (ms or MACs) and of the size.
"""
import logging

import mxnet as mx
import numpy as np

from ..errors import UserError
from .tasks import SubnetTask

log = logging.getLogger(__name__)
LOSS_FORMS = ("log", "hinge")


class RuntimeModel:
    """R(decisions) for `metric` of a CostModel (see the module docstring)."""

    def __init__(self, costs, metric, layout):
        m = costs.index(metric)
        if costs.space != layout.space:
            raise ValueError("the cost model and the superkernel network are of different spaces")
        self.metric, self.layout, self.costs = metric, layout, costs
        tables = costs.array[..., m][:, list(layout.block_ids)]     # (positions, kernels, widths[, SE])
        self.tables = tables.reshape(tables.shape[:3] + (-1,))       # (positions, kernels, widths, SE or 1)
        self.fixed = float(costs.fixed[m])
        self._on = {}

    def _tables(self, ctx):
        if ctx not in self._on:
            self._on[ctx] = [mx.nd.array(t, ctx=ctx, dtype="float32") for t in self.tables]
        return self._on[ctx]

    def __call__(self, decisions, ctx):
        """R as a (1,)-NDArray on `ctx` from SuperkernelNet.decisions(ctx)."""
        total = None
        for (kernel_coef, width_coef, se_coef), table in zip(decisions, self._tables(ctx)):
            pk, pw, ps = (one_hot(c, ctx) for c in (kernel_coef, width_coef, se_coef))
            k, w, se = table.shape
            r = mx.nd.dot(pk.reshape((1, -1)), table.reshape((k, w * se))).reshape((w, se))
            r = mx.nd.dot(mx.nd.dot(pw.reshape((1, -1)), r), ps.reshape((-1, 1))).reshape((1,))
            total = r if total is None else total + r
        return total + self.fixed

    def of(self, arch):
        """The table's cost of an architecture (what R is for hard decisions)."""
        return self.costs.measure(arch)[self.metric]

    def range(self):
        """(smallest, largest) cost over the architectures the superkernel can express."""
        space = self.layout.space
        return self.costs.extremes(self.metric, space.gene_choices(blocks=self.layout.block_ids))


def one_hot(coefficients, ctx):
    """[1 - c_1, c_1 - c_2, ..., c_n] from cumulative decisions c_1..c_n; [1] without any."""
    if not coefficients:
        return mx.nd.ones((1,), ctx=ctx)
    parts = [1 - coefficients[0]]
    parts += [coefficients[j] - coefficients[j + 1] for j in range(len(coefficients) - 1)]
    parts.append(coefficients[-1])
    return mx.nd.concat(*parts, dim=0)


class SinglePathTask(SubnetTask):
    """The superkernel network trained on CE + lambda * log(R): one fixed network like a subnet's
    task (train/tasks.py), with the runtime loss and the search's records.

    With `warmup_epochs`, the first epochs train the weights alone at the largest network (every
    decision held on, no runtime loss); the thresholds are then set from the trained weights
    (`threshold_init` x their RMS) and the search starts. Every epoch records (paths.jsonl) the architecture the network computes at its end, its cost,
    the mean cross-entropy and R over the epoch's steps, and every threshold with the statistic it
    is compared with: the curves of the search."""
    kind = "singlepath"

    def __init__(self, net, runtime, lam, warmup_epochs=0, threshold_init=0.5, reference=1.0, form="log"):
        if not (lam >= 0 and np.isfinite(lam)):
            raise UserError(f"lambda {lam} must be a finite number >= 0")
        super().__init__(net)
        self.runtime, self.lam = runtime, float(lam)
        self.warmup_epochs, self.threshold_init = warmup_epochs, threshold_init
        self.reference = float(reference)   # R is divided by it: the loss is 0 at the reference
        if form not in LOSS_FORMS:
            raise UserError(f"unknown runtime loss {form!r}; choose one of {', '.join(LOSS_FORMS)}", settings="loss")
        self.form = form
        self.searching = True
        if warmup_epochs:
            net.set_all_on()          # the weights train first, at the largest network
        else:
            net.init_thresholds(threshold_init)
        self.space = net.space
        self._sums = {}

    def start_epoch(self, epoch):
        self._sums = {}
        self.searching = epoch >= self.warmup_epochs
        if self.warmup_epochs and epoch == self.warmup_epochs:     # (also right after a resume)
            self.net.init_thresholds(self.threshold_init)
        return {"lambda": self.lam, "searching": self.searching}

    def objective(self, x, y, arch, cross_entropy):
        out = self.net(x)
        ce = cross_entropy(out, y)
        r = self.runtime(self.net.decisions(x.context), x.context)
        sums = self._sums.setdefault(x.context, [mx.nd.zeros(1, ctx=x.context) for _ in range(4)])
        sums[0] += ce.sum().detach()
        sums[1] += ce.shape[0]
        sums[2] += r.detach()
        sums[3] += 1
        if not self.searching:
            return out, ce
        penalty = mx.nd.log(r / self.reference)
        if self.form == "hinge":
            penalty = mx.nd.relu(penalty)
        return out, ce + self.lam * penalty

    def paths_record(self, epoch):
        arch = self.net.architecture()
        sums = [sum(s[k].asscalar() for s in self._sums.values()) for k in range(4)] if self._sums else [0] * 4
        return {"epoch": epoch, "arch": str(arch), "cost": self.runtime.of(arch), "metric": self.runtime.metric,
                "lambda": self.lam, "ce": sums[0] / max(sums[1], 1), "runtime": sums[2] / max(sums[3], 1),
                "kernels": [self.space.block_choices[b].kernel for b in arch.blocks],
                "channels": list(arch.channels), **({"se": list(arch.se)} if arch.se else {}),
                "thresholds": self.net.thresholds()}

    def validate(self, epoch, val_batches, contexts, workers, max_images, batch_size):
        arch = self.net.architecture()
        return {**super().validate(epoch, val_batches, contexts, workers, max_images, batch_size),
                "arch": str(arch), "cost": self.runtime.of(arch)}

    def describe(self):
        return {"kind": self.kind, "space": self.space.to_dict(), "lambda": self.lam,
                "metric": self.runtime.metric, "warmup_epochs": self.warmup_epochs, "reference": self.reference,
                "form": self.form, "threshold_init": self.threshold_init}
