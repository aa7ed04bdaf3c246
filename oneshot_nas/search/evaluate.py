"""Scoring a supernet path: its weights, exactly recalibrated BatchNorm, top-1 on a held-out split.

Per candidate, the path is taken out of the supernet as one static graph, composed from its parts
(stem, blocks at their widths, head: the blocks a SubNet is made of, each traced once per search)
and fed the supernet's weights (narrowed ones are copied; nothing is initialised), so both passes
run at the speed of a hybridized standalone network:
1. recalibration: the graph runs in training mode (BatchNorm normalises with batch statistics, as
   in supernet training) and every BatchNorm also outputs its batch mean and inverse std. The
   running statistics are then set to the true averages over the whole calibration slice,
   E[x] and E[x^2] - E[x]^2 weighted by each batch's size, the same estimate as
   bn_calib.recalibrate_bn (which does it imperatively, about 4x slower);
2. evaluation: the same graph in inference mode with those statistics, top-1 on the search split.
The images of both slices are decoded once (uint8 in memory; see `ImageSlice`) and reused for every
candidate. By default the search split is held out of the TRAINING set, so the validation set
stays an honest final report.
"""
import json
import logging
import sys
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..nn.blocks import ChoiceBlock, Head, Stem
from ..data.sources import MEAN_RGB, STD_RGB
from ..errors import UserError
from ..sample.sampling import genes_arch

log = logging.getLogger(__name__)
HOLDOUT_SEED = 0            # the search split is the same for every search of a dataset
FLOAT_CACHE_BYTES = 1 << 30  # slices up to 1 GiB (as float32) are kept normalised in memory


# ----- the fixed slices of data -------------------------------------------------------------------
@dataclass
class SearchData:
    calibration: "ImageSlice"
    split: "ImageSlice"
    source: str                 # 'train' (held out of the training set) or 'val'


class ImageSlice:
    """Images decoded once: uint8 (N, 3, S, S) plus labels, served as normalised float32 batches.

    A slice that fits in FLOAT_CACHE_BYTES as float32 is normalised once; a larger one (20,000
    ImageNet images are 12 GB as float32, 3 GB as uint8) is normalised batch by batch.
    """

    def __init__(self, images, labels, keys=()):
        self.images, self.labels, self.keys = images, np.asarray(labels, dtype=np.int64), tuple(keys)
        self._normalised = normalise(images) if images.size * 4 <= FLOAT_CACHE_BYTES else None
        self._batches = {}

    def __len__(self):
        return self.images.shape[0]

    def batches(self, batch_size):
        """[(data, labels)] in batches of nearly equal size (at most `batch_size`), so that at most
        two batch shapes occur."""
        if batch_size not in self._batches:
            n = len(self)
            count = -(-n // batch_size)
            bounds = np.linspace(0, n, count + 1).round().astype(int)
            self._batches[batch_size] = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        for a, b in self._batches[batch_size]:
            data = (self._normalised[a:b] if self._normalised is not None
                    else normalise(self.images[a:b]))
            yield data, self.labels[a:b]


def normalise(images):
    """uint8 (N, 3, S, S) -> float32 with the dataset mean/std (data.py's validation transform)."""
    mean = mx.nd.array(MEAN_RGB).reshape((1, 3, 1, 1))
    std = mx.nd.array(STD_RGB).reshape((1, 3, 1, 1))
    return mx.nd.broadcast_div(mx.nd.broadcast_sub(images.astype("float32"), mean), std)


def decode_images(dataset, records, keys, input_size, progress=False):
    """The images of `records` at `keys`, with the validation transform of data.load_slice (resize
    the short side to size / crop_ratio, centre crop), as uint8 (N, 3, S, S) and labels."""
    resize = int(round(input_size / dataset.augmentation.crop_ratio))
    out = np.empty((len(keys), 3, input_size, input_size), dtype=np.uint8)
    labels = np.empty(len(keys), dtype=np.int64)
    reader = mx.recordio.MXIndexedRecordIO(str(records.idx), str(records.rec), "r")
    try:
        for i, key in enumerate(_progress(keys, progress, f"decoding {records.rec.name}")):
            header, payload = mx.recordio.unpack(reader.read_idx(key))
            img = mx.image.resize_short(mx.image.imdecode(payload), resize)
            img, _ = mx.image.center_crop(img, (input_size, input_size))
            out[i] = img.asnumpy().transpose(2, 0, 1)
            labels[i] = int(np.ravel(header.label)[0])
    except (KeyError, mx.base.MXNetError) as err:
        raise UserError(f"{records.rec} cannot be read at record {key} ({err}); regenerate it and its "
                        "index with im2rec") from None
    finally:
        reader.close()
    return mx.nd.array(out, dtype="uint8"), labels


def _progress(items, enabled, desc):
    """A tqdm bar over `items` when enabled and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, leave=False)


@dataclass(frozen=True)
class SplitPlan:
    """Which records rank candidates (`split_keys`, of the training file unless `source` is 'val')
    and which recalibrate BN (`calibration_keys`, always training records, never in the split)."""
    split_keys: tuple
    calibration_keys: tuple
    source: str


def plan_search_split(dataset, update_bn_images=None, search_val_images=None, search_on_val=False,
                      seed=HOLDOUT_SEED):
    """Choose the search split and the BN calibration slice (no decoding; bad counts fail here).

    Defaults: the split is min(10,000, 1/5 of the training set) training images held out; BN
    statistics come from min(20,000, all the rest) other training images. Both are drawn by one
    fixed permutation of the training records (the same for every search of a dataset), not taken
    from the end of the file: a class-sorted file would otherwise give a few classes only. With
    `search_on_val` the split is the first `search_val_images` validation images (all by default),
    which makes the final validation figure optimistic.
    """
    train_keys = dataset.train.keys()
    order = [train_keys[i] for i in np.random.default_rng(seed).permutation(len(train_keys))]
    if search_on_val:
        log.warning("--search-on-val: candidates are ranked on the validation set, so the validation "
                    "accuracy of the winner is no longer an unbiased estimate; report it as such")
        val_keys = dataset.val.keys()
        split = val_keys[:search_val_images] if search_val_images is not None else val_keys
        if not split:
            raise UserError(f"the search split is empty: {dataset.val.rec} holds {len(val_keys)} images "
                            f"and --search-val-images is {search_val_images}")
        rest = order
    else:
        count = min(10000, len(train_keys) // 5) if search_val_images is None else search_val_images
        if count <= 0:
            raise UserError(f"the search split is empty (--search-val-images {count}); hold out at least "
                            f"one training image, e.g. --search-val-images {max(1, len(train_keys) // 5)}")
        if count >= len(train_keys):
            raise UserError(f"--search-val-images {count} takes all {len(train_keys)} training images "
                            "and leaves none for BN recalibration; use fewer")
        split, rest = order[:count], order[count:]
    calib = min(20000 if update_bn_images is None else update_bn_images, len(rest))
    if calib <= 0:
        raise UserError(f"--update-bn-images {update_bn_images}: BN recalibration needs at least one image")
    return SplitPlan(tuple(sorted(split)), tuple(sorted(rest[:calib])), "val" if search_on_val else "train")


def load_search_data(dataset, plan, input_size, progress=False):
    """Decode the two slices of `plan` once (see ImageSlice)."""
    records = dataset.val if plan.source == "val" else dataset.train
    split = ImageSlice(*decode_images(dataset, records, plan.split_keys, input_size, progress),
                       keys=plan.split_keys)
    calibration = ImageSlice(*decode_images(dataset, dataset.train, plan.calibration_keys, input_size,
                                            progress), keys=plan.calibration_keys)
    log.info("search split: %d %s images; BN recalibration: %d training images (decoded once)",
             len(split), "validation" if plan.source == "val" else "held-out training", len(calibration))
    return SearchData(calibration, split, plan.source)


def prepare_search_data(dataset, input_size, update_bn_images=None, search_val_images=None,
                        search_on_val=False, progress=False):
    """plan_search_split, then load_search_data."""
    plan = plan_search_split(dataset, update_bn_images, search_val_images, search_on_val)
    return load_search_data(dataset, plan, input_size, progress)


# ----- one path as a static graph -----------------------------------------------------------------
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
        src, dst = list(source.collect_params().values()), list(block.collect_params().values())
        if len(src) != len(dst):
            raise ValueError(f"{source.name} has {len(src)} parameters but {block.name} has {len(dst)}")
        self.params = [(d.name, s, d.shape) for s, d in zip(src, dst)]


class PathPieces:
    """The parts of the paths of one supernet, each traced once and reused by every path that
    contains it (a search revisits the same blocks at the same widths all the time)."""

    def __init__(self, supernet):
        self.supernet, self._cache = supernet, {}

    def path(self, arch):
        net, space = self.supernet, self.supernet.space
        sources = net.path_blocks(arch)              # (also checks that arch is of this space)
        pieces = [self._get("stem", lambda: Stem(space, prefix="stem_"), net.stem)]
        for p, (b, mid, source) in enumerate(zip(arch.blocks, arch.mids, sources)):
            pieces.append(self._get((p, b, mid), lambda: ChoiceBlock(
                space.block_choices[b], space.positions[p], mid, prefix=f"p{p}b{b}m{mid}_"), source))
        pieces.append(self._get("head", lambda: Head(space, prefix="head_"), net.head))
        return pieces

    def _get(self, key, make, source):
        if key not in self._cache:
            self._cache[key] = _Piece(make(), source)
        return self._cache[key]


class PathGraph:
    """The path `arch` of `supernet` as one cached static graph with copies of its weights on every
    context; `calibrate` sets its BN statistics, `predict` runs it. Its parts are the blocks a
    SubNet of `arch` is made of, so it computes what the extracted SubNet computes."""

    def __init__(self, supernet, arch, contexts, pieces=None):
        self.contexts = list(contexts)
        pieces = (pieces or PathPieces(supernet)).path(arch)
        x, means, inv_stds, self.bns = mx.sym.var("data"), [], [], []
        for piece in pieces:
            out, k = piece.symbol(data=x), len(piece.bns)
            x = out[0]
            means += [out[1 + i] for i in range(k)]
            inv_stds += [out[1 + k + i] for i in range(k)]
            self.bns += [bn[1:] for bn in piece.bns]
        outputs = [x] + ([mx.sym.concat(*means, dim=0), mx.sym.concat(*inv_stds, dim=0)] if means else [])
        group = mx.sym.Group(outputs)
        self.op = mx.nd.CachedOp(group)
        self.inputs = group.list_inputs()
        self.arrays = _path_arrays(pieces, supernet, self.contexts)
        self.channels = [self.arrays[self.contexts[0]][m].shape[0] for m, _, _ in self.bns]
        self.eps = np.repeat([e for *_, e in self.bns], self.channels)
        for ctx in self.contexts:    # own copies: training-mode BN may write its aux inputs
            for m, v, _ in self.bns:
                for name in (m, v):
                    self.arrays[ctx][name] = self.arrays[ctx][name].copy()

    def _run(self, x, ctx):
        arrays = self.arrays[ctx]
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

    def correct(self, batches):
        """(top-1 correct, images) over (data, labels) batches."""
        right = seen = 0
        for data, labels in batches:
            pred = self.predict(data).argmax(axis=1).asnumpy().astype(np.int64)
            right += int((pred == labels).sum())
            seen += len(labels)
        return right, seen


def _path_arrays(pieces, supernet, contexts):
    """{ctx: {parameter name: NDArray}}: the supernet's weights of the path, cut to the path's
    widths with slice_axis (never views: oneDNN keeps weights in blocked layouts)."""
    source_ctx = supernet.stem.collect_params().list_ctx()[0]
    arrays = {ctx: {} for ctx in contexts}
    for piece in pieces:
        for name, param, shape in piece.params:
            data = param.data(source_ctx)
            for axis, size in enumerate(shape):
                if data.shape[axis] != size:
                    data = mx.nd.slice_axis(data, axis=axis, begin=0, end=size)
            for ctx in contexts:
                arrays[ctx][name] = data if ctx == source_ctx else data.as_in_context(ctx)
    return arrays


# ----- candidates ---------------------------------------------------------------------------------
class CandidateEvaluator:
    """Top-1 of supernet paths on a search split after exact BN recalibration, on `contexts`."""

    def __init__(self, supernet, data, contexts, batch_size=128):
        if len(data.split) == 0:
            raise UserError("the search split is empty; hold out some images with --search-val-images")
        self.supernet, self.data, self.contexts = supernet, data, list(contexts)
        self.batch_size = batch_size
        self.pieces = PathPieces(supernet)

    def evaluate(self, arch):
        """{accuracy, correct, images, extract_seconds, recal_seconds, eval_seconds} of `arch`."""
        t0 = time.perf_counter()
        graph = PathGraph(self.supernet, arch, self.contexts, self.pieces)
        t1 = time.perf_counter()
        graph.calibrate(self.data.calibration.batches(self.batch_size))
        t2 = time.perf_counter()
        right, seen = graph.correct(self.data.split.batches(self.batch_size))
        t3 = time.perf_counter()
        return {"accuracy": right / seen, "correct": right, "images": seen,
                "extract_seconds": t1 - t0, "recal_seconds": t2 - t1, "eval_seconds": t3 - t2}


# ----- workers --------------------------------------------------------------------------------------
class Workers:
    """This process's share of each batch of candidates, and the gathering of every worker's
    results through a dist kvstore (launched by MXNet's launch.py), so all workers hold all
    scores. Without a kvstore there is one worker and gathering is a no-op."""

    def __init__(self, kv=None):
        self.kv = kv
        self.rank = kv.rank if kv is not None else 0
        self.size = kv.num_workers if kv is not None else 1
        self._calls = 0

    def barrier(self):
        """Wait until every worker gets here."""
        if self.kv is not None:
            self.kv._barrier()        # (KVStore's barrier is private in 1.x, stable since 0.9)

    def all_ok(self, ok):
        """True when every worker passes ok=True (each must call this at the same point)."""
        rows = np.zeros((self.size, 1))
        rows[self.rank] = 1.0 if ok else 0.0
        return bool(self.gather(rows).min() > 0.5)

    def mine(self, count):
        """Indices of the candidates this worker scores (round-robin)."""
        return list(range(self.rank, count, self.size))

    def gather(self, rows):
        """rows: (count, fields) float64, filled only in this worker's rows (zeros elsewhere);
        returns the sum over workers, i.e. every row filled. The same order of calls on all workers."""
        rows = np.asarray(rows, dtype=np.float64)
        if self.kv is None or rows.size == 0:
            return rows
        key = f"search-gather-{self._calls}"
        self._calls += 1
        self.kv.init(key, mx.nd.zeros(rows.size, dtype="float64"))
        self.kv.push(key, mx.nd.array(rows.ravel(), dtype="float64"))
        out = mx.nd.zeros(rows.size, dtype="float64")
        self.kv.pull(key, out=out)
        return out.asnumpy().reshape(rows.shape)


# ----- the score function of a search -------------------------------------------------------------
FIELDS = ("accuracy", "correct", "images", "bn_score", "extract_seconds", "recal_seconds",
          "eval_seconds", "seconds")


class SupernetScorer:
    """`score_many` for search.genetic_search / random_search over architecture genes.

    Each worker scores its share of a batch (accuracy after recalibration with `evaluator`, or only
    the zero-cost BN score when `evaluator` is None), the rows are gathered so every worker has
    every score, and each candidate becomes a record: arch, macs, params, micronet_score,
    latency_ms, accuracy, bn_score, score (the objective), seconds, worker.
    """

    def __init__(self, space, costs, objective, bn_scores, evaluator=None, workers=None, progress=True):
        self.space, self.costs, self.objective = space, costs, objective
        self.bn_scores, self.evaluator = bn_scores, evaluator
        self.workers = workers or Workers()
        self.progress = progress
        self.label = "scoring"          # the progress bar's title (the caller names the generation)

    def __call__(self, genes_list):
        archs = [genes_arch(self.space, g) for g in genes_list]
        rows = np.zeros((len(archs), len(FIELDS) + 1))
        mine = self.workers.mine(len(archs))
        for i in _progress(mine, self.progress and self.evaluator is not None, self.label):
            start = time.perf_counter()
            result = self.evaluator.evaluate(archs[i]) if self.evaluator else {}
            result["bn_score"] = self.bn_scores.score(archs[i])
            result["seconds"] = time.perf_counter() - start
            rows[i, :-1] = [result.get(f, np.nan) for f in FIELDS]
            rows[i, -1] = self.workers.rank + 1
        rows = self.workers.gather(np.nan_to_num(rows, nan=-1.0))
        return [self._record(arch, row) for arch, row in zip(archs, rows)]

    def _record(self, arch, row):
        values = self.costs.measure(list(arch.blocks) + list(arch.channels))
        result = dict(zip(FIELDS, row[:-1]))
        accuracy = float(result["accuracy"]) if self.evaluator else None
        score = self.objective(accuracy, values) if self.evaluator else float(result["bn_score"])
        record = {"arch": str(arch), "macs": int(round(values["macs"])),
                  "params": int(round(values["params"])), "micronet_score": values["score"],
                  "latency_ms": values.get("latency_ms"), "accuracy": accuracy,
                  "bn_score": float(result["bn_score"]), "score": score,
                  "seconds": round(float(result["seconds"]), 4), "worker": int(row[-1]) - 1}
        if self.evaluator:
            record.update(correct=int(result["correct"]), images=int(result["images"]),
                          **{k: round(float(result[k]), 4) for k in FIELDS[4:7]})
        return record
