"""Batches streamed from RecordIO by MXNet's ImageRecordIter: augmented training batches, validation
batches in file order, each worker reading its own part of the file.

Decode threads: ImageRecordIter uses min(requested, max(cores / 2 - 1, 1)) threads, whatever is
asked (1 on a 2-core machine); `decode_threads` says what a request becomes, and the run logs it
once. The iterators are made quiet (their C++ log line would repeat for every iterator made).
"""
import logging
import os

import mxnet as mx
import numpy as np

from .slices import MEAN_RGB, STD_RGB


log = logging.getLogger(__name__)
_told = set()


def decode_threads(requested):
    """The decode threads ImageRecordIter really uses for `requested` (its cap: cores / 2 - 1)."""
    return max(1, min(int(requested), max((os.cpu_count() or 2) // 2 - 1, 1)))


def _threads(requested):
    used = decode_threads(requested)
    if requested not in _told:          # said once per run, not once per iterator
        _told.add(requested)
        log.info("decoding images with %d thread%s%s", used, "" if used == 1 else "s",
                 "" if used == requested else f" (asked for {requested}; MXNet's ImageRecordIter uses "
                 f"at most max(cores / 2 - 1, 1) on this {os.cpu_count()}-core machine)")
    return used


def _normalise():
    return dict(mean_r=MEAN_RGB[0], mean_g=MEAN_RGB[1], mean_b=MEAN_RGB[2],
                std_r=STD_RGB[0], std_g=STD_RGB[1], std_b=STD_RGB[2])


def train_iter(dataset, batch_size, input_size, threads=2, seed=0, num_parts=1, part_index=0,
               dtype="float32"):
    """Shuffled, augmented training batches of worker `part_index` of `num_parts`."""
    aug = dataset.augmentation
    return mx.io.ImageRecordIter(
        path_imgrec=str(dataset.train.rec), path_imgidx=str(dataset.train.idx),
        data_shape=(3, input_size, input_size), batch_size=batch_size, shuffle=True, seed=seed,
        preprocess_threads=_threads(threads), num_parts=num_parts, part_index=part_index, dtype=dtype,
        verbose=False, random_resized_crop=True, min_random_area=aug.min_area, max_random_area=1.0,
        min_aspect_ratio=3.0 / 4, max_aspect_ratio=4.0 / 3, rand_mirror=aug.mirror,
        brightness=aug.jitter, contrast=aug.jitter, saturation=aug.jitter, pca_noise=aug.lighting,
        **_normalise())


# Resuming at epoch E replays the data stream of epochs 0..E-1 (decoding only) when that is at most
# this many images: the digits always, ImageNet never (1.28M images an epoch)
REPLAY_IMAGES = 2_000_000


def next_batch(iterator):
    """The next training batch. After a padded last batch, MXNet's reset starts the next pass inside
    the wrap-around, so a pass can hold one batch fewer than an epoch's steps: then the iterator is
    reset and the epoch takes its last batch from the next pass (as every epoch of the run does,
    and as a resumed run's replay does)."""
    try:
        return iterator.next()
    except StopIteration:
        iterator.reset()
        return iterator.next()


class TrainStream:
    """The training batches of a whole run from ONE ImageRecordIter, reset between epochs.

    MXNet 1.9's ImageRecordIter leaks about (prefetch_buffer + 1) batches of memory each time one
    is created and destroyed (apache/mxnet#15218): an iterator per epoch grew a ground-truth table's
    process by 150 MB per unit, and would grow an ImageNet run by gigabytes an epoch. So one
    iterator serves every epoch. Its shuffle and augmentations continue from epoch to epoch, so
    the batches of epoch E depend on everything decoded before: each epoch is read to its end
    (`epoch` drains what training left), and a run resumed at epoch E first replays epochs
    0..E-1 by decoding them (when that is at most REPLAY_IMAGES images), which makes the resumed
    run the uninterrupted one exactly, with one decode thread (several threads decode in a
    nondeterministic order anyway). A longer replay is skipped, with a warning: the run then
    continues with a fresh stream.
    """

    def __init__(self, dataset, batch_size, input_size, threads=2, seed=0, num_parts=1, part_index=0,
                 dtype="float32", *, steps):
        self.iterator = train_iter(dataset, batch_size, input_size, threads, seed, num_parts, part_index, dtype)
        self.images = len(dataset.train)
        self.steps = steps          # batches training takes per epoch (next_batch), which a replay takes too
        self.next_epoch, self.started = 0, False

    def epoch(self, epoch):
        """The iterator at the start of `epoch` (the first one asked for may be later than 0: a resume)."""
        if epoch < self.next_epoch:
            raise ValueError(f"epoch {epoch} was already served (next: {self.next_epoch})")
        skip = epoch - self.next_epoch
        if skip and self.images * skip > REPLAY_IMAGES:
            log.warning("resuming at epoch %d with a fresh data stream: replaying %d epochs of %d images to "
                        "continue it exactly would take long (limit %d images)", epoch, skip, self.images,
                        REPLAY_IMAGES)
            skip = 0
        elif skip:
            log.info("replaying the data of epochs %d-%d to resume exactly", self.next_epoch, epoch - 1)
        for _ in range(skip):          # replayed epochs: decoded as training read them, never trained on
            if self.started:
                self._finish()
            for _ in range(self.steps):   # an epoch's steps can run past the iterator's pass (next_batch)
                next_batch(self.iterator)
            self.started = True
        if self.started:                         # drain: the next epoch starts where this one ends
            self._finish()
        self.started = True
        self.next_epoch = epoch + 1
        return self.iterator

    def _finish(self):
        for _ in self.iterator:
            pass
        self.iterator.reset()


def val_iter(dataset, batch_size, input_size, threads=2, num_parts=1, part_index=0, dtype="float32",
             records=None):
    """Validation batches in file order (resize to size/crop_ratio, centre crop). The last batch
    is filled by wrapping around: its `pad` says how many of its images are repeats."""
    records = records or dataset.val
    return mx.io.ImageRecordIter(
        path_imgrec=str(records.rec), path_imgidx=str(records.idx),
        data_shape=(3, input_size, input_size), batch_size=batch_size, shuffle=False,
        preprocess_threads=_threads(threads), num_parts=num_parts, part_index=part_index, dtype=dtype,
        verbose=False, resize=int(round(input_size / dataset.augmentation.crop_ratio)), **_normalise())


def labelled_batches(iterator):
    """(data, int64 labels) pairs of a DataIter without the repeats that pad its last batch."""
    for batch in iterator:
        keep = batch.data[0].shape[0] - (batch.pad or 0)
        if keep > 0:
            yield batch.data[0][:keep], batch.label[0][:keep].asnumpy().astype(np.int64)
