"""The training data stream: one ImageRecordIter per run (MXNet leaks memory for every one made),
whose epochs a resumed run replays so that it continues the uninterrupted run exactly."""
import logging

import numpy as np

from oneshot_nas.data import iterators
from oneshot_nas.data.iterators import TrainStream, next_batch


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
    whole = TrainStream(small, 32, 32, threads=1, seed=5, steps=3)
    epochs = [epoch_data(whole, e, batches=3) for e in range(4)]
    assert len(made) == 1                                    # one iterator for every epoch
    assert not np.array_equal(epochs[2], epochs[3])          # and each epoch draws anew
    resumed = TrainStream(small, 32, 32, threads=1, seed=5, steps=3)
    np.testing.assert_array_equal(epoch_data(resumed, 3, batches=3), epochs[3])
    np.testing.assert_array_equal(epoch_data(TrainStream(small, 32, 32, threads=1, seed=5, steps=3), 0, 3), epochs[0])


def test_a_replay_too_long_is_skipped_with_a_warning(small, monkeypatch, caplog):
    monkeypatch.setattr(iterators, "REPLAY_IMAGES", 100)
    with caplog.at_level(logging.WARNING):
        data = epoch_data(TrainStream(small, 32, 32, threads=1, seed=5, steps=3), 3)
    assert "resuming at epoch 3 with a fresh data stream" in caplog.text
    np.testing.assert_array_equal(data, epoch_data(TrainStream(small, 32, 32, threads=1, seed=5, steps=3), 0))


def test_a_replay_reads_each_epoch_as_training_did_when_steps_run_past_a_pass(small):
    # 48 does not divide the training images: the last batch of a pass is padded, the next pass
    # starts inside the wrap-around and holds one batch fewer than an epoch's steps, which then
    # takes a batch from the pass after (next_batch); the replay must read the same way
    steps = -(-len(small.train) // 48)

    def epoch_batches(stream, epoch):
        it = stream.epoch(epoch)
        return np.concatenate([next_batch(it).data[0].asnumpy() for _ in range(steps)])

    whole = TrainStream(small, 48, 32, threads=1, seed=5, steps=steps)
    epochs = [epoch_batches(whole, e) for e in range(4)]
    for start in (1, 2, 3):
        resumed = TrainStream(small, 48, 32, threads=1, seed=5, steps=steps)
        np.testing.assert_array_equal(epoch_batches(resumed, start), epochs[start], err_msg=f"epoch {start}")
