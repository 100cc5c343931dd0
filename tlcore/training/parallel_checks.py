"""What one run across several workers can train, checked before anything starts.

A run across workers (``TrainConfig.workers`` above 1, ``tlcore.training.data_parallel``) trains
the first phase only, on images (no feature cache: every worker runs the whole network), and
its first worker measures the validation images after each epoch. A config asking for more (augmentation, a
fine-tuning phase, early stopping) is refused in words rather than trained without it; so are more
workers than the machines' CPUs (each worker holds one) and too few images for one batch per worker.
"""

from __future__ import annotations

from tlcore.core.errors import ConfigError
from tlcore.data.datasets import ImageDataset
from tlcore.training.config import MAX_WORKERS, TrainConfig
from tlcore.training.data_parallel import shard

ACROSS_WORKERS = ("A run across workers trains the first phase only, on images: no feature cache (every worker "
                  "runs the whole network on its share of the images each step) and no augmentation; the first "
                  "worker measures the held-out images after each epoch while the others wait.")
"""What a run across workers does differently, in words (the Train page and README say it)."""


def unsupported_across_workers(config: TrainConfig) -> list[str]:
    """The settings of ``config`` a run across workers cannot honour, in plain words; empty when it can train it."""
    asked = [(config.augment, "augmentation"), (bool(config.fine_tune_from and config.fine_tune_epochs),
                                                 "a fine-tuning phase"), (bool(config.early_stopping), "early stopping")]
    return [words for on, words in asked if on]


def most_workers(cpus: float | None) -> int:
    """The most workers one run may ask for where ``cpus`` CPUs can train (None: not known yet)."""
    return MAX_WORKERS if cpus is None else max(1, min(MAX_WORKERS, int(cpus)))


def check_across_workers(dataset: ImageDataset, config: TrainConfig, cpus: float | None) -> None:
    """Refuse, in words, a run across ``config.workers`` workers that could not train as asked.

    Args:
        cpus: CPUs of the machines jobs can train on (``Capacity.cpus``); None when not known yet
            (a cluster this server has not joined): Ray Train then waits for the workers' CPUs.

    Raises:
        ConfigError: a setting it cannot honour, more workers than ``cpus`` or ``MAX_WORKERS``, or
            too few training images for one batch per worker.
    """
    config.check()
    if config.workers == 1:
        return
    unsupported = unsupported_across_workers(config)
    if unsupported:
        raise ConfigError(f"A run across workers trains the first phase only, without augmentation or early "
                          f"stopping; use 1 worker for these, or turn them off. Received: workers={config.workers} "
                          f"with {' and '.join(unsupported)} (augment={config.augment}, "
                          f"fine_tune_from={config.fine_tune_from!r}, early_stopping={config.early_stopping})")
    if cpus is not None and config.workers > cpus:
        raise ConfigError(f"Each worker of a run needs a CPU of its own, and the machines jobs train on have "
                          f"{cpus:g} CPUs in all. Received: workers={config.workers}")
    train_idx, _ = dataset.split(config.validation_fraction, seed=config.seed)
    shard(train_idx, 0, config.workers, config.batch_size)
