"""Linear probes: how much of a task one layer's pooled output already separates.

A probe is logistic regression on a feature vector: the features standardised with the
training rows' mean and spread (a Keras ``Normalization`` layer), then one softmax
``Dense`` layer, fitted with Adam for a small fixed budget on the same seeded split for
every tap, so the probes differ only in the features they read. Its validation accuracy
says how linearly separable the task is at that depth (Alain and Bengio, 2016).

A probe is small and its rows are few, so its cost is Keras's, not arithmetic: every epoch's
batches go through one ``fit`` call, a block of steps per Python call, and it is scored as a run is
(``tlcore.training.train.evaluate``: forward passes, no metric or evaluation function traced).

Plain functions with plain values in and out: the transfer curve runs them one after
another in a notebook, or as parallel Ray tasks from the app (``tlcore.training.parallel``).
Rows are read from an array or a memory-mapped feature file, one batch at a time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import keras
import numpy as np

from tlcore.core.errors import ConfigError
from tlcore.data.pipeline import row_batches
from tlcore.training.train import evaluate

PROBE_EPOCHS = 100
"""Epochs every probe trains (a fixed budget: probes compare taps, not training lengths)."""
PROBE_BATCH = 32
PROBE_LEARNING_RATE = 1e-2
PROBE_STEPS_PER_EXECUTION = 64
"""Training steps per Python call (the same updates as one at a time)."""
STATISTICS_ROWS = 1024
"""Rows read at a time for the standardisation's mean and variance."""


@dataclasses.dataclass(frozen=True)
class ProbeBudget:
    """How every probe of a curve is fitted (part of the curve's key).

    Attributes:
        epochs: passes over the training rows.
        batch_size: rows per step.
        learning_rate: Adam's.
        seed: initial weights and shuffling.
    """

    epochs: int = PROBE_EPOCHS
    batch_size: int = PROBE_BATCH
    learning_rate: float = PROBE_LEARNING_RATE
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.epochs <= 500:
            raise ConfigError(f"A probe trains for 1 to 500 epochs. Received: epochs={self.epochs}")
        if not 1 <= self.batch_size <= 4096:
            raise ConfigError(f"A probe's batch size must be from 1 to 4096. Received: {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"A probe's learning rate must be between 0 and 1. Received: {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class ProbeScore:
    """One probe's result.

    Attributes:
        tap: the layer whose output it read.
        features: the length of the pooled vector.
        accuracy, loss: on the validation rows.
        train_accuracy: on the rows it was fitted on.
        seconds: fitting and scoring.
    """

    tap: str
    features: int
    accuracy: float
    loss: float
    train_accuracy: float
    seconds: float


def probe_model(mean: np.ndarray, variance: np.ndarray, classes: int) -> keras.Model:
    """The probe: standardise with the training rows' ``mean`` and ``variance``, then one softmax layer."""
    vectors = keras.Input((len(mean),), name="pooled_features")
    standardised = keras.layers.Normalization(mean=mean, variance=variance, name="standardise")(vectors)
    probabilities = keras.layers.Dense(classes, activation="softmax", name="probe")(standardised)
    return keras.Model(vectors, probabilities, name="linear_probe")


def fit_probe(rows: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, *,
              classes: int, tap: str = "", budget: ProbeBudget = ProbeBudget()) -> ProbeScore:
    """Fit a linear probe on ``rows[train_idx]`` and score it on ``rows[val_idx]``.

    Args:
        rows: (images, features) pooled vectors, an array or a memory-mapped file.
        labels: every image's class.
        train_idx, val_idx: the split (the same for every tap of a curve).
        classes: how many classes the task has.
        tap: the layer's name, carried into the score.
        budget: the fixed training budget.

    Raises:
        ConfigError: rows that are not vectors, or an empty split.
    """
    budget.check()
    if rows.ndim != 2:
        raise ConfigError(f"A probe reads pooled vectors (images, features). Received: shape {rows.shape}")
    if not len(train_idx) or not len(val_idx):
        raise ConfigError("A probe needs training and validation rows. "
                          f"Received: {len(train_idx)} and {len(val_idx)}")
    started = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64)
    keras.utils.set_random_seed(budget.seed)
    model = probe_model(*_mean_and_variance(rows, train_idx), classes)
    model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate), loss="sparse_categorical_crossentropy",
                  steps_per_execution=PROBE_STEPS_PER_EXECUTION)
    epochs = row_batches(rows, labels, train_idx, batch_size=budget.batch_size, seed=budget.seed)
    model.fit(epochs.repeat(budget.epochs), shuffle=False, verbose=0)  # reshuffled at every repetition
    names = tuple(str(label) for label in range(classes))  # a run's evaluation, read in ascending rows
    validation = evaluate(model, rows, labels, np.sort(val_idx), names)
    training = evaluate(model, rows, labels, np.sort(train_idx), names)
    return ProbeScore(tap, int(rows.shape[1]), validation.accuracy, validation.loss, training.accuracy,
                      time.perf_counter() - started)


def _chunks(rows: np.ndarray, indices: np.ndarray) -> Iterator[np.ndarray]:
    """``rows[indices]`` in ascending order, ``STATISTICS_ROWS`` at a time (a file is read forwards), as float64."""
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    for start in range(0, len(indices), STATISTICS_ROWS):
        yield np.asarray(rows[indices[start:start + STATISTICS_ROWS]], dtype=np.float64)


def _mean_and_variance(rows: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (population) variance of ``rows[indices]``, in two passes of a chunk at a time."""
    mean = sum(chunk.sum(axis=0) for chunk in _chunks(rows, indices)) / len(indices)
    variance = sum(((chunk - mean) ** 2).sum(axis=0) for chunk in _chunks(rows, indices)) / len(indices)
    return mean, variance


def fit_probe_file(path: str, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, *,
                   classes: int, tap: str, budget: ProbeBudget) -> ProbeScore:
    """``fit_probe`` on a feature file, memory-mapped (what a Ray task receives: a path, not the rows)."""
    return fit_probe(np.load(path, mmap_mode="r"), labels, train_idx, val_idx, classes=classes, tap=tap,
                     budget=budget)
