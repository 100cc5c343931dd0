"""A finished run's results as one value: what the run store keeps in ``result.json``, typed.

``RunResult`` crosses every boundary a run's outcome crosses: from a Ray worker back to
the server, into ``result.json`` and out of it again (``RunRecord.result``), to the pages.
``from_json`` reads every ``result.json`` an earlier release wrote: keys added since
(``confidently_wrong``, ``recalibrated_batchnorm``, ``precision_check``, ``worker_steps``) get their
"not recorded" defaults.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tlcore.inference.verdicts import PrecisionCheck
from tlcore.training.config import TrainResult

WRONG_SHOWN = 8
"""How many of the most confidently wrong validation images a run keeps."""


@dataclasses.dataclass(frozen=True)
class WrongPrediction:
    """One validation image the model got wrong, sure of itself.

    Attributes:
        index: the image's index in the run's dataset.
        true: its class.
        predicted: the class the model took it for.
        confidence: the probability the model gave ``predicted`` (0 to 1).
    """

    index: int
    true: str
    predicted: str
    confidence: float

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> WrongPrediction:
        return cls(int(values["index"]), str(values["true"]), str(values["predicted"]),
                   float(values["confidence"]))


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _precision_check_problem(check: PrecisionCheck) -> str | None:
    """What in a precision check is not a count, a share from 0 to 1, an error of 0 or more or a cosine from -1
    to 1 (Predict compares them with its limits); None when all are."""
    values = dataclasses.asdict(check)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values.values()):
        return f"a precision check of {sorted((k, type(v).__name__) for k, v in values.items())[:5]}, not all numbers"
    if not (check.images >= 0 and check.images == int(check.images) and 0.0 <= check.top1_agreement <= 1.0
            and check.max_abs_error >= 0.0 and all(-1.0 <= c <= 1.0 for c in (check.min_cosine, check.mean_cosine))):
        return f"a precision check out of range ({values})"
    return None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """How a finished (or stopped) run did on its held-out images, and how it trained.

    Attributes:
        class_names: in the model's output order.
        accuracy, loss: over the validation images (NaN when there were none).
        confusion: counts, rows the true class, columns the predicted one.
        precision, recall: per class, in ``class_names`` order (0 where undefined).
        validation_indices: dataset indices of the validation images.
        confidently_wrong: the wrong predictions made with the most confidence, most
            confident first (at most ``WRONG_SHOWN``).
        stopped: Stop was pressed before the planned epochs ended.
        feature_cache: the frozen layers' features were computed once and reused.
        seconds: how long training took; None when not recorded.
        recalibrated_batchnorm: batch-norm layers whose statistics were recomputed at the end.
        precision_check: bfloat16 against float32 on the validation images; None when not made.
        worker_steps: steps each worker took, by rank, for a run across workers; empty for one process.
    """

    class_names: tuple[str, ...]
    accuracy: float
    loss: float
    confusion: tuple[tuple[int, ...], ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    validation_indices: tuple[int, ...] = ()
    confidently_wrong: tuple[WrongPrediction, ...] = ()
    stopped: bool = False
    feature_cache: bool = False
    seconds: float | None = None
    recalibrated_batchnorm: int = 0
    precision_check: PrecisionCheck | None = None
    worker_steps: tuple[int, ...] = ()

    @classmethod
    def of(cls, result: TrainResult) -> RunResult:
        """The stored part of a ``TrainResult`` (everything but the model and the raw outputs)."""
        evaluation = result.evaluation
        wrong = evaluation.confidently_wrong(WRONG_SHOWN)
        return cls(
            tuple(str(name) for name in result.class_names), float(evaluation.accuracy), float(evaluation.loss),
            tuple(tuple(int(n) for n in row) for row in evaluation.confusion),
            _floats(evaluation.precision), _floats(evaluation.recall),
            tuple(int(i) for i in evaluation.indices),
            tuple(WrongPrediction(int(row.index), str(row.true), str(row.predicted), float(row.confidence))
                  for row in wrong.itertuples(index=False)),
            bool(result.stopped), bool(result.feature_cache), float(result.seconds),
            int(result.recalibrated_batchnorm), result.precision_check,
            tuple(int(n) for n in result.worker_steps),
        )

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> RunResult:
        """Read a ``result.json`` (as parsed), from this release or an earlier one.

        Keys an earlier release did not write get their defaults: no confidently wrong
        images, no recalibrated layers, no precision check (so such a run predicts in float32),
        and NaN metrics or empty tables if even those are missing.
        """
        check = values.get("precision_check")
        seconds = values.get("seconds")
        return cls(
            class_names=tuple(str(name) for name in values.get("class_names", ())),
            accuracy=float(values.get("accuracy", math.nan)),
            loss=float(values.get("loss", math.nan)),
            confusion=tuple(tuple(int(n) for n in row) for row in values.get("confusion", ())),
            precision=_floats(values.get("precision", ())),
            recall=_floats(values.get("recall", ())),
            validation_indices=tuple(int(i) for i in values.get("validation_indices", ())),
            confidently_wrong=tuple(WrongPrediction.from_json(row) for row in values.get("confidently_wrong", ())),
            stopped=bool(values.get("stopped", False)),
            feature_cache=bool(values.get("feature_cache", False)),
            seconds=None if seconds is None else float(seconds),
            recalibrated_batchnorm=int(values.get("recalibrated_batchnorm", 0)),
            precision_check=PrecisionCheck(**check) if check else None,
            worker_steps=tuple(int(n) for n in values.get("worker_steps", ())),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, in the layout ``result.json`` has always had."""
        return {
            "class_names": list(self.class_names),
            "accuracy": self.accuracy, "loss": self.loss,
            "confusion": [list(row) for row in self.confusion],
            "precision": list(self.precision), "recall": list(self.recall),
            "validation_indices": list(self.validation_indices),
            "confidently_wrong": [dataclasses.asdict(row) for row in self.confidently_wrong],
            "stopped": self.stopped, "feature_cache": self.feature_cache, "seconds": self.seconds,
            "recalibrated_batchnorm": self.recalibrated_batchnorm,
            "precision_check": dataclasses.asdict(self.precision_check) if self.precision_check else None,
            **({"worker_steps": list(self.worker_steps)} if self.worker_steps else {}),  # a run across workers only
        }

    def mismatch(self) -> str | None:
        """What in this result does not fit its own classes, or None (for a ``result.json`` from elsewhere, a
        bundle's or a worker's): an n x n confusion matrix of counts, n precisions and recalls from 0 to 1, wrong
        predictions naming the classes, an accuracy from 0 to 1 and a finite loss (or NaN: no validation),
        finite seconds and a precision check of numbers in their ranges."""
        n, names = len(self.class_names), set(self.class_names)
        if len(names) != n:
            return f"class names that repeat ({list(self.class_names)[:5]})"
        if len(self.confusion) != n or any(len(row) != n for row in self.confusion):
            return f"a confusion matrix of {len(self.confusion)} rows of {[len(r) for r in self.confusion[:5]]}"
        if any(count < 0 for row in self.confusion for count in row):
            return "a negative count in the confusion matrix"
        for what, values in (("precision", self.precision), ("recall", self.recall)):
            if len(values) != n or not all(0.0 <= v <= 1.0 for v in values):
                return f"{len(values)} {what} values, not all from 0 to 1"
        for wrong in self.confidently_wrong:
            if {wrong.true, wrong.predicted} - names or not 0.0 <= wrong.confidence <= 1.0 or wrong.index < 0:
                return f"a confidently wrong image of {wrong.true!r} taken for {wrong.predicted!r}"
        if any(index < 0 for index in self.validation_indices):
            return "a negative validation index"
        if not (math.isnan(self.accuracy) or 0.0 <= self.accuracy <= 1.0):
            return f"an accuracy of {self.accuracy!r}, not from 0 to 1"
        if not (math.isnan(self.loss) or 0.0 <= self.loss < math.inf):
            return f"a loss of {self.loss!r}, not finite and 0 or more"
        if self.seconds is not None and not 0.0 <= self.seconds < math.inf:
            return f"{self.seconds!r} seconds of training"
        if self.precision_check is not None and (problem := _precision_check_problem(self.precision_check)):
            return problem
        return None

    def per_class(self) -> pd.DataFrame:
        """One row per class: ``class``, ``precision``, ``recall``."""
        return pd.DataFrame({"class": list(self.class_names), "precision": list(self.precision),
                             "recall": list(self.recall)})
