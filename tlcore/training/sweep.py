"""Head sweeps: a small search over head settings on the frozen features of one Build model, in Ray Tune.

The base runs once: its pooled output for every image is the feature file a run of the
same model reads (``feature_cache``: the same key, computed at most once, memory-mapped).
Each trial then trains only a head on those rows (hidden units, dropout, learning rate,
optimizer, up to ``max_epochs`` with early stopping), exactly as ``train`` trains the head
of a run on cached features (the same assembly, seed and batches), so a trial's score is the
score its run gets.

From the app the trials are Ray Tune trials, ``concurrency`` at a time, under Tune's own
``ASHAScheduler`` (trials that lag at a rung stop early); the configurations are drawn
from Tune's search spaces with a seed, the model's current head first
(``points_to_evaluate``), so a sweep is reproducible and always measures the default. A
notebook runs the same trials one after another in its own process, without a Ray
instance (and without ASHA's early stops). A sweep is kept under
``<data_dir>/sweeps/<key>.json``: the same key never runs twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from tlcore.core.atomic import atomic_write_text
from tlcore.core.errors import BudgetError, ConfigError
from tlcore.core.settings import load_settings
from tlcore.data.datasets import ImageDataset
from tlcore.data.pipeline import row_batches
from tlcore.models.build import attach_head, check_transfer_spec, classifier_head, frozen_base
from tlcore.models.spec import TransferSpec
from tlcore.models.zoo import get_backbone
from tlcore.training.config import OPTIMIZERS, TrainConfig
from tlcore.training.feature_cache import FeatureCache
from tlcore.training.train import EVAL_BATCH, HEAD_STEPS_PER_EXECUTION, default_feature_cache, frozen_split
from tlcore.training.worker import connect, ray_module

SWEEP_VERSION = 1
MAX_TRIALS = 64
HIDDEN_UNITS = (0, 64, 128, 256, 512)
DROPOUT = (0.0, 0.6)
LEARNING_RATE = (1e-4, 1e-2)
TRIAL_MEMORY_MB = 900
"""What one trial's process is estimated to hold (TensorFlow, a head, a batch of rows), measured
at about 700 MB resident on this machine; the feature file is shared, memory-mapped."""
PENDING, RUNNING, DONE, STOPPED_EARLY = "pending", "running", "done", "stopped by ASHA"


@dataclasses.dataclass(frozen=True)
class SweepBudget:
    """What a sweep may spend, checked before anything starts.

    Attributes:
        trials: head settings tried (the current head among them), 2 to ``MAX_TRIALS``.
        concurrency: trials at once (Ray Tune), at most the cores Ray may use.
        max_epochs: epochs a trial may train; patience: early stopping's, on validation loss.
        seed: draws the settings; every trial trains with the run's seed.
    """

    trials: int = 12
    concurrency: int = 2
    max_epochs: int = 20
    patience: int = 3
    seed: int = 0

    def check(self, *, cores: int | None = None, memory_gb: float | None = None) -> None:
        """Raises ConfigError or BudgetError, in words, for a sweep this server should not start."""
        cores = cores or os.cpu_count() or 1
        memory_gb = load_settings().job_memory_gb if memory_gb is None else memory_gb
        if not 2 <= self.trials <= MAX_TRIALS:
            raise ConfigError(f"A sweep tries 2 to {MAX_TRIALS} head settings. Received: trials={self.trials}")
        if not 1 <= self.concurrency <= cores:
            raise ConfigError(f"A sweep runs 1 to {cores} trials at once here (one core each). "
                              f"Received: concurrency={self.concurrency}")
        if not 1 <= self.max_epochs <= 200:
            raise ConfigError(f"A trial trains 1 to 200 epochs. Received: max_epochs={self.max_epochs}")
        if not 1 <= self.patience <= self.max_epochs:
            raise ConfigError(f"Early stopping's patience must be from 1 to max_epochs ({self.max_epochs}). "
                              f"Received: patience={self.patience}")
        needed = self.concurrency * TRIAL_MEMORY_MB / 1024
        if needed > memory_gb:
            raise BudgetError(f"{self.concurrency} trials at once need about {needed:.1f} GB "
                              f"({TRIAL_MEMORY_MB} MB each), more than the {memory_gb:g} GB a job may use "
                              "(TL_JOB_MEMORY_GB). Run fewer trials at once.")


def search_space() -> dict[str, Any]:
    """Ray Tune's search space of a head: hidden units, dropout, learning rate (log-uniform), optimizer."""
    from ray import tune

    return {"hidden_units": tune.choice(list(HIDDEN_UNITS)), "dropout": tune.uniform(*DROPOUT),
            "learning_rate": tune.loguniform(*LEARNING_RATE), "optimizer": tune.choice(sorted(OPTIMIZERS))}


def trial_settings(spec: TransferSpec, config: TrainConfig, budget: SweepBudget) -> list[dict[str, Any]]:
    """The settings every trial trains: the current head first, then draws from ``search_space`` (seeded)."""
    space, state = search_space(), np.random.RandomState(budget.seed)
    settings = [{"hidden_units": spec.hidden_units, "dropout": float(spec.dropout),
                 "learning_rate": float(config.learning_rate), "optimizer": config.optimizer}]
    while len(settings) < budget.trials:
        drawn = {name: domain.sample(random_state=state) for name, domain in space.items()}
        settings.append({"hidden_units": int(drawn["hidden_units"]), "dropout": round(float(drawn["dropout"]), 3),
                         "learning_rate": float(f"{drawn['learning_rate']:.3g}"), "optimizer": str(drawn["optimizer"])})
    return settings


class _Reporter(keras.callbacks.Callback):
    """Reports every epoch: its validation loss and accuracy, and the score a run would keep
    (the validation accuracy at the best validation loss so far, as early stopping restores)."""

    def __init__(self, report: Callable[[dict], None], max_epochs: int):
        super().__init__()
        self.report, self.max_epochs, self.best_loss, self.score = report, max_epochs, np.inf, 0.0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss, accuracy = float(logs.get("val_loss", np.nan)), float(logs.get("val_accuracy", np.nan))
        if loss < self.best_loss:
            self.best_loss, self.score = loss, accuracy
        self.report({"epoch": epoch + 1, "val_loss": loss, "val_accuracy": accuracy,
                     "best_val_loss": self.best_loss, "score": self.score, "loss": float(logs.get("loss", np.nan)),
                     "last": bool(self.model.stop_training) or epoch + 1 >= self.max_epochs})


def fit_head(settings: dict[str, Any], *, spec: dict, path: str, labels: np.ndarray, train_idx: np.ndarray,
             val_idx: np.ndarray, batch_size: int, seed: int, head_draws: tuple, max_epochs: int, patience: int,
             report: Callable[[dict], None]) -> None:
    """Train one head on the memory-mapped rows at ``path`` exactly as ``train`` trains that run's head.

    Only the head after the pooling is built, on the pooled rows: the base is not rebuilt per
    trial. ``head_draws`` is Python's random state right after the seeded base was built (the
    state ``train``'s head starts from: Keras draws each layer's initializer and dropout seeds
    from it), so the head gets the same initial weights, batches and dropout draws as the run
    this trial would become.
    """
    rows = np.load(path, mmap_mode="r")
    trial = dataclasses.replace(_spec_of(spec), hidden_units=int(settings["hidden_units"]),
                                dropout=float(settings["dropout"]))
    model = head_model(trial, tuple(rows.shape[1:]), seed=seed, head_draws=head_draws)
    model.compile(optimizer=OPTIMIZERS[settings["optimizer"]](float(settings["learning_rate"])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=HEAD_STEPS_PER_EXECUTION)  # reports per epoch: no batch to return to
    model.fit(row_batches(rows, labels, train_idx, batch_size=batch_size, seed=seed),
              validation_data=row_batches(rows, labels, val_idx, batch_size=EVAL_BATCH), epochs=max_epochs,
              shuffle=False, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=patience), _Reporter(report, max_epochs)])


def head_model(spec: TransferSpec, features: tuple[int, ...], *, seed: int, head_draws: tuple) -> keras.Model:
    """``spec``'s head after its pooling, on pooled rows of shape ``features``, with the initial weights
    the trainable rest of ``frozen_split(_assemble(spec))`` gets under ``seed`` (see ``fit_head``)."""
    keras.utils.set_random_seed(seed)
    random.setstate(head_draws)
    inputs = keras.Input(shape=features, name="cut")
    return keras.Model(inputs, classifier_head(inputs, spec), name="trainable_rest")


def base_draws(spec: TransferSpec, seed: int) -> tuple[keras.Model, tuple]:
    """``spec``'s base built as ``train`` builds it under ``seed``, and Python's random state right after it."""
    keras.utils.set_random_seed(seed)
    base = frozen_base(spec)
    return base, random.getstate()


def _spec_of(values: dict) -> TransferSpec:
    return TransferSpec(**{**values, "input_shape": tuple(values["input_shape"])})


def _tune_trial(settings: dict[str, Any], **data: Any) -> None:
    """A Ray Tune function trainable: ``fit_head`` reporting each epoch to Tune (which may stop it)."""
    from ray import tune

    fit_head(settings, report=tune.report, **data)


@dataclasses.dataclass(frozen=True)
class SweepTrial:
    """One trial as it stands: its settings, state, epochs and scores so far."""

    number: int
    hidden_units: int
    dropout: float
    learning_rate: float
    optimizer: str
    state: str = PENDING
    epochs: int = 0
    score: float = 0.0
    val_loss: float = float("nan")

    @property
    def settings(self) -> dict[str, Any]:
        return {"hidden_units": self.hidden_units, "dropout": self.dropout, "learning_rate": self.learning_rate,
                "optimizer": self.optimizer}


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """A finished sweep, as plain values (stored as JSON).

    Attributes:
        key: what it was measured from (equal keys, equal sweeps).
        spec, config: the Build model and training settings swept around (as dicts).
        trials: every trial, the current head first.
        features_cached: the base's features were already on disk.
        features_seconds, seconds: computing them, and the trials.
        scheduler: "ASHA" (Ray Tune) or "none" (one after another in this process).
        dataset: the name and content digest of the images it was measured on ("" in sweeps stored
            before they were kept): "keep the best" trains on those images only.
    """

    key: str
    spec: dict
    config: dict
    budget: dict
    trials: tuple[SweepTrial, ...]
    features_cached: bool
    features_seconds: float
    seconds: float
    scheduler: str
    dataset: dict = dataclasses.field(default_factory=dict)

    def measured_on(self, dataset: ImageDataset) -> bool:
        """Whether this sweep was measured on ``dataset``'s images (an older sweep says nothing: assumed so)."""
        return not self.dataset.get("digest") or self.dataset["digest"] == dataset.digest

    @property
    def best(self) -> SweepTrial:
        """The best score, then the lowest validation loss, then the earliest trial."""
        return min(self.trials, key=lambda t: (-t.score, t.val_loss if np.isfinite(t.val_loss) else np.inf, t.number))

    @property
    def default(self) -> SweepTrial:
        return self.trials[0]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(trial) for trial in self.trials])

    def best_run(self) -> tuple[TransferSpec, TrainConfig]:
        """The winner as an ordinary run's spec and config (``JobQueue.submit`` or ``train`` it)."""
        best, spec = self.best, _spec_of(self.spec)
        spec = dataclasses.replace(spec, hidden_units=best.hidden_units, dropout=best.dropout)
        config = dataclasses.replace(TrainConfig(**self.config), learning_rate=best.learning_rate,
                                     optimizer=best.optimizer, epochs=self.budget["max_epochs"],
                                     early_stopping=self.budget["patience"])
        return spec, config

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SweepResult:
        values = json.loads(text)
        values["trials"] = tuple(SweepTrial(**trial) for trial in values["trials"])
        return cls(**values)


def check_sweep_spec(spec: TransferSpec, config: TrainConfig) -> None:
    """A sweep trains heads on pooled features: the base frozen, no new convolutions, no augmentation."""
    rules = [
        (spec.trainable_from is None, "the whole base frozen (trainable_from=None)",
         f"trainable_from={spec.trainable_from!r}"),
        (spec.conv_blocks == 0, "no new convolutional blocks", f"conv_blocks={spec.conv_blocks}"),
        (spec.pooling != "flatten", "a pooled head (avg or max)", f"pooling={spec.pooling!r}"),
        (not config.augment, "augmentation off (features are computed once)", "augment=True"),
        (not config.fine_tune_from, "no fine-tuning phase", f"fine_tune_from={config.fine_tune_from!r}"),
        (config.validation_fraction > 0, "validation images to score the trials on (validation_fraction above 0)",
         f"validation_fraction={config.validation_fraction}"),
    ]
    for ok, rule, received in rules:
        if not ok:
            raise ConfigError(f"A head sweep trains heads on the frozen base's features, so it needs {rule}. "
                              f"Received: {received}")


def sweeps_folder() -> Path:
    return load_settings().data_dir / "sweeps"


def head_sweep(
    spec: TransferSpec,
    dataset: ImageDataset,
    config: TrainConfig = TrainConfig(),
    *,
    budget: SweepBudget = SweepBudget(),
    use_ray: bool = False,
    cache: FeatureCache | None = None,
    folder: str | os.PathLike | None = None,
    on_trial: Callable[[list[SweepTrial]], None] | None = None,
    model: keras.Model | None = None,
) -> SweepResult:
    """Try ``budget.trials`` heads on the frozen features of ``spec``'s model, and rank them.

    Args:
        spec: the Build model (its base whole and frozen); its head is the first trial.
        dataset: labelled images; the split is ``config``'s (seeded), as a run's.
        config: the run's settings (batch size, split, seed, resize mode; its learning rate
            and optimizer are the first trial's).
        budget: trials, concurrency, epochs and patience (checked before anything starts).
        use_ray: trials as Ray Tune trials under ASHA, ``budget.concurrency`` at once (the app);
            False trains them here, one after another, to the end (a notebook).
        cache: where the base's features are kept (the data folder's by default).
        folder: where sweeps are kept (``sweeps_folder()`` by default).
        on_trial: called with every trial's state whenever one reports an epoch.
        model: the model already built for ``spec`` (its base is what runs once).

    Raises:
        ConfigError: a spec, config or budget a sweep cannot use, in words.
        BudgetError: a model or a sweep over a budget of this server.
        StorageError: the features would not fit ``TL_MAX_DATA_GB``.
    """
    config.check()
    check_sweep_spec(spec, config)
    spec = dataclasses.replace(spec, num_classes=len(dataset.class_names))
    budget.check(cores=_cores(use_ray))
    check_transfer_spec(spec)
    cache = cache or default_feature_cache()
    folder = Path(folder) if folder is not None else sweeps_folder()
    started = time.perf_counter()
    base, head_draws = base_draws(spec, config.seed)  # where the head's random draws start
    prefix, _ = frozen_split(model if model is not None else attach_head(base, spec))
    rows, cached = cache.features(prefix, dataset, backbone=spec.backbone, preprocess=get_backbone(spec.backbone).preprocess,
                                  mode=config.resize_mode)
    path, features_seconds = str(rows.filename), time.perf_counter() - started
    train_idx, val_idx = dataset.split(config.validation_fraction, seed=config.seed)
    settings = trial_settings(spec, config, budget)
    drawn_apart = dataset.copies.within_class or dataset.copies.across_classes  # a split copies changed
    key = _sweep_key(Path(path).stem, spec, config, budget, settings, use_ray, val_idx if drawn_apart else None)
    stored = folder / f"{key}.json"
    if stored.is_file():
        return SweepResult.from_json(stored.read_text())
    spec_values = {**dataclasses.asdict(spec), "input_shape": list(spec.input_shape)}
    data = dict(spec=spec_values, path=path, labels=np.asarray(dataset.labels, dtype=np.int64), train_idx=train_idx,
                val_idx=val_idx, batch_size=config.batch_size, seed=config.seed,
                head_draws=head_draws, max_epochs=budget.max_epochs, patience=budget.patience)
    board = _Board(settings, on_trial)
    started = time.perf_counter()
    if use_ray:
        _run_tune(settings, data, budget, board, folder / "tune" / key)
    else:
        for number, trial in enumerate(settings):
            board.start(number)
            fit_head(trial, report=lambda metrics, number=number: board.result(number, metrics), **data)
            board.finish(number, DONE)
    result = SweepResult(key, spec_values,
                         dataclasses.asdict(config), dataclasses.asdict(budget), tuple(board.trials), cached,
                         features_seconds, time.perf_counter() - started, "ASHA" if use_ray else "none",
                         {"name": dataset.name, "digest": dataset.digest})
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stored, result.to_json())
    return result


def _cores(use_ray: bool) -> int:
    if not use_ray:
        return os.cpu_count() or 1
    connect()
    return int(ray_module().cluster_resources().get("CPU", 1))


def _sweep_key(features: str, spec: TransferSpec, config: TrainConfig, budget: SweepBudget,
               settings: list[dict], use_ray: bool, val_idx: np.ndarray | None = None) -> str:
    """What a sweep is measured from (equal keys, equal sweeps): its features, head and settings, and ``val_idx``,
    the images it validates on, for a dataset with copies (whose split changed when copies began to stay together:
    a sweep stored before on the old split is not this one; a dataset without copies keeps its keys)."""
    described = {"version": SWEEP_VERSION, "features": features, "pooling": spec.pooling,
                 "pool_size": spec.pool_size, "config": dataclasses.asdict(config),
                 "budget": {**dataclasses.asdict(budget), "concurrency": None}, "settings": settings,
                 "scheduler": "ASHA" if use_ray else "none"}
    if val_idx is not None:
        described["validation"] = hashlib.sha256(np.asarray(val_idx, dtype=np.int64).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


_BOARDS: dict[str, _Board] = {}
"""The boards of the sweeps running in this process, by name (Tune's callbacks find theirs here)."""


def _board(name: str) -> _Board:
    return _BOARDS[name]


class _Board:
    """Every trial's state, updated as trials report (from Tune's callback thread or this one)."""

    def __init__(self, settings: list[dict], on_trial: Callable[[list[SweepTrial]], None] | None):
        self.trials = [SweepTrial(number, **trial) for number, trial in enumerate(settings)]
        self._on_trial, self._lock = on_trial, threading.Lock()
        self.last = [False] * len(settings)
        """Whether each trial's last report was its own last epoch (else ASHA stopped it)."""

    def _update(self, number: int, **changes: Any) -> None:
        with self._lock:
            self.trials[number] = dataclasses.replace(self.trials[number], **changes)
            trials = list(self.trials)
        if self._on_trial:
            self._on_trial(trials)

    def start(self, number: int) -> None:
        self._update(number, state=RUNNING)

    def result(self, number: int, metrics: dict) -> None:
        self.last[number] = bool(metrics["last"])
        self._update(number, state=RUNNING, epochs=int(metrics["epoch"]), score=float(metrics["score"]),
                     val_loss=float(metrics["best_val_loss"]))

    def finish(self, number: int, state: str) -> None:
        self._update(number, state=state)


def _run_tune(settings: list[dict], data: dict, budget: SweepBudget, board: _Board, storage: Path) -> None:
    """The trials as Ray Tune trials: ``points_to_evaluate`` in order, ASHA on the score, ``concurrency`` at once."""
    connect()
    ray_module()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    numbers = {json.dumps(trial, sort_keys=True): number for number, trial in enumerate(settings)}

    def number_of(trial) -> int:
        return numbers[json.dumps({name: trial.config[name] for name in settings[0]}, sort_keys=True)]

    class Progress(tune.Callback):
        """Tune's reports into the board; Tune pickles its callbacks, so this holds the board's name only."""

        def __init__(self, name: str):
            self.name = name

        def on_trial_start(self, iteration, trials, trial, **info):
            _board(self.name).start(number_of(trial))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            _board(self.name).result(number_of(trial), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            board, number = _board(self.name), number_of(trial)
            board.finish(number, DONE if board.last[number] else STOPPED_EARLY)

    storage.parent.mkdir(parents=True, exist_ok=True)
    # the board and the stored result are the sweep's record: no CSV, JSON and TensorBoard files per trial
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1":
        _quiet_about_missing_trial_files()
    name = f"{storage.name}-{id(board)}"
    _BOARDS[name] = board
    try:
        _fit_tuner(tune, settings, data, budget, storage, Progress(name), BasicVariantGenerator, ASHAScheduler)
    finally:
        del _BOARDS[name]


class _MissingTrialFiles(logging.Filter):
    """Drops Tune's "Failed to fetch metrics for N trial(s)": its result grid looks for every trial's CSV
    and JSON files, which a sweep turns off (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``), so the warning
    says nothing wrong. Tune's other warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for ")


def _quiet_about_missing_trial_files() -> None:
    """Tune's result-grid logger drops the missing-files warning (once per process)."""
    grid = logging.getLogger("ray.tune.analysis.experiment_analysis")
    if not any(isinstance(kept, _MissingTrialFiles) for kept in grid.filters):
        grid.addFilter(_MissingTrialFiles())


def asha(budget: SweepBudget, ASHAScheduler):  # noqa: N803  (Ray Tune's class, imported with Ray)
    """Ray Tune's ASHA for ``budget``: a trial may stop after ``patience`` epochs (at least 2), never later than
    its last (a 1-epoch sweep's grace period is that epoch: ASHA refuses one over ``max_t``)."""
    return ASHAScheduler(time_attr="training_iteration", max_t=budget.max_epochs,
                         grace_period=min(max(2, budget.patience), budget.max_epochs), reduction_factor=3)


def _fit_tuner(tune, settings, data, budget, storage, progress, BasicVariantGenerator, ASHAScheduler) -> None:
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_tune_trial, **data), {"cpu": 1}),
        param_space=search_space(),
        tune_config=tune.TuneConfig(
            metric="score", mode="max", num_samples=len(settings),
            search_alg=BasicVariantGenerator(points_to_evaluate=settings, random_state=budget.seed,
                                             max_concurrent=budget.concurrency), reuse_actors=True,
            scheduler=asha(budget, ASHAScheduler)),
        run_config=tune.RunConfig(name=storage.name, storage_path=str(storage.parent.resolve()), verbose=0,
                                  callbacks=[progress], log_to_file=False),
    )
    results = tuner.fit()
    errors = [result.error for result in results if result.error is not None]
    if errors:
        raise ConfigError(f"{len(errors)} of {len(settings)} sweep trials failed; the first: {errors[0]}")



def stored_sweep(key: str, folder: str | os.PathLike | None = None) -> SweepResult | None:
    """The sweep kept under ``key`` (a link's value: anything else than 32 hex digits finds nothing)."""
    if not isinstance(key, str) or len(key) != 32 or any(ch not in "0123456789abcdef" for ch in key):
        return None
    path = (Path(folder) if folder is not None else sweeps_folder()) / f"{key}.json"
    try:
        return SweepResult.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None
