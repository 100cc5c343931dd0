"""Linear probes: how much of a task one layer's pooled output already separates.

A probe is logistic regression on a feature vector: the features standardised with the
training rows' mean and spread (a Keras ``Normalization`` layer), then one softmax
``Dense`` layer, fitted with Adam for a small fixed budget on the same seeded split for
every tap, so the probes differ only in the features they read. Its validation accuracy
says how linearly separable the task is at that depth (Alain and Bengio, 2016).

Plain functions with plain values in and out: the transfer curve runs them one after
another in a notebook, or as parallel Ray tasks from the app (``tlcore.training.parallel``).
Rows are read from an array or a memory-mapped feature file, one batch at a time.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from tlcore.core.errors import ConfigError
from tlcore.data.pipeline import row_batches

PROBE_EPOCHS = 100
"""Epochs every probe trains (a fixed budget: probes compare taps, not training lengths)."""
PROBE_BATCH = 32
PROBE_LEARNING_RATE = 1e-2


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


def probe_model(features: int, classes: int) -> keras.Model:
    """The probe: standardise, then one softmax layer (logistic regression)."""
    return keras.Sequential([
        keras.Input((features,), name="pooled_features"),
        keras.layers.Normalization(name="standardise"),
        keras.layers.Dense(classes, activation="softmax", name="probe"),
    ], name="linear_probe")


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
    model = probe_model(int(rows.shape[1]), classes)
    model.get_layer("standardise").adapt(np.asarray(rows[np.sort(train_idx)], dtype=np.float32))
    model.compile(optimizer=keras.optimizers.Adam(budget.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(row_batches(rows, labels, train_idx, batch_size=budget.batch_size, seed=budget.seed),
              epochs=budget.epochs, shuffle=False, verbose=0)
    val_loss, val_accuracy = model.evaluate(row_batches(rows, labels, val_idx, batch_size=256), verbose=0)
    _, train_accuracy = model.evaluate(row_batches(rows, labels, train_idx, batch_size=256), verbose=0)
    return ProbeScore(tap, int(rows.shape[1]), float(val_accuracy), float(val_loss), float(train_accuracy),
                      time.perf_counter() - started)


def fit_probe_file(path: str, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, *,
                   classes: int, tap: str, budget: ProbeBudget) -> ProbeScore:
    """``fit_probe`` on a feature file, memory-mapped (what a Ray task receives: a path, not the rows)."""
    return fit_probe(np.load(path, mmap_mode="r"), labels, train_idx, val_idx, classes=classes, tap=tap,
                     budget=budget)
