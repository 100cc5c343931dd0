"""Training a transfer model: phases, live records, stop, frozen-feature caching, evaluation.

``train`` records; it never draws. Listeners receive plain values per batch and
per epoch (fastai's Recorder, not its ShowGraph), and a ``threading.Event``
stops training at the next batch, keeping what was learned and the history.

Frozen-feature caching: when the layers below the first trainable one are
frozen and augmentation is off, their output is computed once per image and
only the rest of the network is trained on it, the Keras guide's "fast feature
extraction" generalised to any frozen prefix. The weights trained are the very
variables of the full model, so the result is the same model.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tlcore.core.atomic import StorageError
from tlcore.core.errors import ConfigError
from tlcore.core.settings import load_settings
from tlcore.data.datasets import ImageDataset
from tlcore.data.images import ResizeMode
from tlcore.data.pipeline import HeldRows, batched_outputs, image_batches, row_batches
from tlcore.inference.calibration import PrecisionCheck, bfloat16_units, compare_precisions
from tlcore.inference.forward import compiled_forward
from tlcore.inference.precision import requested_precision
from tlcore.models.build import _assemble, base_and_head, set_trainable_from
from tlcore.models.cost import GB, measure_model
from tlcore.models.spec import TransferSpec
from tlcore.models.zoo import get_backbone
from tlcore.training.config import (
    FEATURES_PHASE,
    FINE_TUNE_PHASE,
    HISTORY_COLUMNS,
    OPTIMIZERS,
    TRAIN_PHASE,
    BatchProgress,
    Evaluation,
    TrainConfig,
    TrainResult,
)
from tlcore.training.feature_cache import EXTRACT_BATCH, FeatureCache
from tlcore.training.memory import job_memory
from tlcore.training.run_checks import check_run
from tlcore.training.tensorboard import (
    PROJECTOR_LIMIT,
    EpochScalars,
    penultimate_vectors,
    write_final_logs,
    write_projector,
)

EVAL_BATCH = 64
"""Rows per forward pass when validating and evaluating."""


class _Recorder(keras.callbacks.Callback):
    """Reports every batch and epoch, and stops at the next batch once asked."""

    def __init__(self, phase, epoch_offset, epochs, batches, on_batch, on_epoch, stop, rows):
        super().__init__()
        self.phase, self.offset, self.epochs, self.batches = phase, epoch_offset, epochs, batches
        self.on_batch, self.on_epoch, self.stop, self.rows = on_batch, on_epoch, stop, rows
        self.started = time.perf_counter()
        self.seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.seen = time.perf_counter(), 0
        self.first_step = int(self.model.optimizer.iterations)

    def on_train_batch_end(self, batch, logs=None):
        # steps actually taken: with several steps per execution, ``batch`` is where the block would end
        self.seen = int(self.model.optimizer.iterations) - self.first_step
        if self.on_batch:
            self.on_batch(BatchProgress(self.phase, self.offset + self.current + 1, self.epochs, batch + 1, self.batches))
        if self.stop is not None and self.stop.is_set():
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {
            "epoch": epoch + 1, "phase": self.phase,
            "loss": float(logs.get("loss", np.nan)), "accuracy": float(logs.get("accuracy", np.nan)),
            "val_loss": float(logs.get("val_loss", np.nan)), "val_accuracy": float(logs.get("val_accuracy", np.nan)),
            "seconds": time.perf_counter() - self.started, "complete": self.seen == self.batches,
        }
        self.rows.append(row)
        if self.on_epoch:
            self.on_epoch(pd.DataFrame(self.rows, columns=HISTORY_COLUMNS))
        if self.stop is not None and self.stop.is_set():
            self.model.stop_training = True

    @property
    def current(self) -> int:
        return len([r for r in self.rows if r["phase"] == self.phase])


_DETERMINISTIC_WEIGHTLESS = (
    keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten,
    keras.layers.AveragePooling2D, keras.layers.MaxPooling2D,
)
"""Head layers that can join a cached prefix: no weights, the same output in training and inference."""


def frozen_split(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """Split a transfer model into (frozen prefix, trainable rest), or None.

    The prefix runs from the input up to the first layer with trainable
    weights; with a wholly frozen base it also takes the head's pooling, so
    the cache holds pooled vectors. The rest shares its layers (and so its
    variables) with ``model``. None when nothing is frozen, or when the cut is
    not a single tensor that everything after it depends on (a skip
    connection crosses it).
    """
    base, head = base_and_head(model)
    if not base.trainable or not base.trainable_weights:
        cut_layer = base
        for layer in head:
            if not isinstance(layer, _DETERMINISTIC_WEIGHTLESS):
                break
            cut_layer = layer
        # the base's own ``output`` belongs to its inner graph: take the tensor the head receives
        cut = head[0].input if cut_layer is base else cut_layer.output
        return keras.Model(model.input, cut, name="frozen_prefix"), keras.Model(cut, model.output, name="trainable_rest")
    first = next(i for i, layer in enumerate(base.layers) if layer.trainable_weights)
    if first <= 1:
        return None
    cut = base.layers[first - 1].output
    try:
        prefix = keras.Model(base.input, cut, name="frozen_prefix")
        rest_of_base = keras.Model(cut, base.output, name="trainable_base")
    except ValueError:
        return None
    inputs = keras.Input(cut.shape[1:], name="cached_features")
    x = rest_of_base(inputs, training=False)
    for layer in head:
        x = layer(x)
    return prefix, keras.Model(inputs, x, name="trainable_rest")


def _forward_in_batches(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """``model`` over the rows of ``x`` (an array or a memory-mapped file), one batch in memory at a time."""
    forward = compiled_forward(model)
    outputs = [forward(np.asarray(x[i:i + EVAL_BATCH], dtype=np.float32)) for i in range(0, len(x), EVAL_BATCH)]
    return np.concatenate(outputs) if outputs else np.zeros((0, *model.output.shape[1:]), np.float32)


def _augmenter(seed: int) -> keras.Sequential:
    """Random flips, rotations and zooms, each drawn from its own seed: with one seed for the three, they drew the
    same numbers, so every flipped image turned one way and every other the other way, zoomed as it turned."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
    ], name="augmentation")


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Where a run's inputs come from: the stored images, streamed, and the feature cache.

    Attributes:
        dataset: the stored images.
        backbone: the registry name, for preprocessing and cache keys.
        size: (height, width) of the model input.
        mode: how images are fitted to ``size``.
        cache: where frozen-prefix features are kept; None computes nothing ahead.
        memory_room: bytes the cached features may take in memory (twice their size, of which
            they use half: ``HeldRows``); features that fit are trained on in memory, larger ones stay
            memory-mapped and are read a block at a time (``row_batches``). 0 keeps them on disk.
    """

    dataset: ImageDataset
    backbone: str
    size: tuple[int, int]
    mode: ResizeMode = "crop"
    cache: FeatureCache | None = None
    memory_room: int = 0

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.labels, dtype=np.int64)

    def images(self, indices: np.ndarray, batch_size: int, *, seed: int | None = None,
               augment: keras.Layer | None = None) -> tf.data.Dataset:
        """The images at ``indices``, decoded batch by batch and preprocessed for the backbone."""
        return image_batches(self.dataset, indices, self.size, preprocess=get_backbone(self.backbone).preprocess,
                             batch_size=batch_size, mode=self.mode, seed=seed, augment=augment)

    def features(self, prefix: keras.Model, on_batch=None, stop=None) -> HeldRows | np.memmap | None:
        """``prefix``'s output for every image, from the cache (computed once, memory-mapped).

        None when the features would not fit the data folder (``TL_MAX_DATA_GB``) even
        after older feature files are let go: training then streams images instead.

        Raises:
            StoppedBeforeTraining: ``stop`` was set while they were computed.
        """
        def report(done: int, total: int) -> None:
            if on_batch:
                batches = -(-total // EXTRACT_BATCH)
                on_batch(BatchProgress(FEATURES_PHASE, 1, 1, -(-done // EXTRACT_BATCH), batches))

        try:
            rows, _ = self.cache.features(prefix, self.dataset, backbone=self.backbone,
                                          preprocess=get_backbone(self.backbone).preprocess, mode=self.mode,
                                          on_progress=report, stop=stop)
        except StorageError:
            return None
        return head_rows(rows, self.memory_room)


def head_rows(rows: np.memmap, memory_room: int) -> HeldRows | np.memmap:
    """The features the head trains on: held in memory by TensorFlow (``HeldRows``: once) when twice
    their size fits ``memory_room`` (the other half is the margin), else the memory-mapped file itself
    (memory then follows the block read, not the dataset)."""
    return FeatureCache.read(rows) if 2 * rows.nbytes <= memory_room else rows


HEAD_STEPS_PER_EXECUTION = 64
"""Training steps of a head on cached rows per Python call (Keras's ``steps_per_execution``) when no
``on_batch`` or ``stop`` listens: with either, every batch returns to Python, so progress is
reported per batch and a stop takes effect at the next one."""


@dataclasses.dataclass(frozen=True)
class FittedPhase:
    """What a phase trained: the model fitted, and the cached features it read (None when it read images)."""

    trained: keras.Model
    rows: HeldRows | np.memmap | None

    @property
    def cached(self) -> bool:
        return self.rows is not None


def fit_phase(model: keras.Model, data: TrainingData, train_idx: np.ndarray, val_idx: np.ndarray,
              config: TrainConfig, *, phase: str = TRAIN_PHASE, rate: float | None = None,
              epochs: int | None = None, offset: int = 0, on_batch=None, on_epoch=None, stop=None,
              rows: list | None = None, log_dir: str | Path | None = None) -> FittedPhase:
    """Compile and fit ``model`` for one phase, streaming its inputs.

    With a feature cache (and no augmentation) the frozen prefix's output is read
    from disk (computed in one streaming pass the first time; held in memory when it
    fits ``data.memory_room``) and only the rest is fitted; otherwise the whole model is
    fitted on images decoded batch by batch. Both read batches in the same seeded
    order, so both train the same weights.
    """
    rate = config.learning_rate if rate is None else rate
    epochs = config.epochs if epochs is None else epochs
    rows = [] if rows is None else rows
    split = frozen_split(model) if data.cache is not None and not config.augment else None
    # a Stop during the first phase's feature pass ends the run there (nothing trained); a later phase's
    # pass runs to its end, and the Stop then ends that phase at its first batch (the first phase is kept)
    features = data.features(split[0], on_batch, stop if not rows else None) if split is not None else None
    if features is not None:
        trained = split[1]
        training = row_batches(features, data.labels, train_idx, batch_size=config.batch_size, seed=config.seed)
        validation = (row_batches(features, data.labels, val_idx, batch_size=EVAL_BATCH)
                      if len(val_idx) else None)
    else:
        trained, features = model, None
        augment = _augmenter(config.seed) if config.augment else None
        training = data.images(train_idx, config.batch_size, seed=config.seed, augment=augment)
        validation = data.images(val_idx, EVAL_BATCH) if len(val_idx) else None
    # a head on cached rows nobody watches batch by batch runs a block of steps per Python call
    steps = HEAD_STEPS_PER_EXECUTION if features is not None and on_batch is None and stop is None else 1
    trained.compile(optimizer=OPTIMIZERS[config.optimizer](rate), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], steps_per_execution=steps)
    batches = int(np.ceil(len(train_idx) / config.batch_size))
    callbacks = [_Recorder(phase, offset, config.total_epochs, batches, on_batch, on_epoch, stop, rows)]
    if config.early_stopping and validation is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            "val_loss", patience=config.early_stopping, restore_best_weights=True))
    if log_dir is not None:
        callbacks.append(EpochScalars(log_dir, offset))
    trained.fit(training, validation_data=validation, epochs=epochs, callbacks=callbacks, shuffle=False,
                verbose=0)
    return FittedPhase(trained, features)


TRAINING_BATCHNORM_MOMENTUM = 0.9
"""Momentum of batch-norm layers that train, at most (Keras applications use 0.99 to 0.999)."""
STATISTICS_KEPT_OVER_AN_EPOCH = 0.05
"""The share of batch norm's moving statistics an epoch of training may leave from before it: each epoch's
validation (its history row, early stopping, the comparison with a twin) reads statistics of that epoch's weights."""


def tracking_momentum(steps_per_epoch: int) -> float:
    """Batch norm's momentum for a run that trains it, ``steps_per_epoch`` steps an epoch: at most
    ``TRAINING_BATCHNORM_MOMENTUM``, less when an epoch is short (7 steps: 0.65). With 0.9 over 7 steps, 48% of
    the statistics dated from before the epoch: MobileNetV2 from scratch validated at chance (25%) every epoch
    while the model it ended with scored 71%. Training reads each batch's own statistics, never the moving
    ones, so the weights trained are the same."""
    return min(TRAINING_BATCHNORM_MOMENTUM, STATISTICS_KEPT_OVER_AN_EPOCH ** (1 / max(1, steps_per_epoch)))
RECALIBRATION_BATCHES = 50
"""Training batches whose statistics replace the moving ones once a run that trains batch norm ends."""


def trained_batchnorm(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The batch-norm layers of ``model`` (nested models included) that training updates."""
    found = []
    for layer in model.layers:
        if not layer.trainable:
            continue
        if isinstance(layer, keras.Model):
            found.extend(trained_batchnorm(layer))
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def recalibrate_batchnorm(model: keras.Model, layers: list[keras.layers.BatchNormalization],
                          batches: tf.data.Dataset) -> None:
    """Replace the moving statistics of ``layers`` by their average over ``batches`` ("precise BN").

    A network trained from scratch for a few dozen steps leaves moving means and
    variances that describe none of the weights it ended with, so inference (and
    so validation) runs on statistics of nothing. Each batch here is run in
    training mode with the momentum set so that the moving values become the
    plain average of the batches' statistics; no weight changes.
    """
    momenta = [layer.momentum for layer in layers]
    try:
        for step, (x, _) in enumerate(batches.take(RECALIBRATION_BATCHES)):
            for layer in layers:
                layer.momentum = step / (step + 1)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, indices: np.ndarray,
             class_names: tuple[str, ...]) -> Evaluation:
    """Confusion matrix, per-class precision and recall, accuracy and loss on ``indices``.

    ``x`` holds the model's inputs for every row (an array or a memory-mapped
    feature file); only ``indices`` are read, one batch at a time.
    """
    indices = np.asarray(indices, dtype=np.int64)
    probabilities = _forward_in_batches(model, _Rows(x, indices))
    return Evaluation.of(probabilities, np.asarray(y)[indices], indices, class_names)


class _Rows:
    """``x[indices]`` read lazily, slice by slice."""

    def __init__(self, x: np.ndarray, indices: np.ndarray):
        self.x, self.indices = x, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, part: slice) -> np.ndarray:
        return self.x[self.indices[part]]


def evaluate_images(model: keras.Model, data: TrainingData, indices: np.ndarray,
                    class_names: tuple[str, ...]) -> Evaluation:
    """``evaluate`` over stored images, decoded batch by batch."""
    indices = np.asarray(indices, dtype=np.int64)
    outputs = list(batched_outputs(compiled_forward(model), data.images(indices, EVAL_BATCH)))
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0, len(class_names)), np.float32)
    return Evaluation.of(probabilities, data.labels[indices], indices, class_names)


def default_feature_cache() -> FeatureCache:
    """The feature cache in the data folder (``TL_DATA_DIR``/features)."""
    return FeatureCache(load_settings().data_dir / "features")


def train(
    spec: TransferSpec,
    dataset: ImageDataset,
    config: TrainConfig = TrainConfig(),
    *,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[pd.DataFrame], None] | None = None,
    stop: threading.Event | None = None,
    model: keras.Model | None = None,
    cache: FeatureCache | None = None,
    checked: bool = False,
    log_dir: str | Path | None = None,
) -> TrainResult:
    """Train a fresh transfer model on ``dataset``, streaming its images from disk.

    Args:
        spec: the model; its ``num_classes`` is set from the dataset.
        dataset: labelled images.
        config: how to train.
        on_batch: called after every batch with a ``BatchProgress`` (phase
            "features" while frozen features are computed).
        on_epoch: called after every epoch with the whole history so far.
        stop: set it to stop at the next batch; the result keeps what was learned.
        model: an already-built model for ``spec`` (develop-a-model); built fresh when None.
        cache: where frozen-prefix features are kept (default: the data folder's);
            used when ``config.cache_features`` and not ``config.augment``.
        checked: the job queue (or the command line) already checked this run (``check_run``), so it
            is not checked again. Left False (a notebook), it is checked before anything is built.
        log_dir: where to write TensorBoard logs as it trains (``tlcore.training.tensorboard``);
            None for none. The job queue passes the run's folder's ``tensorboard``.

    Raises:
        ConfigError, ShapeError: a spec or config that cannot work.
        BudgetError: a model over a budget of this server, or a job whose estimated
            memory is over ``TL_JOB_MEMORY_GB``.
        WeightsError: base weights that are not available.
        DatasetError: too few images to train and validate.
        StoppedBeforeTraining: ``stop`` was set while the first phase's frozen features were computed.
    """
    config.check()
    if config.workers != 1:
        raise ConfigError(f"tlcore.train trains in one process: a run across workers is "
                          f"tlcore.train_data_parallel (Ray Train). Received: workers={config.workers}")
    spec = check_run(spec, dataset, config) if not checked else dataclasses.replace(
        spec, num_classes=len(dataset.class_names))
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    model = model if model is not None else _assemble(spec)
    if config.cache_features and cache is None:
        cache = default_feature_cache()
    data = TrainingData(dataset, spec.backbone, tuple(spec.input_shape[:2]), config.resize_mode,
                        cache if config.cache_features else None, _memory_room(model, config.batch_size))
    train_idx, val_idx = dataset.split(config.validation_fraction, seed=config.seed)
    momentum = tracking_momentum(int(np.ceil(len(train_idx) / config.batch_size)))
    for layer in trained_batchnorm(model):  # from scratch: let the moving statistics keep up
        layer.momentum = min(layer.momentum, momentum)
    rows: list[dict] = []
    common = dict(on_batch=on_batch, on_epoch=on_epoch, stop=stop, rows=rows, log_dir=log_dir)
    fitted = fit_phase(model, data, train_idx, val_idx, config, phase=TRAIN_PHASE, rate=config.learning_rate,
                       epochs=config.epochs, offset=0, **common)
    cached = fitted.cached
    stopped = stop is not None and stop.is_set()
    if config.fine_tune_from and config.fine_tune_epochs and not stopped:
        set_trainable_from(base_and_head(model)[0], config.fine_tune_from,
                           freeze_batchnorm=spec.pretrained)
        fitted = fit_phase(model, data, train_idx, val_idx, config, phase=FINE_TUNE_PHASE,
                           rate=config.fine_tune_learning_rate, epochs=config.fine_tune_epochs,
                           offset=len(rows), **common)
        cached &= fitted.cached
        stopped = stop is not None and stop.is_set()
    batchnorm = trained_batchnorm(fitted.trained)
    if batchnorm:
        recalibration = (row_batches(fitted.rows, data.labels, train_idx, batch_size=config.batch_size,
                                     seed=config.seed) if fitted.cached
                         else data.images(train_idx, config.batch_size, seed=config.seed))
        recalibrate_batchnorm(fitted.trained, batchnorm, recalibration)
    held_out = val_idx if len(val_idx) else train_idx
    evaluation = (evaluate(fitted.trained, fitted.rows, data.labels, held_out, dataset.class_names)
                  if fitted.cached else evaluate_images(model, data, held_out, dataset.class_names))
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    if log_dir is not None:
        _write_logs(log_dir, model, fitted, data, evaluation, len(rows))
    return TrainResult(model, spec, config, dataset.class_names, history, evaluation, stopped, cached,
                       time.perf_counter() - started, len(batchnorm),
                       precision_check(model, data, held_out))


def _memory_room(model: keras.Model, batch_size: int) -> int:
    """Bytes of ``TL_JOB_MEMORY_GB`` left once the job's own estimate is counted (0 when none).

    The estimate is ``estimate_job_memory``'s, of the model as built (no second build).
    """
    estimate = job_memory(measure_model(model), len(base_and_head(model)[0].layers) - 1, batch_size)
    return max(0, int(load_settings().job_memory_gb * GB) - estimate)


def _write_logs(log_dir: str | Path, model: keras.Model, fitted: FittedPhase, data: TrainingData,
                evaluation: Evaluation, step: int) -> None:
    """The run's last TensorBoard logs: its graph, confusion matrix and the projector's feature vectors."""
    write_final_logs(log_dir, model, evaluation.confusion, evaluation.class_names, step)
    shown = np.asarray(evaluation.indices[:PROJECTOR_LIMIT], dtype=np.int64)
    if fitted.cached:
        rows = _Rows(fitted.rows, shown)
        batches = (np.asarray(rows[i:i + EVAL_BATCH], np.float32) for i in range(0, len(shown), EVAL_BATCH))
        vectors = penultimate_vectors(fitted.trained, batches)
    else:
        vectors = penultimate_vectors(model, (x for x, _ in data.images(shown, EVAL_BATCH)))
    names = evaluation.class_names
    predicted = evaluation.probabilities[:len(shown)].argmax(axis=1)
    write_projector(log_dir, vectors, [names[i] for i in evaluation.truth[:len(shown)]],
                    [names[i] for i in predicted], [data.dataset.files[i] for i in shown])


def precision_check(model: keras.Model, data: TrainingData, indices: np.ndarray) -> PrecisionCheck | None:
    """bfloat16 against float32 on the held-out images, when inference could ever use bfloat16 here.

    Accuracy is checked, not assumed: Predict uses bfloat16 for a run only when this passed
    (``precision_for_run``).
    """
    if requested_precision()[0] == "float32" or bfloat16_units() is False or not len(indices):
        return None
    try:
        return compare_precisions(model, (x.numpy() for x, _ in data.images(indices, EVAL_BATCH)))
    except ConfigError:  # a model with no bfloat16 copy: it predicts in float32
        return None
