"""Images streamed from their stored files in batches: memory follows the batch, not the dataset.

Every pipeline here is a ``tf.data.Dataset`` over file names (or row numbers of
a feature file): images are decoded and fitted in parallel by the same
``fit_image`` that Predict uses, so a model trains on exactly what it is later
shown. Shuffling is seeded and reshuffled every epoch; only file names are
shuffled, never pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tlcore.core.atomic import StorageError
from tlcore.data.datasets import ImageDataset
from tlcore.data.images import ResizeMode, fit_image

PREFETCH = 2
"""Batches decoded ahead of the one being trained on."""


def _untuned(data: tf.data.Dataset) -> tf.data.Dataset:
    """``data`` without tf.data's autotuner: its per-image parallel map runs as many calls as the machine has cores
    (at most 16), its batch-wise steps and buffers are as set here.

    With the autotuner, the end of a pass (the iterator let go: every epoch, every validation, every
    extraction) sometimes waited for its tuning thread, about as long again as the pass had run, both cores
    idle. ``bench/pass_ends.py`` (VGG16 at 128 px, an AMD EPYC with 2 cores, in turns): with it, 5 of 20
    one-batch passes and 3 of 6 four-batch passes ended late, by up to 2.5 s and 10.0 s; without it, none.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.with_options(options)


def fitted_pixels(path: str | bytes, size: tuple[int, int], mode: ResizeMode = "crop") -> np.ndarray:
    """One stored image fitted to (height, width): uint8 (h, w, 3)."""
    path = path.decode() if isinstance(path, bytes) else path
    with Image.open(path) as image:
        return np.asarray(fit_image(image.convert("RGB"), size, mode=mode), dtype=np.uint8)


def _decoder(size: tuple[int, int], mode: ResizeMode) -> Callable[[tf.Tensor, tf.Tensor], tuple]:
    height, width = size

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.numpy_function(lambda p: fitted_pixels(p, size, mode), [path], tf.uint8, stateful=False)
        pixels = tf.ensure_shape(pixels, (height, width, 3))
        return tf.cast(pixels, tf.float32), label

    return decode


def image_batches(
    dataset: ImageDataset,
    indices: Sequence[int] | np.ndarray,
    size: tuple[int, int],
    *,
    preprocess: Callable,
    batch_size: int,
    mode: ResizeMode = "crop",
    seed: int | None = None,
    augment: keras.Layer | None = None,
) -> tf.data.Dataset:
    """Batches of (preprocessed float32 images, int labels) for the images at ``indices``.

    Args:
        dataset: the stored images.
        indices: which images, in the order given (shuffled each epoch when ``seed`` is set).
        size: (height, width) of the model input.
        preprocess: the backbone's ``preprocess_input``, applied per batch.
        batch_size: images per batch.
        mode: how images are fitted to ``size`` ("crop" or "squash").
        seed: reshuffle every epoch with this seed; None keeps the order.
        augment: random layers applied to each training batch before preprocessing.
    """
    indices = np.asarray(indices, dtype=np.int64)
    files = np.asarray([str(dataset.files[i]) for i in indices], dtype=object)
    labels = np.asarray(dataset.labels, dtype=np.int64)[indices] if len(indices) else np.zeros(0, np.int64)
    data = tf.data.Dataset.from_tensor_slices((files.astype(str), labels))
    if seed is not None and len(indices):
        data = data.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    data = data.map(_decoder(size, mode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    data = data.batch(batch_size)
    if augment is not None:
        data = data.map(lambda x, y: (augment(x, training=True), y))
    # one batch at a time: each call holds a whole batch, and without the autotuner's memory budget AUTOTUNE
    # would hold as many as the machine has cores
    data = data.map(lambda x, y: (preprocess(x), y))
    return _untuned(data.prefetch(PREFETCH))


class HeldRows:
    """Feature rows held in memory once, by TensorFlow: one variable, filled a block at a time.

    ``row_batches`` gathers batches from the variable in place, so the rows are in memory once
    for training, validation and evaluation alike. Measured on 98 MB of rows: a NumPy copy handed
    to ``tf.constant`` held twice that, a tf.data function capturing the constant copied it again,
    and a variable filled by slice assignment kept a second buffer; filled by scatter, it holds the
    rows once and tf.data reads it without a copy. Python reads (evaluation, logs) gather rows.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(d) for d in shape)
        self.variable = tf.Variable(tf.zeros(self.shape, tf.float32), trainable=False)

    def put(self, start: int, block: np.ndarray) -> None:
        """Rows ``start`` to ``start + len(block)`` (written in place)."""
        if len(block):
            self.variable.scatter_update(tf.IndexedSlices(
                tf.convert_to_tensor(block, tf.float32), tf.range(start, start + len(block), dtype=tf.int64)))

    @property
    def nbytes(self) -> int:
        return 4 * int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        picked = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        return tf.gather(self.variable, picked).numpy()


READ_BYTES = 8 * 2**20
"""Rows read from a memory-mapped feature file per Python call: about this many bytes at a time."""


def read_rows(rows: np.memmap, wanted: np.ndarray) -> np.ndarray:
    """Rows ``wanted`` (ascending) of a memory-mapped ``.npy`` file, read from the file with plain reads,
    one read per run of consecutive rows.

    Not through the mapping: a mapped page once read stays in the process's resident memory
    while the file is mapped, so epochs over a file larger than memory would count all of it
    toward the worker's limit, not the block being read. (A map of part of a file, or of rows
    that are not float32, is still read through the mapping.)

    A file deleted since it was mapped (room made for other features) is read through the mapping,
    which keeps its contents while it lasts.

    Raises:
        StorageError: the file is shorter than its header says.
    """
    row_bytes = rows.itemsize * int(np.prod(rows.shape[1:]))
    try:
        size = os.path.getsize(rows.filename)
    except FileNotFoundError:
        return np.asarray(rows[wanted], dtype=np.float32)
    end = rows.offset + len(rows) * row_bytes
    if size < end:
        raise StorageError(f"The feature file {os.path.basename(rows.filename)} holds {size:,} bytes, "
                           f"fewer than the {end:,} its header promises; compute the features again.")
    if not (rows.dtype == np.float32 and rows.flags.c_contiguous and size == end):
        return np.asarray(rows[wanted], dtype=np.float32)  # a part of a file, or another layout
    picked = np.empty((len(wanted), *rows.shape[1:]), np.float32)
    into = memoryview(picked.reshape(-1)).cast("B")
    runs = np.split(np.arange(len(wanted)), np.flatnonzero(np.diff(wanted) != 1) + 1) if len(wanted) else []
    try:
        handle = open(rows.filename, "rb", buffering=0)
    except FileNotFoundError:  # deleted since the size was read
        return np.asarray(rows[wanted], dtype=np.float32)
    with handle:
        for run in runs:
            start, length = int(run[0]) * row_bytes, len(run) * row_bytes
            read = os.preadv(handle.fileno(), [into[start:start + length]],
                             rows.offset + int(wanted[run[0]]) * row_bytes)
            if read != length:
                raise StorageError(f"The feature file {os.path.basename(rows.filename)} ended while row "
                                   f"{int(wanted[run[0]]):,} was read; compute the features again.")
    return picked


def row_batches(
    rows: np.ndarray,
    labels: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    *,
    batch_size: int,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of (rows[indices], labels[indices]) read from an array or a memory-mapped file.

    Rows already in memory (``HeldRows``, or an ``np.ndarray`` that is not a memory map) are
    gathered by TensorFlow itself: no Python call per batch (``HeldRows`` in place, an array's
    rows at ``indices`` copied once into a constant). A memory-mapped file is read in blocks of
    whole batches of about ``READ_BYTES`` (one Python call per block, reading the file
    forwards with plain reads: ``read_rows``), so memory follows the block, never the dataset. Either way the order within
    each batch follows the (shuffled) indices, the same order for the same seed.
    """
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    row_shape = tuple(rows.shape[1:])
    in_memory = not isinstance(rows, np.memmap)
    # in memory: shuffle positions into the rows picked (the same permutation as of the indices)
    data = tf.data.Dataset.from_tensor_slices(np.arange(len(indices)) if in_memory else indices)
    if seed is not None and len(indices):
        data = data.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    if in_memory:
        if isinstance(rows, HeldRows):  # read in place, where the indices point
            held, picked = rows.variable, tf.constant(indices)
        else:
            held = tf.constant(np.asarray(rows[indices], dtype=np.float32).reshape(len(indices), *row_shape))
            picked = tf.range(len(indices), dtype=tf.int64)
        held_labels = tf.constant(labels[indices])
        return _untuned(data.batch(batch_size)
                        .map(lambda batch: (tf.gather(held, tf.gather(picked, batch)), tf.gather(held_labels, batch)))
                        .prefetch(PREFETCH))
    row_bytes = max(4 * int(np.prod(row_shape)), 1)
    block = batch_size * max(1, READ_BYTES // (row_bytes * batch_size))

    def gather(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(batch)  # read the file forwards, then put rows back in shuffled order
        picked = np.empty((len(batch), *row_shape), np.float32)
        picked[order] = read_rows(rows, batch[order])
        return picked, labels[batch]

    def read(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(gather, [batch], (tf.float32, tf.int64), stateful=False)
        return tf.ensure_shape(x, (None, *row_shape)), tf.ensure_shape(y, (None,))

    batches = -(-len(indices) // batch_size)
    return _untuned(data.batch(block).map(read).unbatch().batch(batch_size)
                    .apply(tf.data.experimental.assert_cardinality(batches)).prefetch(PREFETCH))


def batched_outputs(forward: Callable[[np.ndarray], np.ndarray], batches: tf.data.Dataset) -> Iterator[np.ndarray]:
    """``forward`` applied to each batch of a (x, y) pipeline, one output batch at a time."""
    for x, _ in batches:
        yield forward(x.numpy())
