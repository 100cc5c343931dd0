"""Training as plain values: the configuration, the progress a loop reports, and what it gives back.

Nothing here trains (``tlcore.training.train`` does). These frozen types cross every
boundary: from a page to a Ray worker, from the worker back to the server, and into the
run store.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tlcore.core.errors import ConfigError
from tlcore.core.values import finite_number, whole_number
from tlcore.data.datasets import MAX_VALIDATION_FRACTION
from tlcore.data.images import RESIZE_MODES, ResizeMode
from tlcore.inference.verdicts import PrecisionCheck
from tlcore.models.spec import TransferSpec

if TYPE_CHECKING:
    import keras


def _optimizers():
    """Keras's optimizers, imported when one is made: a config is plain data, and the pages that only
    read configs (Home, Runs) must not load TensorFlow."""
    import keras

    return keras.optimizers


def _fused_adam(rate: float) -> keras.optimizers.Adam:
    """Keras's Adam with TensorFlow's fused update (``tlcore.training.fused_adam``), made when one is needed."""
    from tlcore.training.fused_adam import fused_adam

    return fused_adam(rate)


OPTIMIZERS = {
    "adam": _fused_adam,
    "sgd": lambda rate: _optimizers().SGD(rate, momentum=0.9),
    "rmsprop": lambda rate: _optimizers().RMSprop(rate),
}


HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "complete"]


TRAIN_PHASE, FINE_TUNE_PHASE = "train", "fine-tune"
HISTORY_PHASES = (TRAIN_PHASE, FINE_TUNE_PHASE)
"""The phases of a history's rows: the first phase, then the optional fine-tuning one."""
FEATURES_PHASE = "features"
"""The phase ``BatchProgress`` reports while frozen-prefix features are computed."""


MAX_WORKERS = 64
"""The most Ray Train workers one run may span."""


_KINDS = {int: ("a whole number", whole_number), float: ("a finite number", finite_number),
          bool: ("true or false", lambda value: isinstance(value, bool)),
          str: ("text", lambda value: isinstance(value, str)), type(None): ("None", lambda value: value is None)}
"""Each kind a ``TrainConfig`` field may hold: its name in a message, and its test (a float field takes a whole
number too)."""
_FIELD_KINDS: dict[str, tuple[type, ...]] = {
    "epochs": (int,), "batch_size": (int,), "learning_rate": (float,), "optimizer": (str,),
    "validation_fraction": (float,), "seed": (int,), "augment": (bool,), "early_stopping": (int, type(None)),
    "fine_tune_from": (str, type(None)), "fine_tune_epochs": (int,), "fine_tune_learning_rate": (float,),
    "cache_features": (bool,), "resize_mode": (str,), "workers": (int,),
}
"""What each field of a ``TrainConfig`` holds."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train, as plain values.

    Attributes:
        epochs: epochs of the first phase (head, and any layers the spec unfroze).
        batch_size: images per step.
        learning_rate: of the first phase.
        optimizer: "adam", "sgd" (momentum 0.9) or "rmsprop".
        validation_fraction: share of each class held out (stratified, seeded).
        seed: for the split, the initial weights and the shuffling.
        augment: random flips, rotations and zooms (turns feature caching off).
        early_stopping: stop after this many epochs without a better validation
            loss, restoring the best weights; None for never.
        fine_tune_from: a second phase that unfreezes from this layer ("all" for
            everything) and continues at ``fine_tune_learning_rate``; None for none.
        fine_tune_epochs: epochs of the second phase.
        fine_tune_learning_rate: its (low) learning rate.
        cache_features: compute frozen layers once (when possible).
        resize_mode: "crop" or "squash" to fit images to the input size.
    """

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    validation_fraction: float = 0.2
    seed: int = 0
    augment: bool = False
    early_stopping: int | None = None
    fine_tune_from: str | None = None
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    cache_features: bool = True
    resize_mode: ResizeMode = "crop"
    workers: int = 1
    """Ray Train workers one run trains on, data-parallel (``tlcore.training.data_parallel``); 1: one process."""

    def check(self) -> None:
        """Raises ConfigError for a value of the wrong kind or outside what is accepted (before anything is
        built or stored: a config may come from a JSON file or a bundle)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kinds = [_KINDS[kind] for kind in _FIELD_KINDS[field.name]]
            if not any(test(value) for _, test in kinds):
                raise ConfigError(f"{field.name} must be {' or '.join(words for words, _ in kinds)}. "
                                  f"Received: {field.name}={value!r}")
        rules = [
            (1 <= self.workers <= MAX_WORKERS,
             f"Workers must be 1 to {MAX_WORKERS}. Received: workers={self.workers}"),
            (self.epochs >= 1, f"Epochs must be at least 1. Received: epochs={self.epochs}"),
            (self.batch_size >= 1, f"Batch size must be at least 1. Received: batch_size={self.batch_size}"),
            (0 < self.learning_rate < 1, f"Learning rate must be between 0 and 1. Received: {self.learning_rate}"),
            (self.optimizer in OPTIMIZERS, f"Optimizer must be one of {list(OPTIMIZERS)}. Received: {self.optimizer!r}"),
            (self.fine_tune_epochs >= 0, f"Fine-tune epochs must be 0 or more. Received: {self.fine_tune_epochs}"),
            (0 < self.fine_tune_learning_rate < 1,
             f"Fine-tune learning rate must be between 0 and 1. Received: {self.fine_tune_learning_rate}"),
            (0 <= self.validation_fraction <= MAX_VALIDATION_FRACTION,
             f"The validation share must be from 0 to {MAX_VALIDATION_FRACTION}. "
             f"Received: validation_fraction={self.validation_fraction}"),
            (0 <= self.seed < 2**32, f"Seed must be from 0 to 2**32 - 1. Received: seed={self.seed}"),
            (self.early_stopping is None or self.early_stopping >= 0,
             f"Early stopping's patience must be None or 0 (both off), or a number of epochs. "
             f"Received: early_stopping={self.early_stopping}"),
            (self.resize_mode in RESIZE_MODES,
             f"Resize mode must be one of {RESIZE_MODES}. Received: resize_mode={self.resize_mode!r}"),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.fine_tune_from else 0)


@dataclasses.dataclass(frozen=True)
class BatchProgress:
    """Where training is: phase, epoch (1-based, over both phases), batch within it."""

    phase: str
    epoch: int
    epochs: int
    batch: int
    batches: int

    @property
    def fraction(self) -> float:
        """Share of all planned batches (of this phase's kind) done, 0 to 1 (0 for a count of none: a report
        from elsewhere that does not add up never breaks the page reading it)."""
        planned = self.epochs * self.batches
        if planned <= 0:
            return 0.0
        return min(max(((self.epoch - 1) * self.batches + self.batch) / planned, 0.0), 1.0)

    def describe(self) -> str:
        """Where training is, in words."""
        if self.phase == FEATURES_PHASE:
            return f"computing the frozen layers' features once, batch {self.batch} of {self.batches}"
        return f"epoch {self.epoch} of {self.epochs}, batch {self.batch} of {self.batches}"


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How the trained model does on the validation images.

    Attributes:
        class_names: in label order.
        accuracy, loss: over the validation set.
        confusion: counts, rows true class, columns predicted class.
        precision, recall: per class (0 where undefined).
        indices: dataset indices of the validation images.
        truth: their true class indices.
        probabilities: (n, classes) model outputs for them.
    """

    class_names: tuple[str, ...]
    accuracy: float
    loss: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    indices: np.ndarray
    truth: np.ndarray
    probabilities: np.ndarray

    @classmethod
    def of(cls, probabilities: np.ndarray, truth: np.ndarray, indices: np.ndarray,
           class_names: tuple[str, ...]) -> Evaluation:
        """The evaluation of ``probabilities`` (n, classes) against the true classes ``truth``."""
        classes = len(class_names)
        predicted = probabilities.argmax(axis=1)
        confusion = np.zeros((classes, classes), dtype=int)
        np.add.at(confusion, (truth, predicted), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.nan_to_num(np.diag(confusion) / confusion.sum(axis=0))
            recall = np.nan_to_num(np.diag(confusion) / confusion.sum(axis=1))
        picked = probabilities[np.arange(len(truth)), truth] if len(truth) else np.ones(0)
        return cls(
            class_names, float((predicted == truth).mean()) if len(truth) else float("nan"),
            float(-np.log(np.clip(picked, 1e-7, 1)).mean()) if len(truth) else float("nan"),
            confusion, precision, recall, np.asarray(indices), np.asarray(truth), probabilities,
        )

    def per_class(self) -> pd.DataFrame:
        return pd.DataFrame({"class": self.class_names, "precision": self.precision,
                             "recall": self.recall, "images": self.confusion.sum(axis=1)})

    def confidently_wrong(self, n: int = 8) -> pd.DataFrame:
        """The ``n`` wrong predictions made with the most confidence (``index`` is the dataset's)."""
        truth = self.truth
        predicted = self.probabilities.argmax(axis=1)
        wrong = np.flatnonzero(predicted != truth)
        order = wrong[np.argsort(-self.probabilities[wrong, predicted[wrong]])][:n]
        return pd.DataFrame({
            "index": self.indices[order],
            "true": [self.class_names[i] for i in truth[order]],
            "predicted": [self.class_names[i] for i in predicted[order]],
            "confidence": self.probabilities[order, predicted[order]],
        })


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """A finished (or stopped) training run."""

    model: keras.Model
    spec: TransferSpec
    config: TrainConfig
    class_names: tuple[str, ...]
    history: pd.DataFrame
    evaluation: Evaluation
    stopped: bool
    feature_cache: bool
    seconds: float
    recalibrated_batchnorm: int = 0
    precision_check: PrecisionCheck | None = None
    worker_steps: tuple[int, ...] = ()
    """Steps each Ray Train worker took, by rank, for a run across workers; empty for one process."""
