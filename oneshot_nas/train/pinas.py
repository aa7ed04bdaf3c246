"""Pi-NAS (Peng et al., ICCV 2021) in its supervised form: cross-path learning and a mean teacher.

Pi-NAS blames poor supernet rankings on two shifts: a layer's input changes with the random path
in front of it (feature shift), and a shared weight is pulled in different directions by different
paths from step to step (parameter shift). Against each, one option of supernet training:

- **Cross-path learning** (`cross_path` = weight w > 0): every step trains two paths a, b on the same
  batch, and the loss of an image is
      (CE(a) + CE(b)) / 2  +  w * || softmax(a) - softmax(b) ||^2
  (the Pi-model's consistency: squared distance between the two paths' class probabilities; zero
  when both paths agree). The step costs two forward and backward passes.
- **Mean teacher with negative samples** (`teacher_momentum` = m > 0): a second supernet whose
  weights are the exponential moving average of the trained ones, theta' <- m theta' + (1 - m) theta
  after every update. The student's output on path a is pulled towards the teacher's output on
  path b for the same image, and pushed away from the teacher's outputs on the batch's images of
  other classes (the negatives): supervised InfoNCE on L2-normalised logits at temperature t
  (the positives of an image are the teacher's outputs of its class in the batch, itself among
  them: with labels, two images of one class are not pushed apart), weighted by `teacher_weight`. With cross-path learning it is symmetric (a against the teacher's b, b against
  the teacher's a); without it, b is a second drawn path the student does not train. The teacher
  runs without gradients, with batch statistics in its BatchNorms.

The paper's unsupervised form (no labels, a queue of negatives, augmentation pairs) is not built:
our data pipeline gives one view per image, and the supervised loss is what the search ranks.

The EMA is exact but lazy: a parameter the step does not move is unchanged, so its average only
needs `k` pending steps at once, theta' <- m^k theta' + (1 - m^k) theta, applied when a step first
uses it again (by the student before its update, or by the teacher before its forward) and for
every parameter at the end of an epoch, so the checkpoint holds the exact average.
"""
import mxnet as mx
import numpy as np
from mxnet import autograd

from ..nn.supernet import SuperNet
from .settings import cast_for_training, ordered_params


class PiNAS:
    """The Pi-NAS options of one supernet training run (see the module's docstring)."""

    def __init__(self, cross_path=0.0, teacher_momentum=0.0, teacher_weight=1.0, temperature=0.2):
        if cross_path < 0 or not 0 <= teacher_momentum < 1 or teacher_weight < 0 or temperature <= 0:
            raise ValueError("Pi-NAS: cross_path >= 0, 0 <= teacher_momentum < 1, teacher_weight >= 0, "
                             "temperature > 0")
        self.cross_path, self.momentum = cross_path, teacher_momentum
        self.teacher_weight, self.temperature = teacher_weight, temperature
        self.teacher = None          # a SuperNet, made on the student's devices when training starts
        self.step = 0                # updates so far; the teacher is exact as of `_done[i]` for parameter i
        self._done = None

    @property
    def two_paths(self):
        return self.cross_path > 0 or self.momentum > 0

    def describe(self):
        return {"cross_path": self.cross_path, "teacher_momentum": self.momentum,
                "teacher_weight": self.teacher_weight if self.momentum else None,
                "temperature": self.temperature if self.momentum else None}

    # ----- the teacher's weights -------------------------------------------------------------------
    def attach(self, student):
        """Make the teacher (a copy of `student`'s current weights) if there is none yet."""
        self._student = student
        if not self.momentum or self.teacher is not None:
            return
        contexts = ordered_params(student)[0].list_ctx()
        teacher = SuperNet(student.space, prefix="teacher_")
        teacher.initialize(mx.init.Zero(), ctx=contexts)
        cast_for_training(teacher, np.dtype(ordered_params(student)[0].dtype).name)
        if student._hybridize:
            teacher.hybridize(static_alloc=True)
        self.teacher = teacher
        # the BatchNorm statistics are not averaged: the teacher normalises with batch statistics
        self._pairs = [(s, t) for s, t in zip(ordered_params(student), ordered_params(teacher))
                       if not s.name.endswith(("running_mean", "running_var"))]
        self._index = {id(s): i for i, (s, _) in enumerate(self._pairs)}
        self.reset()

    def reset(self):
        """The teacher becomes the student (at the start, and when the inherited path is copied)."""
        if self.teacher is None:
            return
        for s, t in self._pairs:
            for ctx in s.list_ctx():
                s.data(ctx).copyto(t.data(ctx))
        self._done = [self.step] * len(self._pairs)

    def catch_up(self, params=None):
        """Bring the teacher's average of `params` (default: all) up to date with the student,
        whose values have not changed since the average was last exact."""
        if self.teacher is None:
            return
        indices = (range(len(self._pairs)) if params is None
                   else [self._index[id(p)] for p in params if id(p) in self._index])
        for i in indices:
            pending = self.step - self._done[i]
            if pending:
                self._average(i, self.momentum ** pending)

    def after_update(self, touched):
        """One EMA step for the parameters the update moved (already caught up before it)."""
        self.step += 1
        if self.teacher is None:
            return
        for p in touched:
            self._average(self._index[id(p)], self.momentum)

    def _average(self, i, keep):
        s, t = self._pairs[i]
        for ctx in s.list_ctx():
            target = t.data(ctx)
            target[:] = target * keep + s.data(ctx) * (1 - keep)
        self._done[i] = self.step

    def teacher_params(self, paths):
        """The student parameters whose averages the teacher's forward on `paths` reads."""
        blocks = [self._student.stem, self._student.head]
        for arch in paths:
            blocks += self._student.path_candidates(arch)
        return [p for b in blocks for p in b.collect_params().values()]

    # ----- the loss --------------------------------------------------------------------------------
    def objective(self, net, x, y, paths, cross_entropy):
        """(the first path's logits, the per-image loss) for the step on `paths` = (a, b)."""
        a, b = paths
        out_a = net(x, a)
        loss = cross_entropy(out_a, y)
        out_b = None
        if self.cross_path:
            out_b = net(x, b)
            loss = (loss + cross_entropy(out_b, y)) / 2
            diff = mx.nd.softmax(out_a.astype("float32")) - mx.nd.softmax(out_b.astype("float32"))
            loss = loss + self.cross_path * (diff * diff).sum(axis=1)
        if self.teacher is not None:
            with autograd.pause(train_mode=True):
                teacher_b = self.teacher(x, b)
                teacher_a = self.teacher(x, a) if out_b is not None else None
            contrast = info_nce(out_a, teacher_b, self.temperature, y)
            if out_b is not None:
                contrast = (contrast + info_nce(out_b, teacher_a, self.temperature, y)) / 2
            loss = loss + self.teacher_weight * contrast
        return out_a, loss

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]
        if self._done is not None:
            self._done = [self.step] * len(self._done)


def info_nce(queries, keys, temperature, labels=None):
    """Per row i, with s_ij = cos(q_i, k_j) / t (keys carry no gradient):
    -log softmax_j(s_ij)[i], or with `labels`, the mean of -log softmax_j(s_ij)[p] over the keys p of
    i's class (its own among them), so that images of one class are not pushed apart."""
    q = mx.nd.L2Normalization(queries.astype("float32"), mode="instance")
    k = mx.nd.L2Normalization(keys.astype("float32"), mode="instance").detach()
    log_p = mx.nd.log_softmax(mx.nd.dot(q, k, transpose_b=True) / temperature, axis=1)
    if labels is None:
        positive = mx.nd.eye(q.shape[0], ctx=q.context)
    else:
        labels = labels.astype("float32").reshape((-1, 1))
        positive = mx.nd.broadcast_equal(labels, labels.reshape((1, -1)))
    return -(log_p * positive).sum(axis=1) / positive.sum(axis=1)
