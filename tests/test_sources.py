"""Data sources: an image folder is packed once by MXNet's im2rec, resized, with class labels
from the sorted folder names; bad folders are one clear line."""
import cv2
import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.data.sources import resolve_dataset
from oneshot_nas.errors import UserError


def image_folder(root, classes=("cat", "dog", "eel"), per_class=(4, 2), size=(60, 90)):
    """train/ and val/ with one folder per class of random images (height x width = size)."""
    r = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                image = r.integers(0, 256, size + (3,), dtype=np.uint8)
                cv2.imwrite(str(root / split / c / f"{i}.{'png' if i % 2 else 'jpg'}"), image)
    return root


def test_an_image_folder_is_packed_once_resized_with_labels_from_its_folders(tmp_path):
    root = image_folder(tmp_path / "pets")
    dataset = resolve_dataset(data_dir=root, cache=tmp_path / "cache", input_size=32)
    assert dataset.num_classes == 3 and len(dataset.train) == 12 and len(dataset.val) == 6
    reader = mx.recordio.MXIndexedRecordIO(str(dataset.train.idx), str(dataset.train.rec), "r")
    labels, shapes = [], set()
    for key in dataset.train.keys():
        header, image = mx.recordio.unpack_img(reader.read_idx(key))
        labels.append(int(header.label))
        shapes.add(image.shape[:2])
    reader.close()
    assert sorted(labels) == [0] * 4 + [1] * 4 + [2] * 4          # cat, dog, eel
    assert shapes == {(42, 63)}                                   # short side 1.3 x 32, aspect kept
    packed = dataset.train.rec.stat().st_mtime
    again = resolve_dataset(data_dir=root, cache=tmp_path / "cache", input_size=32)
    assert again.train.rec == dataset.train.rec and again.train.rec.stat().st_mtime == packed
    assert not list((dataset.train.rec.parent).glob(".packing-*"))


def test_bad_image_folders_are_one_line(tmp_path):
    with pytest.raises(UserError, match="needs a 'train' folder"):
        resolve_dataset(data_dir=tmp_path, cache=tmp_path / "cache")
    root = image_folder(tmp_path / "x")
    (root / "val" / "fox").mkdir()
    with pytest.raises(UserError, match=r"classes the training set lacks: \['fox'\]"):
        resolve_dataset(data_dir=root, cache=tmp_path / "cache")


def _labels(records):
    reader = mx.recordio.MXIndexedRecordIO(str(records.idx), str(records.rec), "r")
    out = [mx.recordio.unpack(reader.read_idx(k)) for k in records.keys()]
    reader.close()
    return np.array([h.label for h, _ in out], dtype=int), {image for _, image in out}


def test_few_shot_digits_train_on_one_fold_and_rank_on_a_file_nothing_trains_on(tmp_path):
    default = resolve_dataset(cache=tmp_path)
    few = resolve_dataset(cache=tmp_path, digits_view="few-shot")
    assert (len(default.train), len(default.val), default.search) == (1438, 359, None)
    assert (len(few.train), len(few.search), len(few.val)) == (359, 719, 719)
    files = [_labels(r) for r in (few.train, few.search, few.val)]
    counts = [np.bincount(labels, minlength=10) for labels, _ in files]
    assert all((c > 15).all() for c in counts)                                 # every class in every file
    images = [png for _, png in files]
    assert len(images[0] | images[1] | images[2]) == sum(map(len, images)) > 1700   # disjoint files
    again = resolve_dataset(cache=tmp_path, digits_view="few-shot")              # packed once, same files
    assert again.train.rec == few.train.rec and (_labels(again.val)[0] == _labels(few.val)[0]).all()
    with pytest.raises(UserError, match="unknown view of the digits 'fewshot'.*default, few-shot"):
        resolve_dataset(cache=tmp_path, digits_view="fewshot")
