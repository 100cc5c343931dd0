"""A run across workers given back as ``tlcore.train`` gives one: what a queued job trains for ``workers`` above 1.

``train_across_workers`` takes ``tlcore.train``'s arguments, so a job's worker process
(``TrainingWorker.run``) calls it as it calls ``train`` and hands the server the same
``WorkerOutcome`` (history, ``RunResult``, the model file): the server alone writes the run, and it
reads on the Runs page as any other. It trains with ``train_data_parallel`` (Ray Train's workers,
one CPU each; the calling process is their driver and is started with no CPU of its own, so two
workers on two cores do not wait for the driver's core), then assembles the spec, sets the weights
the workers trained, recomputes trained batch-norm statistics and evaluates the validation images
with the very functions ``train`` uses.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tlcore.data.datasets import ImageDataset
from tlcore.models.build import _assemble, check_transfer_spec
from tlcore.models.spec import TransferSpec
from tlcore.training.config import BatchProgress, TrainConfig, TrainResult
from tlcore.training.data_parallel import train_data_parallel
from tlcore.training.memory import check_job_memory
from tlcore.training.parallel_checks import check_across_workers
from tlcore.training.tensorboard import write_final_logs, write_history_scalars
from tlcore.training.train import (
    TrainingData,
    evaluate_images,
    precision_check,
    recalibrate_batchnorm,
    trained_batchnorm,
)


def train_across_workers(
    spec: TransferSpec,
    dataset: ImageDataset,
    config: TrainConfig,
    *,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[pd.DataFrame], None] | None = None,
    stop: threading.Event | None = None,
    checked: bool = False,
    log_dir: str | Path | None = None,
    resources: dict[str, float] | None = None,
) -> TrainResult:
    """Train ``spec`` across ``config.workers`` Ray Train workers and evaluate it as ``tlcore.train`` does.

    Args:
        on_batch, on_epoch, stop: as ``tlcore.train`` (the first worker's batches; Stop ends every
            worker after the same step and the result keeps what was learned).
        checked: the job queue already checked the spec, the job's memory and the workers.
        log_dir: where the run's TensorBoard logs go (its graph and confusion matrix, at the end).
        resources: Ray custom resources each worker asks for besides its CPU (``TL_JOB_RESOURCES``).

    Raises:
        ConfigError: a setting a run across workers cannot honour, or too few images for a batch per worker.
        BudgetError, ShapeError: as ``tlcore.train``.
    """
    spec = dataclasses.replace(spec, num_classes=len(dataset.class_names))
    if not checked:
        check_across_workers(dataset, config, None)
        check_transfer_spec(spec)
        check_job_memory(spec, config.batch_size)
    started = time.perf_counter()
    trained = train_data_parallel(spec, dataset, config, on_batch=on_batch, on_epoch=on_epoch, stop=stop,
                                  resources=resources)
    model = _assemble(spec)
    model.set_weights(trained.weights)
    data = TrainingData(dataset, spec.backbone, tuple(spec.input_shape[:2]), config.resize_mode)
    train_idx, val_idx = dataset.split(config.validation_fraction, seed=config.seed)
    batchnorm = trained_batchnorm(model)
    if batchnorm:  # each worker kept its own moving statistics: the first one's, recomputed on the training images
        recalibrate_batchnorm(model, batchnorm, data.images(train_idx, config.batch_size, seed=config.seed))
    held_out = val_idx if len(val_idx) else train_idx
    evaluation = evaluate_images(model, data, held_out, dataset.class_names)
    if log_dir is not None:  # the workers write no logs: the epochs' scalars come from the history they sent back
        write_history_scalars(log_dir, trained.history, config.learning_rate)
        write_final_logs(log_dir, model, evaluation.confusion, evaluation.class_names, len(trained.history))
    return TrainResult(model, spec, config, dataset.class_names, trained.history, evaluation, trained.stopped,
                       False, time.perf_counter() - started, len(batchnorm), precision_check(model, data, held_out),
                       tuple(trained.steps[rank] for rank in sorted(trained.steps)))
