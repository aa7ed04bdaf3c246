"""What is trained: a weight-sharing supernet (one sampled path per step) or a fixed subnet.

`SupernetTask` draws one path per step from a seeded numpy Generator that every device and every
worker replays identically, so all gradients of a step belong to the same path; `SubnetTask` trains
a fixed, hybridized network. Both validate through train/validation.py and describe themselves for
the resume check; the loop (loop.py) is the same for both.
"""
from functools import partial

import mxnet as mx
import numpy as np

from ..cost.model import CostModel
from ..nn.inherit import inherit_from_path
from ..nn.pathgraph import PathPieces
from ..sample.schedule import allowed_scales
from ..sample.training import fixed_paths
from .settings import ordered_params
from .validation import evaluate, summarise


class SupernetTask:
    """A supernet trained on one sampled path per step and validated on a few paths, each with its
    own recalibrated BatchNorm statistics (and on `reference` if given).

    With `inherit_epochs` > 0, the first epochs train the path `inherit_path` alone; at the start
    of epoch `inherit_epochs` it is copied into every other candidate (oneshot_nas.nn.inherit) and
    uniform sampling takes over (without it, small supernets sit at chance for thousands of steps).

    With `bn_only_from` (BN-NAS's cheap supernet training), from that epoch on only the BatchNorm
    scales and shifts (gamma, beta) train: every other parameter is frozen (grad_req 'null', so
    backward computes no gradient for it and the optimizer never touches it).

    With `pinas` (train/pinas.PiNAS), the uniform epochs draw two paths per step and train with
    Pi-NAS's cross-path loss and/or mean teacher; the one-path epochs stay plain.

    With `learning` (sample/learned.Learning) and a sampler holding a LearnedDistribution (PARSEC /
    FP-NAS), the uniform epochs draw K paths per step from it (K falls with its entropy), train on
    the mean of their losses, and update it with their rewards (minus each path's loss) after the step.
    """
    kind = "supernet"

    def __init__(self, net, sampler, plan, calibration, val_paths=5, reference=None, seed=0,
                 inherit_epochs=0, inherit_path=None, bn_only_from=None, pinas=None, learning=None):
        if inherit_epochs and inherit_path is None:
            raise ValueError("inherit_epochs needs the path to train first")
        self.bn_only_from, self.bn_only = bn_only_from, False
        self.pinas = pinas if pinas is not None and pinas.two_paths else None
        if learning is not None and (sampler.learned is None or self.pinas is not None):
            raise ValueError("learning a distribution needs a sampler with one, and no Pi-NAS")
        self.learning, self._path_losses, self.samples = learning, [], []
        self.net, self.sampler, self.plan = net, sampler, plan
        self.calibration, self.val_paths, self.reference, self.seed = calibration, val_paths, reference, seed
        self.inherit_epochs, self.inherit_path = inherit_epochs, inherit_path
        self.space = net.space
        self.constrained = False
        self.fixed = False
        self._costs = None
        self.pieces = PathPieces(net)           # traced once, reused by every validation
        fixed = [self._trainable(net.stem), self._trainable(net.head)]
        self._fixed = [p for ps in fixed for p in ps]
        self._candidates = [[self._trainable(b) for b in row] for row in net.candidates]
        self._bn_fixed = [p for p in self._fixed if _is_bn_affine(p)]
        self._bn_candidates = [[[p for p in ps if _is_bn_affine(p)] for ps in row] for row in self._candidates]

    @staticmethod
    def _trainable(block):
        return [p for p in block.collect_params().values() if p.grad_req != "null"]

    def start_epoch(self, epoch):
        self.constrained = self.sampler.start_epoch(self.plan[epoch])
        self.fixed = epoch < self.inherit_epochs
        self.drawn = []
        if self.pinas is not None:
            self.pinas.attach(self.net)          # the teacher starts as a copy of the supernet
        if self.inherit_epochs and epoch == self.inherit_epochs:   # also right after a resume
            inherit_from_path(self.net, self.inherit_path)
            if self.pinas is not None:
                self.pinas.reset()
        stage = {"scales": allowed_scales(self.space, self.plan[epoch]), "constrained": self.constrained}
        if self.learning is not None and self.learning.joint_from is not None and epoch >= self.learning.joint_from:
            self.sampler.learned.to_joint()       # FP-NAS's coarse-to-fine (also right after a resume)
        self.samples = []
        if self.bn_only_from is not None and epoch >= self.bn_only_from and not self.bn_only:
            self.bn_only = True              # (also right after a resume past that epoch)
            for p in self._fixed + [p for row in self._candidates for ps in row for p in ps]:
                if not _is_bn_affine(p):
                    p.grad_req = "null"
        if self.bn_only:
            stage["bn_only"] = True
        if self.fixed:
            stage = {"path": str(self.inherit_path), "scales": sorted(set(self.inherit_path.scales)),
                     "constrained": False}
        return stage

    def draw(self, rng):
        """The step's path, or with Pi-NAS (after the one-path epochs) a pair of paths."""
        if self.fixed:
            arch = self.inherit_path
        elif self.pinas is not None:
            arch = (self.sampler(rng), self.sampler(rng))
        elif self.learning is not None:
            count = self.sampler.learned.samples_per_step(self.learning.min_samples, self.learning.samples)
            arch = tuple(self.sampler(rng) for _ in range(count))
            self.samples.append(count)
        else:
            arch = self.sampler(rng)
        self.drawn += self._trained(arch)
        return arch

    def _trained(self, arch):
        """The paths a step on `arch` (a path, or Pi-NAS's pair) trains."""
        if not isinstance(arch, tuple):
            return [arch]
        return [arch[0]] if self.pinas is not None and not self.pinas.cross_path else list(arch)

    def paths_record(self, epoch):
        """What the epoch trained: MACs and params of every drawn path, and how often each block
        and channel id was drawn at each position (paths.jsonl; the report plots it)."""
        if not self.drawn:
            return None
        if self._costs is None:
            self._costs = self.sampler.limits.costs if self.sampler.limits else CostModel(self.space)
        costs = self._costs
        blocks = np.array([a.blocks for a in self.drawn])
        channels = np.array([a.channels for a in self.drawn])
        values = costs.values_many(np.array([a.genes for a in self.drawn]))

        def histogram(ids, n):
            return [np.bincount(column, minlength=n).tolist() for column in ids.T]
        learned = {}
        if self.learning is not None and self.samples:
            learned = {**self.sampler.learned.summary(), "samples_per_step": float(np.mean(self.samples))}
        return {"epoch": epoch, **learned, "macs": values[:, costs.index("macs")].astype(np.int64).tolist(),
                "params": values[:, costs.index("params")].astype(np.int64).tolist(),
                "block_counts": histogram(blocks, self.space.num_blocks),
                "channel_counts": histogram(channels, self.space.num_scales)}

    def before_step(self, arch):
        if isinstance(arch, tuple) and self.pinas is not None:   # the teacher's averages of what the step reads or moves
            self.pinas.catch_up(self.pinas.teacher_params(arch))
        self._path_losses = []

    def objective(self, x, y, arch, cross_entropy):
        """(logits, per-image loss) of the step on `arch` for the batch slice x, y."""
        if not isinstance(arch, tuple):
            out = self.net(x, arch)
            return out, cross_entropy(out, y)
        if self.pinas is not None:
            return self.pinas.objective(self.net, x, y, arch, cross_entropy)
        outs = [self.net(x, a) for a in arch]           # the learned distribution's K paths
        losses = [cross_entropy(o, y) for o in outs]
        self._path_losses.append(losses)                # per device: each path's loss, for its reward
        return outs[0], mx.nd.add_n(*losses) / len(losses)

    def after_update(self, arch, touched, workers):
        if not isinstance(arch, tuple):
            return
        if self.pinas is not None:
            self.pinas.after_update(touched)
            return
        sums = [sum(device[k].sum().asscalar() for device in self._path_losses) for k in range(len(arch))]
        images = sum(device[0].shape[0] for device in self._path_losses)
        totals = workers.sum(sums + [images])           # every worker: the same rewards
        rewards = -np.asarray(totals[:-1]) / totals[-1]
        self.sampler.learned.update([a.genes for a in arch], rewards, self.learning.lr)

    def end_epoch(self):
        if self.pinas is not None:
            self.pinas.catch_up()             # the checkpoint holds the exact average

    def touched(self, arch):
        """The trainable parameters a step on `arch` gives gradients to."""
        fixed, candidates = (self._bn_fixed, self._bn_candidates) if self.bn_only else (self._fixed, self._candidates)
        used = sorted({(p, b) for path in self._trained(arch) for p, b in enumerate(path.blocks)})
        return fixed + [q for p, b in used for q in candidates[p][b]]

    def validate(self, epoch, val_batches, contexts, workers, max_images, batch_size):
        paths = fixed_paths(self.sampler, self.val_paths, self.seed, self.plan[epoch])
        score = partial(evaluate, self.net, val_batches, workers, calibration=self.calibration,
                        contexts=contexts, pieces=self.pieces, max_images=max_images, batch_size=batch_size)
        results = [score(arch=a) for a in paths]
        record = summarise(results) if results else {}
        record["val_images"] = results[0]["images"] if results else 0
        record["val_paths"] = {str(a): round(r["top1"], 4) for a, r in zip(paths, results)}
        if self.reference is not None:
            ref = score(arch=self.reference)
            record.update(ref_top1=ref["top1"], ref_top5=ref["top5"])
        return record

    def describe(self):
        return {"kind": self.kind, "space": self.space.to_dict(), "plan": [list(ids) for ids in self.plan],
                "inherit": [self.inherit_epochs, str(self.inherit_path) if self.inherit_epochs else None],
                "budget": self.sampler.limits.to_dict() if self.sampler.limits else {},
                "sampler": self.sampler.kind,
                **({"blocks": [list(b) for b in self.sampler.block_ids]} if self.sampler.block_ids else {}),
                **({"fixed": {str(p): list(v) for p, v in sorted(self.sampler.fixed.items())}}
                   if self.sampler.fixed else {}),
                **({"bn_only_from": self.bn_only_from} if self.bn_only_from is not None else {}),
                **({"pinas": self.pinas.describe()} if self.pinas is not None else {}),
                **({"learning": vars(self.learning)} if self.learning is not None else {})}

    def state_dict(self):
        state = self.sampler.state_dict()
        if self.pinas is not None:
            state["pinas"] = self.pinas.state_dict()
        return state

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)
        if self.pinas is not None:
            self.pinas.load_state_dict(state["pinas"])

    def checkpoint_files(self):
        """Files the checkpoint keeps beside the network: {name: save(path)}."""
        if self.pinas is None or self.pinas.momentum == 0:
            return {}
        return {"teacher.params": lambda path: self.pinas.teacher.save_parameters(str(path))}

    def load_checkpoint_files(self, folder, contexts):
        if self.pinas is not None and self.pinas.momentum:
            self.pinas.attach(self.net)
            self.pinas.teacher.load_parameters(str(folder / "teacher.params"), ctx=contexts)


def _is_bn_affine(param):
    """A BatchNorm's scale or shift (what BN-NAS trains), not its running statistics."""
    return param.name.endswith(("_gamma", "_beta"))


class SubnetTask:
    """A fixed network (a SubNet or a reference net, hybridized by the caller): every step trains all of it."""
    kind = "subnet"

    def __init__(self, net):
        self.net = net
        self._trainable = [p for p in ordered_params(net) if p.grad_req != "null"]
        self.pieces = PathPieces(net)

    def start_epoch(self, epoch):
        return {}

    def draw(self, rng):
        return None

    def paths_record(self, epoch):
        return None

    def before_step(self, arch):
        pass

    def objective(self, x, y, arch, cross_entropy):
        out = self.net(x)
        return out, cross_entropy(out, y)

    def after_update(self, arch, touched, workers):
        pass

    def end_epoch(self):
        pass

    def touched(self, arch=None):
        return self._trainable

    def validate(self, epoch, val_batches, contexts, workers, max_images, batch_size):
        res = evaluate(self.net, val_batches, workers, contexts=contexts, pieces=self.pieces,
                       max_images=max_images, batch_size=batch_size)
        return {"val_top1": res["top1"], "val_top5": res["top5"], "val_images": res["images"]}

    def describe(self):
        net = self.net
        return {"kind": self.kind, "arch": str(net.arch) if hasattr(net, "arch") else net.reference_name}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def checkpoint_files(self):
        return {}

    def load_checkpoint_files(self, folder, contexts):
        pass
