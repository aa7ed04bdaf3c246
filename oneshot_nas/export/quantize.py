"""int8 inference: MXNet's post-training quantization of an exported symbol, with oneDNN on CPU.

The fp32 symbol is fused and quantized for oneDNN (`quantize_model_mkldnn`: conv+BN+ReLU become one
int8 oneDNN convolution), and each layer's output range is calibrated on a few batches of training
images decoded with the validation transform. Then fp32 and int8 are compared where it matters: top-1
on the validation set and CPU latency at batch 1 and batch 32.
"""
import logging
import warnings

import mxnet as mx
import numpy as np
from mxnet.contrib import quantization

from ..data.iterators import val_iter
from ..cost.timing import time_ms

log = logging.getLogger(__name__)

# MXNet 1.9's quantized elementwise multiply accepts only int8 inputs, but a hard-swish input
# (x * hard_sigmoid(x)) calibrated as non-negative arrives as uint8 and the int8 graph then fails
# at run time ("data type do not match"). The multiplies stay in fp32; the convolutions and the
# classifier, where the work is, are quantized.
EXCLUDED_OPS = ("elemwise_mul",)


def quantize_symbol(sym, arg_params, aux_params, calib_data, calib_mode="naive", batch_size=32,
                    granularity="channel-wise"):
    """(qsym, qarg_params, qaux_params): the int8 model of an fp32 symbol.

    `calib_data` is an NDArray of preprocessed images (N, 3, S, S); `calib_mode` 'naive' takes each
    layer's min/max over them, 'entropy' minimises the KL divergence of the quantized outputs.
    """
    if calib_mode not in ("naive", "entropy"):
        raise ValueError(f"calib_mode must be 'naive' or 'entropy', not {calib_mode!r}")
    calib = mx.io.NDArrayIter(calib_data.as_in_context(mx.cpu()), batch_size=min(batch_size, len(calib_data)))
    qsym, qargs, qauxs = quantization.quantize_model_mkldnn(
        sym, arg_params, aux_params, data_names=("data",), label_names=None, ctx=mx.cpu(),
        excluded_op_names=list(EXCLUDED_OPS), calib_mode=calib_mode, calib_data=calib,
        num_calib_examples=len(calib_data), quantized_dtype="auto", quantize_mode="smart",
        quantize_granularity=granularity)
    return qsym, qargs, qauxs


def load_symbol_block(symbol_file, params_file, ctx=None):
    """A SymbolBlock from an exported symbol and its parameters (input 'data')."""
    with warnings.catch_warnings():   # "cannot decide type for data": it is set by the first call
        warnings.simplefilter("ignore", UserWarning)
        return mx.gluon.SymbolBlock.imports(str(symbol_file), ["data"], str(params_file),
                                            ctx=ctx or mx.cpu())


def top1(block, dataset, input_size, batch_size=64, limit=None):
    """(top-1 accuracy, images) of `block` on the validation records (wrapped-around repeats of the
    last batch are not counted)."""
    it = val_iter(dataset, batch_size, input_size)
    correct = seen = 0
    for batch in it:
        out = block(batch.data[0].as_in_context(mx.cpu())).asnumpy()
        labels = batch.label[0].asnumpy().astype(np.int64)
        keep = len(labels) - batch.pad
        if limit is not None:
            keep = min(keep, limit - seen)
        correct += int((out[:keep].argmax(axis=1) == labels[:keep]).sum())
        seen += keep
        if limit is not None and seen >= limit:
            break
    return correct / max(seen, 1), seen


def latency(block, input_size, batch_size, repeats=20, warmup=3):
    """Median seconds of one forward pass at `batch_size` (after `warmup` untimed passes)."""
    x = mx.nd.array(np.random.default_rng(0).normal(size=(batch_size, 3, input_size, input_size)))
    return time_ms(block, x, repeats, warmup) / 1e3


def compare(fp32, int8, dataset, input_size, batch_sizes=(1, 32), repeats=20, val_limit=None):
    """Top-1 of both models on `dataset`'s validation set and their latency at each batch size.

    The fp32 model runs with the same oneDNN graph fusion (conv+BN+activation) the int8 model got,
    so the speed-up measures the precision alone, not the fusion.
    """
    result = {}
    fp32.hybridize(backend="MKLDNN", static_alloc=True, static_shape=True)
    int8.hybridize(static_alloc=True, static_shape=True)
    for kind, block in (("fp32", fp32), ("int8", int8)):
        log.info("%s: evaluating on %s validation images of %s", kind, val_limit or "all",
                 dataset.name)
        accuracy, images = top1(block, dataset, input_size, limit=val_limit)
        result[kind] = {"top1": accuracy, "val_images": images}
        for b in batch_sizes:
            result[kind][f"latency_ms_batch{b}"] = 1000 * latency(block, input_size, b, repeats)
        log.info("%s: top-1 %.4f on %d images; %s", kind, accuracy, images,
                 ", ".join(f"batch {b} {result[kind][f'latency_ms_batch{b}']:.2f} ms" for b in batch_sizes))
    result["top1_delta"] = result["int8"]["top1"] - result["fp32"]["top1"]
    for b in batch_sizes:
        result[f"speedup_batch{b}"] = (result["fp32"][f"latency_ms_batch{b}"]
                                       / result["int8"][f"latency_ms_batch{b}"])
    return result
