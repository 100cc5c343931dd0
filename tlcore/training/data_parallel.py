"""One training run across several Ray workers: data-parallel, with Ray Train and TensorFlow's own all-reduce.

``train_data_parallel`` fits a transfer model on ``config.workers`` workers with Ray Train's
``TensorflowTrainer``: each worker builds the same model under
``tf.distribute.MultiWorkerMirroredStrategy`` (Ray Train sets ``TF_CONFIG``), reads its own shard
of the training images (every ``workers``-th one of the seeded split, in order, cut to equal lengths
so every worker takes the same steps) and Keras averages the gradients across workers at every step:
step s of W workers with batch B sees the same W*B images as step s of one worker with batch W*B.
Every worker reports each epoch; at the end each adds its part to the one checkpoint (the first
its trained weights).

It pays on large datasets and several GPU machines; on a 2-core machine two workers only share the
same cores (and each holds a copy of the model), so it is slower than one. Ray is imported here on
purpose (pyproject's "ray-in-jobs-only" contract lists this module with worker, jobs and upload_worker).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tlcore.core.errors import ConfigError
from tlcore.data.datasets import ImageDataset
from tlcore.models.spec import TransferSpec
from tlcore.training.config import HISTORY_COLUMNS, OPTIMIZERS, TrainConfig
from tlcore.training.worker import ray_module


@dataclasses.dataclass(frozen=True)
class ParallelResult:
    """What a data-parallel run gives back.

    Attributes:
        weights: the trained model's weights (``model.get_weights()`` order).
        history: one row per epoch (the first worker's view of the averaged training).
        steps: batches each worker took, by worker rank: all equal, each above 0 when all took part.
        images: training images each worker read, by rank.
    """

    weights: list[np.ndarray]
    history: pd.DataFrame
    steps: dict[int, int]
    images: dict[int, int]


def shard(indices: np.ndarray, rank: int, workers: int, batch_size: int) -> np.ndarray:
    """Worker ``rank``'s share of ``indices``: every ``workers``-th one, cut so that all shards have the
    same whole number of batches (MultiWorkerMirroredStrategy needs every worker to take the same steps)."""
    per_worker = (len(indices) // workers) // batch_size * batch_size
    if per_worker == 0:
        raise ConfigError(f"Each of {workers} workers needs at least one batch of {batch_size} training images. "
                          f"Received: {len(indices)} training images")
    return np.asarray(indices[rank::workers][:per_worker])


def _train_one_worker(loop: dict) -> None:
    """Runs in each Ray Train worker."""
    import keras
    import tensorflow as tf
    from ray import train as ray_train

    from tlcore.data.pipeline import image_batches
    from tlcore.models.build import _assemble
    from tlcore.models.zoo import get_backbone

    spec, dataset, config = loop["spec"], loop["dataset"], loop["config"]
    context = ray_train.get_context()
    rank, workers = context.get_world_rank(), context.get_world_size()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = _assemble(spec)
        optimizer = OPTIMIZERS[config.optimizer](config.learning_rate)
        optimizer.build(model.trainable_variables)
    mine = shard(loop["train_idx"], rank, workers, config.batch_size)
    steps = len(mine) // config.batch_size
    global_batch = config.batch_size * workers
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    def my_shard(_context: tf.distribute.InputContext) -> tf.data.Dataset:
        # in split order: shard r of step s is a fixed slice, so W workers see one worker's global batches
        return image_batches(dataset, mine, tuple(spec.input_shape[:2]),
                             preprocess=get_backbone(spec.backbone).preprocess, batch_size=config.batch_size,
                             mode=config.resize_mode).with_options(options)

    # Keras 3.15's model.fit fails under MultiWorkerMirroredStrategy with 2 workers (its symbolic build
    # reduces a distributed batch: "Attempt to convert a value (PerReplica...) to a Tensor"), so the
    # step is TensorFlow's own custom loop: strategy.run, the loss scaled by the global batch, and the
    # optimizer's apply_gradients, which all-reduces the gradients across workers.
    def replica_step(x, y):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            loss = tf.reduce_sum(losses) / global_batch
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        right = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), tf.cast(y, tf.int64)), tf.float32))
        return loss, right

    @tf.function
    def step(x, y):
        loss, right = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", right, axis=None)

    rows = []
    for epoch in range(config.epochs):
        started = time.perf_counter()
        total, correct = 0.0, 0.0
        for x, y in strategy.distribute_datasets_from_function(my_shard):
            loss, right = step(x, y)
            total, correct = total + float(loss), correct + float(right)
        rows.append({"epoch": epoch + 1, "phase": "train", "loss": total / steps,
                     "accuracy": correct / (steps * global_batch), "val_loss": float("nan"),
                     "val_accuracy": float("nan"), "seconds": time.perf_counter() - started, "complete": True})
        report = {**rows[-1], "rank": rank, "steps": steps * (epoch + 1), "images": len(mine)}
        if epoch + 1 == config.epochs:  # every worker adds its own file to the one checkpoint folder
            with tempfile.TemporaryDirectory() as folder:
                if rank == 0:
                    np.savez(f"{folder}/weights.npz", *model.get_weights())
                    with open(f"{folder}/history.json", "w") as handle:
                        json.dump(rows, handle)
                with open(f"{folder}/rank-{rank}.json", "w") as handle:
                    json.dump({"steps": steps * config.epochs, "images": len(mine)}, handle)
                ray_train.report(report, checkpoint=ray_train.Checkpoint.from_directory(folder))
        else:
            ray_train.report(report)


def train_data_parallel(spec: TransferSpec, dataset: ImageDataset, config: TrainConfig, *,
                        storage: str | None = None) -> ParallelResult:
    """Train ``spec`` on ``dataset`` across ``config.workers`` Ray Train workers (one CPU each).

    The first phase only (``config.epochs``; no fine-tuning phase, no feature cache, no augmentation):
    every worker runs the whole model on its images. ``storage`` is where Ray Train keeps the run's
    checkpoint (a folder every worker's machine can write: on one machine, a temporary folder).

    Raises:
        ConfigError: an invalid config, or too few images for one batch per worker.
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    ray = ray_module()
    config.check()
    spec = dataclasses.replace(spec, num_classes=len(dataset.class_names))
    train_idx, _ = dataset.split(config.validation_fraction, seed=config.seed)
    shard(train_idx, 0, config.workers, config.batch_size)  # refused here, before any worker starts
    if not ray.is_initialized():
        from tlcore.training.worker import connect

        connect()
    own_storage = storage is None
    storage = storage or tempfile.mkdtemp(prefix="tl-ray-train-")
    trainer = TensorflowTrainer(
        _train_one_worker,
        train_loop_config={"spec": spec, "dataset": dataset, "config": config, "train_idx": train_idx},
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=storage, name="data-parallel"),
    )
    try:
        return _collected(trainer.fit())
    finally:
        if own_storage:
            shutil.rmtree(storage, ignore_errors=True)


def _collected(result) -> ParallelResult:
    """The weights, history and each worker's part, from the run's checkpoint."""
    with result.checkpoint.as_directory() as folder:
        saved = np.load(f"{folder}/weights.npz")
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        history = pd.DataFrame(json.loads((Path(folder) / "history.json").read_text()), columns=HISTORY_COLUMNS)
        parts = {int(path.stem.split("-")[1]): json.loads(path.read_text()) for path in Path(folder).glob("rank-*.json")}
    return ParallelResult(weights, history, {rank: part["steps"] for rank, part in sorted(parts.items())},
                          {rank: part["images"] for rank, part in sorted(parts.items())})
