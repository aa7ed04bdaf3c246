"""Start every candidate from one trained path ("inheritance"), so uniform sampling starts consistent.

Why: with independently initialised candidates, a uniformly sampled path mixes unrelated feature
spaces at every position, and on small problems supernet training sits at chance for thousands of
steps (seen on the `tiny` space with the digits, in MXNet and in a PyTorch re-implementation alike),
while any fixed path learns in a few dozen. Training one reference path first and copying it into
the other candidates removes that: candidates of the reference's family copy it (a larger depthwise
kernel gets the smaller one in its centre and zeros around it, a smaller one takes the centre crop);
candidates of another family copy the projection branch where shapes allow and start their main
branch as a no-op (last BatchNorm gamma and beta zero), so they join without disturbing the rest.
Uniform sampling then continues from there, as in SPOS.
"""
import logging

import mxnet as mx
import numpy as np

log = logging.getLogger(__name__)


def _fit_kernel(weight, kernel):
    """`weight` (O, I, k0, k0) resized to k x k: zero-padded around it or centre-cropped."""
    k0 = weight.shape[-1]
    if k0 == kernel:
        return weight
    if kernel > k0:
        out = np.zeros(weight.shape[:2] + (kernel, kernel), dtype=weight.dtype)
        o = (kernel - k0) // 2
        out[:, :, o:o + k0, o:o + k0] = weight
        return out
    o = (k0 - kernel) // 2
    return weight[:, :, o:o + kernel, o:o + kernel].copy()


def _copy_unit(source, target):
    """Copy a ConvUnit's conv (kernel fitted) and BN parameters/statistics into another ConvUnit."""
    weight = source.conv.weight.data().asnumpy()   # asnumpy: safe whatever layout oneDNN keeps it in
    _set(target.conv.weight, _fit_kernel(weight, target.conv.spec.kernel))
    if source.conv.bias is not None and target.conv.bias is not None:
        _set(target.conv.bias, source.conv.bias.data().asnumpy())
    if source.bn is not None and target.bn is not None:
        for name in ("gamma", "beta", "running_mean", "running_var"):
            _set(getattr(target.bn, name), getattr(source.bn, name).data().asnumpy())


def _set(param, value):
    param.set_data(mx.nd.array(value, dtype=param.dtype))


def _same_shapes(units_a, units_b):
    return len(units_a) == len(units_b) and all(
        a.conv.spec.c_in == b.conv.spec.c_in and a.conv.spec.c_out == b.conv.spec.c_out
        and a.conv.spec.depthwise == b.conv.spec.depthwise for a, b in zip(units_a, units_b))


def inherit_from_path(supernet, arch):
    """Initialise every candidate off the path `arch` from the candidate `arch` uses at its position.

    Returns the number of candidates initialised. Parameters on the path are left untouched.
    """
    changed = 0
    for row, b in zip(supernet.candidates, arch.blocks):
        reference = row[b]
        for candidate in row:
            if candidate is reference:
                continue
            if _same_shapes(candidate.proj, reference.proj):
                for s, t in zip(reference.proj, candidate.proj):
                    _copy_unit(s, t)
            if candidate.choice.family == reference.choice.family:
                for s, t in zip(reference.main, candidate.main):
                    _copy_unit(s, t)
                if reference.se is not None:
                    for s, t in zip(reference.se.collect_params().values(),
                                    candidate.se.collect_params().values()):
                        _set(t, s.data().asnumpy())
            else:
                last = candidate.main[-1].bn
                _set(last.gamma, np.zeros(last.gamma.shape, dtype=np.float32))
                _set(last.beta, np.zeros(last.beta.shape, dtype=np.float32))
            changed += 1
    log.info("initialised %d candidates from the path %s", changed, arch)
    return changed
