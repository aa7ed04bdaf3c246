"""The training data stream: one ImageRecordIter per run (MXNet leaks memory for every one made),
whose epochs a resumed run replays so that it continues the uninterrupted run exactly."""
import logging

import numpy as np

from oneshot_nas.data import iterators
from oneshot_nas.data.iterators import TrainStream


def epoch_data(stream, epoch, batches=None):
    it = stream.epoch(epoch)
    out = []
    for i, batch in enumerate(it):
        if batches is not None and i == batches:     # training may stop before the end of an epoch
            break
        out.append(batch.data[0].asnumpy())
    return np.concatenate(out)


def test_a_resumed_stream_replays_the_epochs_before_it_exactly(small, monkeypatch):
    made = []
    real = iterators.train_iter
    monkeypatch.setattr(iterators, "train_iter", lambda *a, **k: made.append(1) or real(*a, **k))
    whole = TrainStream(small, 32, 32, threads=1, seed=5)
    epochs = [epoch_data(whole, e, batches=3) for e in range(4)]
    assert len(made) == 1                                    # one iterator for every epoch
    assert not np.array_equal(epochs[2], epochs[3])          # and each epoch draws anew
    resumed = TrainStream(small, 32, 32, threads=1, seed=5)
    np.testing.assert_array_equal(epoch_data(resumed, 3, batches=3), epochs[3])
    np.testing.assert_array_equal(epoch_data(TrainStream(small, 32, 32, threads=1, seed=5), 0, 3), epochs[0])


def test_a_replay_too_long_is_skipped_with_a_warning(small, monkeypatch, caplog):
    monkeypatch.setattr(iterators, "REPLAY_IMAGES", 100)
    with caplog.at_level(logging.WARNING):
        data = epoch_data(TrainStream(small, 32, 32, threads=1, seed=5), 3)
    assert "resuming at epoch 3 with a fresh data stream" in caplog.text
    np.testing.assert_array_equal(data, epoch_data(TrainStream(small, 32, 32, threads=1, seed=5), 0))
