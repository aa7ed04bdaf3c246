"""Datasets as RecordIO files, read by MXNet's ImageRecordIter: ImageNet, an image folder, or digits.

Every source ends up as (train.rec/.idx, val.rec/.idx), so one reading path serves all of them:
- ImageNet (or any) RecordIO given by the user;
- an image folder (`train/<class>/*.jpg`, `val/<class>/*.jpg`), packed once into a cache folder;
- the embedded default: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), split
  train/val deterministically, upscaled and packed once into the cache folder.
Batches stream from them through iterators.py; fixed slices are decoded once by slices.py.
"""
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np

from ..cost.counting import cache_dir
from ..errors import UserError

log = logging.getLogger(__name__)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation (ImageNet defaults: random resized crop 0.08-1, flip, colour jitter
    0.4, PCA lighting 0.1). Validation: resize the short side to size/0.875, centre crop."""
    min_area: float = 0.08
    mirror: bool = True
    jitter: float = 0.4
    lighting: float = 0.1
    crop_ratio: float = 0.875


# Digits are centred strokes: a flip turns a 2 into something else and tiny crops lose the digit.
DIGITS_AUGMENTATION = Augmentation(min_area=0.5, mirror=False, jitter=0.2, lighting=0.0, crop_ratio=1.0)


@dataclass(frozen=True)
class Records:
    """One RecordIO file and its index."""
    rec: Path
    idx: Path

    def keys(self):
        with open(self.idx) as f:
            return [int(line.split("\t", 1)[0]) for line in f if line.strip()]

    def __len__(self):
        with open(self.idx) as f:
            return sum(1 for line in f if line.strip())


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Records
    val: Records
    num_classes: int
    augmentation: Augmentation = field(default_factory=Augmentation)
    search: Records = None      # a file that ranks search candidates, never trained on (optional)


# ----- sources ----------------------------------------------------------------------------------
def resolve_dataset(rec_train=None, rec_train_idx=None, rec_val=None, rec_val_idx=None,
                    data_dir=None, num_classes=None, cache=None, input_size=None, digits_view="default"):
    """The dataset the flags name, checked before anything trains; the digits when none is given."""
    if rec_train or rec_val:
        missing = [name for name, v in (("rec_train", rec_train), ("rec_train_idx", rec_train_idx),
                                        ("rec_val", rec_val), ("rec_val_idx", rec_val_idx)) if not v]
        if missing:
            raise UserError(f"RecordIO data needs all four files (training and validation .rec and "
                            f".idx); {len(missing)} of them are not given", settings=missing)
        for path in (rec_train, rec_train_idx, rec_val, rec_val_idx):
            _check_readable(path)
        if num_classes is None:
            raise UserError("RecordIO data: the number of classes comes from the search space "
                            "(or is given); none was given", settings="num_classes")
        ds = Dataset("recordio", Records(Path(rec_train), Path(rec_train_idx)),
                     Records(Path(rec_val), Path(rec_val_idx)), num_classes)
    elif data_dir:
        ds = pack_image_folder(data_dir, cache, input_size)
    else:
        if digits_view not in DIGITS_VIEWS:
            raise UserError(f"unknown view of the digits {digits_view!r}; choose one of {', '.join(DIGITS_VIEWS)}",
                            settings="digits_view")
        ds = embedded_digits(cache=cache, **DIGITS_VIEWS[digits_view])
    if num_classes is not None and ds.num_classes > num_classes:
        raise UserError(f"the data has {ds.num_classes} classes but the model has {num_classes}; "
                        f"set the number of classes to {ds.num_classes}", settings="num_classes")
    for records in (ds.train, ds.val) + ((ds.search,) if ds.search else ()):
        check_labels(records, num_classes or ds.num_classes)
    return ds


def _check_readable(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist; check the RecordIO paths")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise UserError(f"data file {path} cannot be read ({err.strerror})") from None


def check_labels(records, num_classes, probe=2000):
    """Check a RecordIO before anything trains: an index that fits the file (a truncated copy is
    caught here, not as a crash mid-epoch), one label per record, and labels the model has; reads
    up to `probe` records spread over the file."""
    keys = records.keys()
    if not keys:
        raise UserError(f"{records.rec} holds no images (its index {records.idx} is empty)")
    _check_offsets(records)
    picks = keys if len(keys) <= probe else [keys[i] for i in np.linspace(0, len(keys) - 1, probe).astype(int)]
    reader = mx.recordio.MXIndexedRecordIO(str(records.idx), str(records.rec), "r")
    try:
        for key in picks:
            record = reader.read_idx(key)
            if record is None:
                raise KeyError(f"record {key} is past the end of the file")
            header, _ = mx.recordio.unpack(record)
            if np.size(header.label) != 1:
                raise UserError(f"{records.rec} has {np.size(header.label)} labels per image (record {key}); "
                                "this tool trains one class per image: repack it with one label each (im2rec "
                                "--pack-label off)")
            label = int(np.ravel(header.label)[0])
            if not 0 <= label < num_classes:
                raise UserError(f"{records.rec} has an image of class {label}, but the model has "
                                f"{num_classes} classes (0..{num_classes - 1}); set the number of classes",
                                settings="num_classes")
    except (KeyError, mx.base.MXNetError, struct.error) as err:
        raise UserError(f"{records.rec} does not match its index {records.idx} ({err}); "
                        "regenerate both with im2rec") from None
    finally:
        reader.close()


def _check_offsets(records):
    """Every offset of the index must lie inside the .rec file."""
    size = records.rec.stat().st_size
    with open(records.idx) as f:
        try:
            last = max(int(line.split("\t")[1]) for line in f if line.strip())
        except (IndexError, ValueError):
            raise UserError(f"{records.idx} is not a RecordIO index (lines 'key<TAB>offset'); regenerate "
                            "it with im2rec") from None
    if last >= size:
        raise UserError(f"{records.rec} is truncated or damaged: its index points at byte {last:,} of a "
                        f"{size:,}-byte file; copy it again or regenerate it and its index with im2rec")


def _pack(path_stem, items, encode):
    """Write (label, payload) items into path_stem.rec/.idx atomically."""
    tmp_rec, tmp_idx = f"{path_stem}.rec.tmp", f"{path_stem}.idx.tmp"
    writer = mx.recordio.MXIndexedRecordIO(tmp_idx, tmp_rec, "w")
    for key, (label, payload) in enumerate(items):
        writer.write_idx(key, encode(mx.recordio.IRHeader(0, float(label), key, 0), payload))
    writer.close()
    os.replace(tmp_rec, f"{path_stem}.rec")
    os.replace(tmp_idx, f"{path_stem}.idx")
    return Records(Path(f"{path_stem}.rec"), Path(f"{path_stem}.idx"))


# The views of the embedded digits (docs/ranking.md). `default`: 1,438 train / 359 val. `few-shot`:
# fold 0 of 5 (359 images) trains; the other 1,438 are cut in a search file (719, ranks candidates)
# and the validation set (719, the report): few training images make the architectures differ more
# than on the default view, where every well-trained network reaches 96-99%.
DIGITS_VIEWS = {"default": {}, "few-shot": {"fold": 0, "train_on_fold": True, "search_fraction": 0.5}}


def embedded_digits(size=32, val_fraction=0.2, cache=None, fold=None, folds=5, train_on_fold=False,
                    search_fraction=0.0):
    """scikit-learn's digits as RecordIO (packed once): 3-channel PNGs upscaled to size x size.

    One fixed permutation of the 1,797 images: by default its first `val_fraction` validates and the
    rest trains. With `fold` (0..folds-1) that fold of `folds` equal parts validates and the rest
    trains; with `train_on_fold` the other way round. `search_fraction` moves that share of the
    validation images (the first ones) into a third file, `Dataset.search`, that ranks search
    candidates and that nothing trains on."""
    from sklearn.datasets import load_digits
    if fold is not None and not 0 <= fold < folds:
        raise UserError(f"fold {fold} is not within 0..{folds - 1}")
    name = "digits" if fold is None else f"digits-{'train' if train_on_fold else ''}fold{fold}of{folds}"
    tag = name + (f"-search{int(round(search_fraction * 100))}" if search_fraction else "")
    folder = Path(cache or cache_dir()) / "data" / f"{tag.replace('digits', f'digits-{size}', 1)}-v1"
    train, val, search = (Records(folder / f"{s}.rec", folder / f"{s}.idx") for s in ("train", "val", "search"))
    if not (folder / "meta.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        digits = load_digits()
        order = np.random.default_rng(1797).permutation(len(digits.target))
        if fold is None:
            n_val = int(round(len(order) * val_fraction))
            val_ids, train_ids = order[:n_val], order[n_val:]
        else:
            bounds = np.linspace(0, len(order), folds + 1).round().astype(int)
            val_ids = order[bounds[fold]:bounds[fold + 1]]
            train_ids = np.concatenate([order[:bounds[fold]], order[bounds[fold + 1]:]])
            if train_on_fold:
                val_ids, train_ids = train_ids, val_ids
        n_search = int(round(len(val_ids) * search_fraction))
        search_ids, val_ids = val_ids[:n_search], val_ids[n_search:]
        images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)

        def encode(header, img):
            import cv2
            up = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
            return mx.recordio.pack_img(header, np.repeat(up[:, :, None], 3, axis=2), img_fmt=".png")
        for records, ids in ((train, train_ids), (val, val_ids), (search, search_ids)):
            if len(ids):
                _pack(folder / records.rec.stem, [(digits.target[i], images[i]) for i in ids], encode)
        (folder / "meta.json").write_text(json.dumps({"train": len(train_ids), "val": len(val_ids),
                                                      "search": n_search}))
        log.info("packed the digits into %s (%d train, %d val, %d search)", folder, len(train_ids),
                 len(val_ids), n_search)
    return Dataset(name, train, val, 10, DIGITS_AUGMENTATION, search=search if search_fraction else None)


def pack_image_folder(data_dir, cache=None, input_size=None):
    """An image-folder dataset (train/ and val/ with one folder per class), packed once with
    MXNet's im2rec (threads, JPEG quality 95), the short side resized to SHORT = 1.3 x the input
    size (the random crops of training need little more; 320 when the input size is unknown)."""
    root = Path(data_dir)
    splits = {s: root / s for s in ("train", "val")}
    for name, path in splits.items():
        if not path.is_dir():
            raise UserError(f"the image folder {root} needs a '{name}' folder with one sub-folder per class")
    classes = sorted(d.name for d in splits["train"].iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"{splits['train']} has no class folders")
    unknown = sorted({d.name for d in splits["val"].iterdir() if d.is_dir()} - set(classes))
    if unknown:
        raise UserError(f"{splits['val']} has classes the training set lacks: {unknown[:5]}")
    files = {s: sorted((c, f) for c in classes for f in (p / c).glob("*")
                       if f.suffix.lower() in IMAGE_EXTS) if p.is_dir() else []
             for s, p in splits.items()}
    short = int(round(1.3 * input_size)) if input_size else 320
    listing = json.dumps({"short": short, **{s: [(c, str(f), f.stat().st_mtime) for c, f in v]
                                             for s, v in files.items()}})
    folder = Path(cache or cache_dir()) / "data" / f"folder-{hashlib.sha1(listing.encode()).hexdigest()[:12]}"
    records = {}
    labels = {c: i for i, c in enumerate(classes)}
    for split, items in files.items():
        if not items:
            raise UserError(f"{splits[split]} holds no images ({', '.join(IMAGE_EXTS)})")
        rec = Records(folder / f"{split}.rec", folder / f"{split}.idx")
        if not rec.idx.is_file():
            _im2rec(folder, split, splits[split], [(labels[c], f) for c, f in items], short)
            log.info("packed %d %s images from %s into %s (short side %d px)", len(rec), split,
                     splits[split], folder, short)
        records[split] = rec
    return Dataset(f"folder:{root.name}", records["train"], records["val"], len(classes))


def _im2rec(folder, split, root, items, short):
    """Pack (label, image path) items under `root` into folder/split.rec/.idx with MXNet's im2rec,
    in a scratch folder first, so an interrupted packing leaves no half file behind."""
    scratch = folder / f".packing-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    with open(scratch / f"{split}.lst", "w") as f:
        for i, (label, path) in enumerate(items):
            f.write(f"{i}\t{label}\t{path.relative_to(root)}\n")
    tool = Path(mx.__file__).parent / "tools" / "im2rec.py"
    done = subprocess.run([sys.executable, str(tool), str(scratch / split), str(root), "--resize", str(short),
                           "--quality", "95", "--num-thread", str(max(1, os.cpu_count() or 1))],
                          capture_output=True, text=True)
    if done.returncode != 0 or not (scratch / f"{split}.idx").is_file():
        raise UserError(f"packing {root} failed ({(done.stderr or done.stdout).strip().splitlines()[-1:]}); "
                        "check that its images can be read")
    skipped = [line for line in done.stdout.splitlines() if "error" in line.lower() or "blank" in line]
    if skipped:
        log.warning("%d images of %s could not be read and were left out, e.g. %s", len(skipped), root,
                    skipped[0])
    for ext in ("rec", "idx"):
        os.replace(scratch / f"{split}.{ext}", folder / f"{split}.{ext}")
    shutil.rmtree(scratch, ignore_errors=True)
