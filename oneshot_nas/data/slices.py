"""Fixed slices of a dataset decoded once into memory, and how they are chosen.

One decoder and one validation transform (resize the short side to size / crop_ratio with the
bilinear filter ImageRecordIter uses, centre crop, normalise with the dataset mean/std) serve every
fixed slice: the images that recalibrate BatchNorm in training validation, search and export, the
search split, the export checks and int8 calibration. Slices are kept as uint8 (N, 3, S, S) and
served as normalised float32 batches.

Which training images form a slice is decided one way: a fixed permutation of the training records
(the same for every run on a dataset), so a class-sorted file still gives a mixed slice. The search
split takes the first images of that order; a second split (to re-score the best candidates on
other images) the next ones; BN calibration the ones after both, so the three never overlap.
"""
import logging
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from ..errors import UserError
from ..runs.progress import progress as progress_bar

log = logging.getLogger(__name__)
MEAN_RGB = (123.68, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
HOLDOUT_SEED = 0            # the search split is the same for every search of a dataset
FLOAT_CACHE_BYTES = 1 << 30  # slices up to 1 GiB (as float32) are kept normalised in memory


class ImageSlice:
    """Images decoded once: uint8 (N, 3, S, S) plus labels, served as normalised float32 batches.

    A slice that fits in FLOAT_CACHE_BYTES as float32 is normalised once; a larger one (20,000
    ImageNet images are 12 GB as float32, 3 GB as uint8) is normalised batch by batch.
    """

    def __init__(self, images, labels, keys=()):
        self.images, self.labels, self.keys = images, np.asarray(labels, dtype=np.int64), tuple(keys)
        if len(self.labels) == 0:
            raise UserError("a slice of images is empty: there is nothing to calibrate or score on")
        self._normalised = normalise(images) if images.size * 4 <= FLOAT_CACHE_BYTES else None
        self._batches = {}

    @classmethod
    def load(cls, dataset, records, keys, input_size, progress=False):
        """The images of `records` (dataset.train or dataset.val) at `keys`, decoded once."""
        return cls(*decode_images(dataset, records, keys, input_size, progress), keys=keys)

    def __len__(self):
        return self.images.shape[0]

    def data(self):
        """Every image as one normalised float32 NDArray (N, 3, S, S)."""
        return self._normalised if self._normalised is not None else normalise(self.images)

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
    """uint8 (N, 3, S, S) -> float32 with the dataset mean/std (the iterators' normalisation)."""
    mean = mx.nd.array(MEAN_RGB).reshape((1, 3, 1, 1))
    std = mx.nd.array(STD_RGB).reshape((1, 3, 1, 1))
    return mx.nd.broadcast_div(mx.nd.broadcast_sub(images.astype("float32"), mean), std)


def validation_crop(img, input_size, resize):
    """One decoded HWC uint8 image with the validation transform: the short side resized to
    `resize` bilinearly (as ImageRecordIter does), then the centre `input_size` square, as CHW."""
    img = mx.image.resize_short(img, resize, interp=1)
    img, _ = mx.image.center_crop(img, (input_size, input_size))
    return img.asnumpy().transpose(2, 0, 1)


def decode_images(dataset, records, keys, input_size, progress=False):
    """The images of `records` at `keys` with the validation transform (resize the short side to
    size / crop_ratio bilinearly, as ImageRecordIter does, then centre crop), as uint8 (N, 3, S, S)
    and int64 labels."""
    resize = int(round(input_size / dataset.augmentation.crop_ratio))
    out = np.empty((len(keys), 3, input_size, input_size), dtype=np.uint8)
    labels = np.empty(len(keys), dtype=np.int64)
    reader = mx.recordio.MXIndexedRecordIO(str(records.idx), str(records.rec), "r")
    try:
        for i, key in enumerate(progress_bar(keys, progress, f"decoding {records.rec.name}")):
            header, payload = mx.recordio.unpack(reader.read_idx(key))
            out[i] = validation_crop(mx.image.imdecode(payload), input_size, resize)
            labels[i] = int(np.ravel(header.label)[0])
    except (KeyError, mx.base.MXNetError) as err:
        raise UserError(f"{records.rec} cannot be read at record {key} ({err}); regenerate it and its "
                        "index with im2rec") from None
    finally:
        reader.close()
    return mx.nd.array(out, dtype="uint8"), labels


@dataclass(frozen=True)
class SplitPlan:
    """Which records rank candidates (`split_keys`, of the training file unless `source` is 'val'),
    which re-score the best of them (`second_keys`, of the same file, empty unless asked for) and
    which recalibrate BN (`calibration_keys`, always training records, in neither split)."""
    split_keys: tuple
    calibration_keys: tuple
    source: str
    second_keys: tuple = ()


def training_order(dataset, seed=HOLDOUT_SEED):
    """The training keys in the fixed order every slice is taken from (a seeded permutation)."""
    keys = dataset.train.keys()
    return [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]


def calibration_slice(dataset, count, input_size):
    """`count` training images (the first of `training_order`) to recalibrate BatchNorm with."""
    if count < 1:
        raise UserError(f"BN recalibration needs at least one image, got {count}")
    return ImageSlice.load(dataset, dataset.train, tuple(sorted(training_order(dataset)[:count])), input_size)


def val_slice(dataset, count, input_size):
    """The first `count` validation images (in file order) decoded once."""
    keys = dataset.val.keys()
    if count < 1 or not keys:
        raise UserError(f"{dataset.val.rec}: no validation images to take {count} from")
    return ImageSlice.load(dataset, dataset.val, tuple(keys[:count]), input_size)


def plan_search_split(dataset, update_bn_images=None, search_val_images=None, search_on_val=False,
                      second_split=False, second_split_images=None, seed=HOLDOUT_SEED):
    """Choose the search split, the second split and the BN calibration slice (no decoding; bad
    counts fail here).

    Defaults: the split is min(10,000, 1/5 of the training set) training images held out; BN
    statistics come from min(20,000, all the rest) other training images. Both are drawn by one
    fixed permutation of the training records (the same for every search of a dataset), not taken
    from the end of the file: a class-sorted file would otherwise give a few classes only. With
    `search_on_val` the split is the first `search_val_images` validation images (all by default),
    which makes the final validation figure optimistic.

    A dataset with a file of its own for the search (`Dataset.search`, e.g. the few-shot digits)
    ranks on that file instead (its first `search_val_images`, all by default) and recalibrates BN on
    the training records.

    With `second_split`, `second_split_images` more (default: as many as the split) follow the split
    in the same order (the next training records, or the next validation images with
    `search_on_val`), and calibration starts after them: the same permutation, cut in three.
    """
    order = training_order(dataset, seed)
    own = getattr(dataset, "search", None) is not None and not search_on_val
    if own:             # a dataset with a file of its own to rank on: neither trained on nor reported
        pool = dataset.search.keys()
        count = len(pool) if search_val_images is None else search_val_images
        if count <= 0 or not pool:
            raise UserError(f"the search split is empty: {dataset.search.rec} holds {len(pool)} images "
                            f"and search_val_images is {search_val_images}", settings="search_val_images")
        rest = order
    elif search_on_val:
        log.warning("searching on the validation set: candidates are ranked on it, so the validation "
                    "accuracy of the winner is no longer an unbiased estimate; report it as such")
        pool = dataset.val.keys()
        count = len(pool) if search_val_images is None else search_val_images
        if count <= 0 or not pool:
            raise UserError(f"the search split is empty: {dataset.val.rec} holds {len(pool)} images "
                            f"and search_val_images is {search_val_images}", settings="search_val_images")
        rest = order
    else:
        pool = order
        count = min(10000, len(pool) // 5) if search_val_images is None else search_val_images
        if count <= 0:
            raise UserError(f"the search split is empty (search_val_images={count}); hold out at least "
                            f"one training image, e.g. {max(1, len(pool) // 5)}",
                            settings="search_val_images")
    split, second = pool[:count], []
    if second_split:
        wanted = count if second_split_images is None else second_split_images
        second = pool[count:count + wanted]
        if wanted <= 0 or len(second) < wanted:
            where = "search" if own else "validation" if search_on_val else "training"
            raise UserError(f"the second split needs {wanted} {where} images after the {len(split)} of "
                            f"the search split, but {len(pool) - len(split)} are left; use fewer "
                            "(at least 1)", settings=("rescore_images", "search_val_images"))
    if not (search_on_val or own):
        rest = order[len(split) + len(second):]
        if not rest:
            taken = f" and the second split's {len(second)} take" if second else " takes"
            raise UserError(f"search_val_images={count}{taken} all {len(order)} training images and "
                            f"leave{'s' * (not second)} none for BN recalibration; use fewer",
                            settings="search_val_images")
    calib = min(20000 if update_bn_images is None else update_bn_images, len(rest))
    if calib <= 0:
        raise UserError(f"update_bn_images={update_bn_images}: BN recalibration needs at least one image",
                        settings="update_bn_images")
    source = "search" if own else "val" if search_on_val else "train"
    return SplitPlan(tuple(sorted(split)), tuple(sorted(rest[:calib])), source, tuple(sorted(second)))


def load_search_data(dataset, plan, input_size, progress=False):
    """Decode the slices of `plan` once (see ImageSlice)."""
    records = {"val": dataset.val, "search": getattr(dataset, "search", None)}.get(plan.source) or dataset.train
    split = ImageSlice.load(dataset, records, plan.split_keys, input_size, progress)
    calibration = ImageSlice.load(dataset, dataset.train, plan.calibration_keys, input_size, progress)
    second = (ImageSlice.load(dataset, records, plan.second_keys, input_size, progress)
              if plan.second_keys else None)
    log.info("search split: %d %s images;%s BN recalibration: %d training images (decoded once)",
             len(split), {"val": "validation", "search": "search-file"}.get(plan.source, "held-out training"),
             f" second split: {len(second)} more;" if second else "", len(calibration))
    return SearchData(calibration, split, plan.source, second)


def prepare_search_data(dataset, input_size, update_bn_images=None, search_val_images=None,
                        search_on_val=False, progress=False):
    """plan_search_split, then load_search_data."""
    plan = plan_search_split(dataset, update_bn_images, search_val_images, search_on_val)
    return load_search_data(dataset, plan, input_size, progress)


@dataclass
class SearchData:
    calibration: "ImageSlice"
    split: "ImageSlice"
    source: str                 # 'train' (held out of the training set) or 'val'
    second: "ImageSlice" = None  # the second split, if planned

    def on_second_split(self):
        """The same calibration with the second split as the split (to score candidates on it)."""
        if self.second is None:
            raise ValueError("no second split was planned (plan_search_split(second_split=True))")
        return SearchData(self.calibration, self.second, self.source)


