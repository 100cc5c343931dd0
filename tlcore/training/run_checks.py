"""Everything about one run that can be checked before anything is built, stored or queued.

The job queue, ``tlcore.train`` (a notebook) and the command line ask the same questions in the same
order, so a bad value from a page, a JSON file or a bundle is refused in words before a run is
recorded, a worker starts or an epoch trains (a misspelt ``fine_tune_from`` used to fail after the
whole first phase).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tlcore.core.errors import ConfigError, DatasetError
from tlcore.data.datasets import ImageDataset
from tlcore.models.build import check_layer_choice, check_transfer_spec
from tlcore.models.spec import TransferSpec
from tlcore.training.config import TrainConfig
from tlcore.training.memory import check_job_memory


def check_run(spec: TransferSpec, dataset: ImageDataset, config: TrainConfig) -> TransferSpec:
    """Check a run of ``spec`` on ``dataset`` with ``config``; returns the spec with one output per class.

    Raises:
        ConfigError, ShapeError: a config or spec value of the wrong kind or outside what is accepted,
            a fine-tuning layer the base does not have, or a reused base whose run is gone.
        DatasetError: too few images to train.
        BudgetError: a model or a job over a budget of this server.
    """
    config.check()
    if len(dataset) < 2:
        raise DatasetError(f"Training needs at least 2 images. Received: {len(dataset)}")
    spec = dataclasses.replace(spec, num_classes=len(dataset.class_names))
    if spec.base_model and not Path(spec.base_model).is_file():  # its run deleted since Build chose it
        raise ConfigError("A reused base must be the model file of a trained run still on this server. "
                          "Received: that run's model is gone (deleted?); choose the base again on Build.")
    check_transfer_spec(spec)
    if config.fine_tune_epochs:
        check_layer_choice("fine_tune_from", config.fine_tune_from, spec.backbone)
    check_job_memory(spec, config.batch_size)
    return spec
