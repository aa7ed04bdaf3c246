"""Fixed slices decoded once: one validation transform, the search split held out of training, and
BN calibration images chosen one way."""
import logging

import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.data.iterators import labelled_batches, val_iter
from oneshot_nas.data.slices import (ImageSlice, calibration_slice, decode_images, plan_search_split,
                                     prepare_search_data, training_order, val_slice)
from oneshot_nas.data.sources import embedded_digits
from oneshot_nas.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return embedded_digits()


def test_search_split_is_held_out_of_the_training_set(digits, caplog):
    data = prepare_search_data(digits, 32, update_bn_images=300, search_val_images=50)
    assert (len(data.split), len(data.calibration), data.source) == (50, 300, "train")
    assert not set(data.split.keys) & set(data.calibration.keys)
    train = set(digits.train.keys())
    assert set(data.split.keys) <= train and set(data.calibration.keys) <= train
    # a fixed split, the same for every search, spread over the whole file (not its tail)
    plan = plan_search_split(digits, 300, 50)
    assert plan == plan_search_split(digits, 300, 50) and plan.split_keys == data.split.keys
    keys = digits.train.keys()
    for part in (plan.split_keys, plan.calibration_keys):
        assert min(part) < keys[len(keys) // 5] and max(part) > keys[-len(keys) // 5]
    # defaults: a fifth of the training images for the split, all the others for BN
    full = prepare_search_data(digits, 32)
    assert len(full.split) == len(train) // 5 and len(full.split) + len(full.calibration) == len(train)
    with caplog.at_level(logging.WARNING):
        on_val = prepare_search_data(digits, 32, update_bn_images=10, search_on_val=True)
    assert "searching on the validation set" in caplog.text and on_val.source == "val"
    assert len(on_val.split) == len(digits.val)
    with pytest.raises(UserError, match="search split is empty"):
        prepare_search_data(digits, 32, search_val_images=0)
    with pytest.raises(UserError, match="leaves none for BN"):
        prepare_search_data(digits, 32, search_val_images=len(train))


def test_slices_decode_what_the_iterators_decode(digits):
    """The one validation transform: a decoded slice equals ImageRecordIter's validation batches."""
    images, labels = decode_images(digits, digits.val, digits.val.keys()[:40], 32)
    assert images.dtype == np.uint8 and images.shape == (40, 3, 32, 32)
    s = ImageSlice(images, labels)
    batches = list(s.batches(15))
    assert [b[0].shape[0] for b in batches] == [13, 14, 13]     # nearly equal batches, not 15, 15, 10
    got = mx.nd.concat(*[b[0] for b in batches], dim=0).asnumpy()
    ref = [(x.asnumpy(), y) for x, y in labelled_batches(val_iter(digits, 40, 32, threads=1))][0]
    np.testing.assert_allclose(got, ref[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(labels, ref[1])
    np.testing.assert_allclose(val_slice(digits, 40, 32).data().asnumpy(), ref[0], rtol=1e-5, atol=1e-4)


def test_calibration_images_come_from_the_one_training_order(digits):
    order = training_order(digits)
    assert sorted(order) == sorted(digits.train.keys()) and order != digits.train.keys()
    calib = calibration_slice(digits, 100, 32)
    assert set(calib.keys) == set(order[:100])
    plan = plan_search_split(digits, update_bn_images=50, search_val_images=30)
    assert set(plan.split_keys) == set(order[:30]) and set(plan.calibration_keys) == set(order[30:80])
    with pytest.raises(UserError, match="at least one image"):
        calibration_slice(digits, 0, 32)
    with pytest.raises(UserError, match="empty"):
        ImageSlice(np.zeros((0, 3, 32, 32), dtype=np.uint8), [])


def test_a_second_split_follows_the_search_split_in_the_one_order(digits):
    order = training_order(digits)
    plan = plan_search_split(digits, update_bn_images=100, search_val_images=30, second_split=True,
                             second_split_images=20)
    assert set(plan.split_keys) == set(order[:30]) and set(plan.second_keys) == set(order[30:50])
    assert set(plan.calibration_keys) == set(order[50:150])
    assert plan_search_split(digits, 100, 30).second_keys == ()
    full = plan_search_split(digits, second_split=True)       # defaults: as many as the split
    fifth = len(order) // 5
    assert len(full.second_keys) == len(full.split_keys) == fifth
    assert len(full.calibration_keys) == len(order) - 2 * fifth
    assert not set(full.second_keys) & (set(full.split_keys) | set(full.calibration_keys))
    on_val = plan_search_split(digits, 10, 50, search_on_val=True, second_split=True)
    assert on_val.second_keys == tuple(sorted(digits.val.keys()[50:100]))
    with pytest.raises(UserError, match=f"the second split needs {len(digits.val)} validation images after "
                                        f"the {len(digits.val)} of the search split, but 0 are left"):
        plan_search_split(digits, 10, search_on_val=True, second_split=True)
    with pytest.raises(UserError, match=f"and the second split's {len(order) // 2} take all {len(order)} "
                                        "training images and leave none for BN"):
        plan_search_split(digits, search_val_images=len(order) // 2, second_split=True)
