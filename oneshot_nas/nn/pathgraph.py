"""A path of a network as one static graph: the one way to recalibrate BatchNorm and score a path.

A path of a SuperNet (or a whole SubNet) is composed from its parts (stem, one block per position at
its width, head: the blocks a SubNet is made of), each traced once and reused by every path that
contains it, and fed copies of the network's weights (narrowed ones are sliced; nothing is
initialised), so it runs at the speed of a hybridized standalone network and never touches the
network it came from:
1. `calibrate`: the graph runs in training mode (BatchNorm normalises with batch statistics, as in
   supernet training) and every BatchNorm also outputs its batch mean and inverse std. The running
   statistics are then set to the true averages over the whole slice, E[x] and E[x^2] - E[x]^2
   weighted by each batch's size, not a momentum average dominated by the last batches (and on this
   oneDNN build BatchNorm would move its statistics only in backward() anyway);
2. `predict` / `counts`: the same graph in inference mode with those statistics.
Training validation, search and export all score paths this way. `store_statistics` writes the
calibrated statistics into a SubNet (an exported path keeps them).
"""
import json

import mxnet as mx
import numpy as np
from mxnet import autograd

from .. import recipe
from ..errors import UserError
from .blocks import ChoiceBlock, Head, Stem
from .subnet import SubNet, paired_params
from .supernet import SuperNet


class _Piece:
    """One part of a path (the stem, one block at one width, the head) traced once as a symbol
    whose outputs are the part's output, then each BatchNorm's batch mean, then its inverse std;
    `params` maps the symbol's parameters to the supernet's ((name, Parameter, shape))."""

    def __init__(self, block, source):
        symbol = block(mx.sym.var("data"))
        graph = json.loads(symbol.tojson())
        nodes, self.bns = graph["nodes"], []        # (node, running mean name, running var name, eps)
        for node in nodes:
            if node["op"] == "BatchNorm":
                attrs = node.setdefault("attrs", {})
                attrs["output_mean_var"] = "True"    # in training mode: the batch mean and 1/std
                self.bns.append((node["name"], nodes[node["inputs"][3][0]]["name"],
                                 nodes[node["inputs"][4][0]]["name"], float(attrs.get("eps", 1e-3))))
        internals = mx.sym.load_json(json.dumps(graph)).get_internals()
        index = {name: i for i, name in enumerate(internals.list_outputs())}   # (by name is O(n))
        names = [symbol.list_outputs()[0]] + [f"{n}_{k}" for k in ("mean", "var") for n, *_ in self.bns]
        self.symbol = mx.sym.Group([internals[index[n]] for n in names])
        self.params = [(d.name, s, d.shape) for s, d in paired_params(source, block)]
        self.kept = {}      # (name, contexts) -> {ctx: weight copy}, kept by frozen PathPieces


class PathPieces:
    """The parts of the paths of one network (a SuperNet, or a SubNet whose one path is itself),
    each traced once and reused by every path that contains it (a search revisits the same blocks
    at the same widths all the time; training validation scores the same ones every epoch). Any
    other HybridBlock (a reference net, nn/plain.py) is one piece, its own only path.

    With `frozen` (a search: the network no longer trains), each piece also keeps the copies of
    its weights it was first given, per context, and every later path shares them; only the
    BatchNorm statistics, which each path calibrates for itself, are copied per path."""

    def __init__(self, net, frozen=False):
        if not isinstance(net, (SuperNet, SubNet, mx.gluon.HybridBlock)):
            raise TypeError(f"path graphs are made of a SuperNet, a SubNet or another HybridBlock, "
                            f"not {type(net).__name__}")
        if isinstance(net, SubNet) and net.fold_bn:
            raise ValueError("a merged-BN SubNet has no BatchNorm to score a path with; use the original")
        self.net, self._cache, self.frozen = net, {}, frozen
        self._contexts = None
        self.whole = not isinstance(net, (SuperNet, SubNet))

    def contexts(self):
        """The contexts the network's parameters live on, looked up once (collect_params walks
        every block of a supernet: tens of milliseconds, more than composing a path)."""
        if self._contexts is None:
            self._contexts = self.net.collect_params().list_ctx()
        return self._contexts

    def sources(self, arch):
        """(arch, the net's blocks on the path, one per position): their parameters are cut to the
        path's widths as they are copied."""
        net = self.net
        if isinstance(net, SuperNet):
            return arch, net.path_candidates(arch)      # (also checks that arch is of this space)
        if arch is not None and arch != net.arch:
            raise UserError(f"this network is {net.arch}; it has no path {arch}")
        return net.arch, list(net.features)

    def path(self, arch=None):
        if self.whole:
            if arch is not None:
                raise UserError(f"{self.net.name} is not made of paths; it has no path {arch}")
            return [self._get("net", lambda: self.net, self.net)]
        arch, sources = self.sources(arch)
        net, space = self.net, arch.space
        pieces = [self._get("stem", lambda: Stem(space, prefix="stem_"), net.stem)]
        for p, (b, mid, q, position, source) in enumerate(zip(arch.blocks, arch.mids, recipe.path_precisions(arch),
                                                              arch.positions, sources)):
            pieces.append(self._get((p, b, mid, q, position.se), lambda: ChoiceBlock(
                space.block_choices[b], position, mid, precision=q, prefix=f"p{p}b{b}m{mid}_"), source))
        pieces.append(self._get("head", lambda: Head(space, prefix="head_"), net.head))
        return pieces

    def _get(self, key, make, source):
        if key not in self._cache:
            self._cache[key] = _Piece(make(), source)
        return self._cache[key]


class PathGraph:
    """The path `arch` of `net` (a SuperNet; for a SubNet, its only path) as one cached static
    graph with copies of its weights on every context; `calibrate` sets its BN statistics,
    `predict` and `counts` run it. Its parts are the blocks a SubNet of `arch` is made of, so it
    computes what the extracted SubNet computes."""

    def __init__(self, net, arch=None, contexts=None, pieces=None):
        pieces = pieces or PathPieces(net)
        self.net = net
        self.contexts = list(contexts or pieces.contexts())
        self.pieces = pieces.path(arch)
        x, means, inv_stds, self.bns = mx.sym.var("data"), [], [], []
        for piece in self.pieces:
            out, k = piece.symbol(data=x), len(piece.bns)
            x = out[0]
            means += [out[1 + i] for i in range(k)]
            inv_stds += [out[1 + k + i] for i in range(k)]
            self.bns += [bn[1:] for bn in piece.bns]
        outputs = [x] + ([mx.sym.concat(*means, dim=0), mx.sym.concat(*inv_stds, dim=0)] if means else [])
        group = mx.sym.Group(outputs)
        self.op = mx.nd.CachedOp(group)
        self.inputs = group.list_inputs()
        self.arrays = _path_arrays(self.pieces, pieces.contexts()[0], self.contexts, pieces.frozen)
        self.dtype = self.arrays[self.contexts[0]][self.pieces[0].params[0][0]].dtype   # the stem weight's
        self.channels = [self.arrays[self.contexts[0]][m].shape[0] for m, _, _ in self.bns]
        self.eps = np.repeat([e for *_, e in self.bns], self.channels)

    def _run(self, x, ctx):
        arrays = self.arrays[ctx]
        x = x.astype(self.dtype, copy=False)
        return self.op(*[x if name == "data" else arrays[name] for name in self.inputs])

    def _parts(self, data):
        return mx.gluon.utils.split_and_load(data, self.contexts, even_split=False)
    def calibrate(self, batches):
        """Set every BN's running statistics to the exact mean/variance over all `batches`
        (data NDArrays or (data, labels) pairs); returns the number of images."""
        total_mean = total_sq = None
        images = 0
        with autograd.train_mode():
            for batch in batches:
                data = batch[0] if isinstance(batch, tuple) else batch
                parts = self._parts(data)
                outs = [(part.shape[0], self._run(part, ctx)) for part, ctx in zip(parts, self.contexts)]
                for n, out in outs:
                    mean = out[1].asnumpy().astype(np.float64)
                    var = 1.0 / np.square(out[2].asnumpy().astype(np.float64)) - self.eps
                    sq = (var + mean * mean) * n
                    total_mean = mean * n if total_mean is None else total_mean + mean * n
                    total_sq = sq if total_sq is None else total_sq + sq
                    images += n
        if images == 0:
            raise UserError("BN recalibration got no images: the calibration slice is empty")
        mean = total_mean / images
        var = np.maximum(total_sq / images - mean * mean, 0.0)
        start = 0
        for (mean_name, var_name, _), c in zip(self.bns, self.channels):
            for ctx in self.contexts:
                self.arrays[ctx][mean_name][:] = mean[start:start + c]
                self.arrays[ctx][var_name][:] = var[start:start + c]
            start += c
        return images

    def running_stats(self):
        """{(running mean name, running var name): (mean, var)} as numpy arrays (for tests)."""
        arrays = self.arrays[self.contexts[0]]
        return {(m, v): (arrays[m].asnumpy(), arrays[v].asnumpy()) for m, v, _ in self.bns}

    def predict(self, data):
        """Logits of `data` (inference mode, running statistics), gathered on the CPU."""
        outs = [self._run(part, ctx)[0] for part, ctx in zip(self._parts(data), self.contexts)]
        return mx.nd.concat(*[o.as_in_context(mx.cpu()) for o in outs], dim=0)

    def counts(self, batches, k=5, nll=False):
        """(top-1 hits, top-k hits, images) over (data, labels) batches (MXNet's accuracy metrics,
        kept as counts so that workers can add them up); with `nll`, also the summed cross-entropy
        of the true labels (a finer score than top-1, which ties on an easy split)."""
        top1, topk, nll_sum = mx.metric.Accuracy(), None, 0.0
        for data, labels in batches:
            logits = self.predict(data).astype("float32")
            if nll:
                nll_sum += float(-mx.nd.pick(mx.nd.log_softmax(logits, axis=1),
                                             mx.nd.array(labels), axis=1).sum().asscalar())
            labels = [mx.nd.array(labels)]
            top1.update(labels, [logits])
            if topk is None and min(k, logits.shape[1]) > 1:
                topk = mx.metric.TopKAccuracy(top_k=min(k, logits.shape[1]))
            if topk is not None:
                topk.update(labels, [logits])
        hits_k = top1.sum_metric if topk is None else topk.sum_metric
        out = int(top1.sum_metric), int(hits_k), int(top1.num_inst)
        return out + (nll_sum,) if nll else out

    def store_statistics(self):
        """Write the calibrated running statistics into the SubNet this graph was made of (e.g. a
        path extract_subnet copied out of a supernet), which then computes what the graph does."""
        if not isinstance(self.net, SubNet):
            raise TypeError("statistics are stored into a SubNet only (a supernet's are shared by every path)")
        sources = {name: param for piece in self.pieces for name, param, _ in piece.params}
        arrays = self.arrays[self.contexts[0]]
        for mean_name, var_name, _ in self.bns:
            for name in (mean_name, var_name):
                sources[name].set_data(arrays[name])


def _path_arrays(pieces, source_ctx, contexts, frozen=False):
    """{ctx: {parameter name: NDArray}}: copies of the network's weights of the path, cut to the
    path's widths with slice_axis (never views: oneDNN keeps weights in blocked layouts). Always
    copies: a oneDNN inference pass re-lays out the weight arrays it is given, and a training
    network whose arrays were re-laid out no longer trains bit-for-bit as one loaded from a
    checkpoint (exact resume). With `frozen`, a piece's weight copies are made once and shared by
    every path that contains it (the BatchNorm statistics are always this path's own copies)."""
    arrays = {ctx: {} for ctx in contexts}
    for piece in pieces:
        statistics = {name for _, mean, var, _ in piece.bns for name in (mean, var)}
        for name, param, shape in piece.params:
            kept = frozen and name not in statistics and piece.kept.get((name, tuple(contexts)))
            if kept:
                for ctx in contexts:
                    arrays[ctx][name] = kept[ctx]
                continue
            data, copied = param.data(source_ctx), False
            for axis, size in enumerate(shape):
                if data.shape[axis] != size:
                    data, copied = mx.nd.slice_axis(data, axis=axis, begin=0, end=size), True
            for ctx in contexts:     # slice_axis already copied: on its own context, no second copy
                arrays[ctx][name] = data if copied and ctx == source_ctx else data.copyto(ctx)
            if frozen and name not in statistics:
                piece.kept[(name, tuple(contexts))] = {ctx: arrays[ctx][name] for ctx in contexts}
    return arrays


