"""One training run across several Ray workers: data-parallel, with Ray Train and TensorFlow's own all-reduce.

``train_data_parallel`` fits a transfer model on ``config.workers`` workers with Ray Train's
``TensorflowTrainer``: each worker builds the same model under
``tf.distribute.MultiWorkerMirroredStrategy`` (Ray Train sets ``TF_CONFIG``), reads its own shard
of the training images (every ``workers``-th one of the seeded split, in order, cut to equal lengths
so every worker takes the same steps) and Keras averages the gradients across workers at every step:
step s of W workers with batch B sees the same W*B images as step s of one worker with batch W*B.
Every worker reports each epoch; at the end each adds its part to the one checkpoint (the first
its trained weights). While it trains, the first worker posts each batch and epoch on a small
board (a Ray actor of no CPU, ``Board``) that the caller reads for progress, and where a Stop is
posted: every worker looks at the board between steps and the workers agree through one more
all-reduce, so all of them stop after the same step, keeping what was learned.

It pays on large datasets and several GPU machines; on a 2-core machine two workers only share the
same cores (and each holds a copy of the model), so it is slower than one. Ray is imported here on
purpose (pyproject's "ray-in-jobs-only" contract lists this module with worker, jobs and upload_worker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tlcore.core.errors import ConfigError, DatasetError, StoppedBeforeTraining, TLError, WorkerError
from tlcore.core.orphans import owned_name, remove_orphans
from tlcore.data.datasets import ImageDataset
from tlcore.models.spec import TransferSpec
from tlcore.training.checkpoint_reads import (
    HISTORY_FILE,
    WEIGHTS_FILE,
    read_history,
    read_parts,
    read_weights,
    refused,
    weight_shapes,
)
from tlcore.training.config import (
    HISTORY_COLUMNS,
    OPTIMIZERS,
    TRAIN_PHASE,
    BatchProgress,
    Evaluation,
    TrainConfig,
)
from tlcore.training.worker import MACHINE_SETTINGS, RUN_BOARDS, ray_module, worker_environment

POLL_SECONDS = 0.5
"""How often the caller reads the board (progress, and passes on a Stop)."""
STORAGE_PREFIX = "tl-ray-train-"
"""A run's Ray Train folder: ``<tmp>/tl-ray-train-<pid>-*`` (``storage_folder``)."""
GROUP_PREFIX = "tl-train-workers-"
"""The name of each placement group a run's Ray Train controller asks for: the prefix and a random id."""
# Ray Train's controller looks at its workers every 2 s by default, so a run ended some 4 to 5 s after its
# workers' last step (two looks: the workers done, then shut down). Every quarter second it ends within about
# 1 s (measured: 4.6-4.9 s -> 0.7-1.3 s from the workers' last step to fit's return, a 2-worker run on 2 cores).
# Ray Train passes this variable on from its driver (this process) to its controller; one set already wins.
CONTROLLER_POLL_ENV, CONTROLLER_POLL_SECONDS = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"


@dataclasses.dataclass(frozen=True)
class ParallelResult:
    """What a data-parallel run gives back.

    Attributes:
        weights: the trained model's weights (``model.get_weights()`` order).
        history: one row per epoch (the first worker's view of the averaged training).
        steps: batches each worker took, by worker rank: all equal, each above 0 when all took part.
        images: training images each worker read, by rank.
        stopped: Stop was asked for before the planned epochs ended (the weights are those learned until then).
    """

    weights: list[np.ndarray]
    history: pd.DataFrame
    steps: dict[int, int]
    images: dict[int, int]
    stopped: bool = False


class Board:
    """Where a data-parallel run's workers post progress and read a Stop: a Ray actor of no CPU, owned by
    the caller of ``train_data_parallel`` (it ends with it, and with it the run)."""

    def __init__(self):
        self._rows: list[dict] = []
        self._batch: tuple[int, int, int] | None = None
        self._stop = False
        self._reserved: list[tuple[str, object]] = []
        self._closed = False
        self._started = False

    def reserving(self, name: str, maker) -> None:
        """Ray Train's controller (``maker``, its handle) names each worker group's placement group here
        before it asks Ray for it. Refused once the run is being ended (``close``): no group is made after
        its killer looked, so none can take CPUs later for a run that is gone."""
        if self._closed:
            raise RuntimeError("This run across workers is being ended: it may not reserve CPUs any more")
        self._reserved.append((name, maker))

    def close(self) -> list[tuple[str, object]]:
        """No more reservations; the ones made so far, (group name, controller): what ending the run frees."""
        self._closed = True
        return list(self._reserved)

    def workers_started(self) -> None:
        """The controller says its workers have their CPUs and started (refused once the board is closed)."""
        if self._closed:
            raise RuntimeError("This run across workers is being ended: its workers may not start")
        self._started = True

    def close_if_waiting(self) -> list[tuple[str, object]] | None:
        """For a Stop: if no worker has started yet (the run still waits for CPUs), close the board as ``close``
        does and give its reservations; else None, and the workers stop at their next step."""
        return None if self._started else self.close()

    def batch(self, epoch: int, batch: int, batches: int) -> None:
        self._batch = (epoch, batch, batches)

    def epoch(self, row: dict) -> None:
        self._rows.append(row)

    def seen(self, since: int) -> tuple[tuple[int, int, int] | None, list[dict]]:
        """(the last batch: epoch, batch, batches; the epoch rows after row ``since``)."""
        return self._batch, self._rows[since:]

    def stop(self) -> None:
        self._stop = True

    def stopping(self) -> bool:
        return self._stop


def _naming_placement_groups(board):
    """A Ray Train callback that names each worker group's placement group on ``board`` before it is made.

    Ray Train frees a run's placement group when its controller ends well, and leaves an ungraceful
    end (its driver killed, as deleting a running job does) to a detached cleaner that asks Ray's state
    API, which needs the dashboard this lab's Ray runs without; and Ray removes a group with its creator
    only once the creator's job (the server) ends too. So whoever ends a run closes its board first and
    frees what it names (``free_reserved``). The name is posted before the group is asked for, and a
    closed board refuses it: a group asked for while the killer reads the board cannot slip past it, and
    a run deleted while its workers still wait for CPUs (another job or a sweep holds them) leaves no
    waiting group to take them once they free up. Ray Train 2.60 makes the group with the
    ``placement_group`` its worker-group module imported; the callback wraps that name in the
    controller's process, just before the group is made. Ray Train takes callbacks other than its
    ``UserCallback`` as internal ones.
    """
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback
    from ray.train.v2._internal.execution.worker_group import worker_group as made_by

    class NamePlacementGroups(WorkerGroupCallback):
        def before_worker_group_start(self, worker_group_context) -> None:
            make = getattr(made_by.placement_group, "unnamed", made_by.placement_group)  # Ray's own, once

            def named(*args, **kwargs):
                ray = ray_module()
                name = f"{GROUP_PREFIX}{uuid.uuid4().hex}"
                ray.get(board.reserving.remote(name, ray.get_runtime_context().current_actor))
                return make(*args, **{**kwargs, "name": name})

            named.unnamed = make
            made_by.placement_group = named

        def after_worker_group_start(self, worker_group) -> None:
            ray_module().get(board.workers_started.remote())

    return NamePlacementGroups()


def free_reserved(reserved: list[tuple[str, object]], timeout: float = 10.0, settle: float = 1.0) -> list[str]:
    """End the Ray Train controllers of a run being ended and remove the placement groups they named
    (``Board.close`` gives both), waiting ones included; the names of the groups removed.

    The controllers end first (each waited for, up to ``timeout`` seconds). Ray may report one ended a
    moment before its process is gone, so a group it asked for in that moment is looked for once more
    after ``settle`` seconds. A group already gone (the run ended well, or it was never made) is skipped."""
    ray = ray_module()
    from ray.util.placement_group import get_placement_group, remove_placement_group

    if not reserved:
        return []
    makers = [maker for _, maker in reserved]  # one a group: ending one twice costs a round trip
    for maker in makers:
        with contextlib.suppress(ray.exceptions.RayError):
            ray.kill(maker, no_restart=True)
    for maker in makers:
        with contextlib.suppress(ray.exceptions.RayError):  # RayActorError once it has ended
            ray.get(maker.__ray_ready__.remote(), timeout=timeout)
    removed: list[str] = []
    for look in range(2):
        if look:
            time.sleep(settle)
        for name, _ in reserved:
            try:
                remove_placement_group(get_placement_group(name))
            except (ValueError, ray.exceptions.RayError):  # not made (yet), or removed by the run's own end
                continue
            if name not in removed:
                removed.append(name)
    return removed


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
    # the caller's settings and budgets (TL_*, KERAS_HOME...), this machine's own data folder
    os.environ.update({key: value for key, value in loop["environment"].items() if key not in MACHINE_SETTINGS})
    import keras
    import ray
    import tensorflow as tf
    from ray import train as ray_train

    from tlcore.data.pipeline import image_batches
    from tlcore.models.build import _assemble
    from tlcore.models.zoo import get_backbone
    from tlcore.training.train import EVAL_BATCH

    spec, dataset, config, board = loop["spec"], loop["dataset"], loop["config"], loop["board"]
    context = ray_train.get_context()
    rank, workers = context.get_world_rank(), context.get_world_size()
    mine = shard(loop["train_idx"], rank, workers, config.batch_size)
    if not Path(dataset.files[mine[0]]).is_file():
        raise DatasetError(f"A run across workers reads its images where they are stored: every worker's machine "
                           f"must see the dataset's folder (one machine, or a folder shared at the same path). "
                           f"Received: worker {rank} finds no {dataset.files[mine[0]]}")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = _assemble(spec)
        optimizer = OPTIMIZERS[config.optimizer](config.learning_rate)
        optimizer.build(model.trainable_variables)
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
    def replica_step(x, y, asked):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            loss = tf.reduce_sum(losses) / global_batch
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        right = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), tf.cast(y, tf.int64)), tf.float32))
        return loss, right, tf.identity(asked)

    @tf.function
    def step(x, y, asked):
        # ``asked`` is 1.0 on a worker that has read a Stop: summed over the workers, every worker learns
        # of it at the same step (a worker stopping alone would leave the others waiting in an all-reduce)
        loss, right, asked = strategy.run(replica_step, args=(x, y, asked))
        return tuple(strategy.reduce("SUM", value, axis=None) for value in (loss, right, asked))

    def validation() -> tuple[float, float]:
        """(loss, accuracy) on the validation images: the first worker alone, with its copy of the weights
        (every worker holds the same after each step), while the others wait at the next all-reduce."""
        held_out = loop["val_idx"]
        if rank != 0 or not len(held_out):
            return float("nan"), float("nan")
        batches = image_batches(dataset, held_out, tuple(spec.input_shape[:2]),
                                preprocess=get_backbone(spec.backbone).preprocess, batch_size=EVAL_BATCH,
                                mode=config.resize_mode)
        probabilities = np.concatenate([np.asarray(model(x, training=False)) for x, _ in batches])
        scored = Evaluation.of(probabilities, np.asarray(dataset.labels)[held_out], held_out, dataset.class_names)
        return scored.loss, scored.accuracy

    rows, asking, stop_read, stopped = [], board.stopping.remote(), 0.0, False
    for epoch in range(config.epochs):
        started = time.perf_counter()
        total, correct, seen = 0.0, 0.0, 0
        for x, y in strategy.distribute_datasets_from_function(my_shard):
            if ray.wait([asking], timeout=0)[0]:  # a look at the board between steps, never a wait
                stop_read, asking = float(ray.get(asking)), board.stopping.remote()
            loss, right, votes = step(x, y, tf.constant(stop_read))
            total, correct, seen = total + float(loss), correct + float(right), seen + 1
            if rank == 0:
                board.batch.remote(epoch + 1, seen, steps)
            if float(votes) > 0:
                stopped = True
                break
        val_loss, val_accuracy = validation()
        rows.append({"epoch": epoch + 1, "phase": TRAIN_PHASE, "loss": total / max(seen, 1),
                     "accuracy": correct / (max(seen, 1) * global_batch), "val_loss": val_loss,
                     "val_accuracy": val_accuracy, "seconds": time.perf_counter() - started,
                     "complete": seen == steps})
        if rank == 0:
            board.epoch.remote(rows[-1])
        taken = steps * epoch + seen
        report = {**rows[-1], "rank": rank, "steps": taken, "images": len(mine)}
        if stopped or epoch + 1 == config.epochs:  # every worker adds its own file to the one checkpoint folder
            with tempfile.TemporaryDirectory() as folder:
                if rank == 0:
                    np.savez(f"{folder}/{WEIGHTS_FILE}", *model.get_weights())
                    with open(f"{folder}/{HISTORY_FILE}", "w") as handle:
                        json.dump({"rows": rows, "stopped": stopped}, handle)
                with open(f"{folder}/rank-{rank}.json", "w") as handle:
                    json.dump({"steps": taken, "images": len(mine)}, handle)
                ray_train.report(report, checkpoint=ray_train.Checkpoint.from_directory(folder))
            break
        ray_train.report(report)


def storage_folder() -> str:
    """A new temporary folder for a run's Ray Train checkpoint, named for this process.

    It is removed when the run ends; a run deleted while it trains ends with its process killed, so
    the folders of processes that have ended are removed first.
    """
    remove_orphans(Path(tempfile.gettempdir()), STORAGE_PREFIX)
    return tempfile.mkdtemp(prefix=owned_name(STORAGE_PREFIX))


def train_data_parallel(spec: TransferSpec, dataset: ImageDataset, config: TrainConfig, *,
                        storage: str | None = None, on_batch: Callable[[BatchProgress], None] | None = None,
                        on_epoch: Callable[[pd.DataFrame], None] | None = None,
                        stop: threading.Event | None = None,
                        resources: dict[str, float] | None = None) -> ParallelResult:
    """Train ``spec`` on ``dataset`` across ``config.workers`` Ray Train workers (one CPU each).

    The first phase only (``config.epochs``; no fine-tuning phase, no feature cache, no augmentation):
    every worker runs the whole model on its images. ``storage`` is where Ray Train keeps the run's
    checkpoint (a folder every worker's machine can write: on one machine, a temporary folder).
    Ray Train's driver is the caller: it holds no CPU itself (nor does Ray Train's controller), so
    ``workers`` CPUs are all the run needs. The workers read the dataset's files at their path here
    (one machine, or a shared folder).

    Args:
        on_batch, on_epoch: called in the caller's thread as ``tlcore.train`` calls them (the first
            worker's batches; the history so far after each epoch), read from the board every ``POLL_SECONDS``.
        stop: set it to stop every worker after the same step; the result keeps what was learned.
        resources: Ray custom resources each worker asks for besides its CPU (``TL_JOB_RESOURCES``).

    Raises:
        ConfigError: an invalid config, or too few images for one batch per worker.
        TLError: what a worker raised, when it was one (a dataset it cannot read...).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    ray = ray_module()
    config.check()
    spec = dataclasses.replace(spec, num_classes=len(dataset.class_names))
    train_idx, val_idx = dataset.split(config.validation_fraction, seed=config.seed)
    shard(train_idx, 0, config.workers, config.batch_size)  # refused here, before any worker starts
    expected = weight_shapes(spec)  # what the checkpoint's weights must be, known before any worker starts
    if not ray.is_initialized():
        from tlcore.training.worker import connect

        connect()
    os.environ.setdefault(CONTROLLER_POLL_ENV, CONTROLLER_POLL_SECONDS)
    board = ray.remote(num_cpus=0)(Board).remote()
    own_storage = storage is None
    storage = storage or storage_folder()
    trainer = TensorflowTrainer(
        _train_one_worker,
        train_loop_config={"spec": spec, "dataset": dataset, "config": config, "train_idx": train_idx,
                           "val_idx": val_idx, "board": board, "environment": worker_environment()},
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=False,
                                     resources_per_worker={"CPU": 1, **(resources or {})}),
        run_config=RunConfig(storage_path=storage, name="data-parallel", callbacks=[_naming_placement_groups(board)]),
    )
    RUN_BOARDS.add(board)
    try:
        return _collected(_fit_watched(ray, trainer, board, config, on_batch, on_epoch, stop), expected, config)
    finally:
        RUN_BOARDS.discard(board)
        ray.kill(board)
        if own_storage:
            shutil.rmtree(storage, ignore_errors=True)


def _fit_watched(ray, trainer, board, config: TrainConfig, on_batch, on_epoch, stop):
    """``trainer.fit()`` in a thread of its own while this one reads the board and posts a Stop."""
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # raised below, in the caller's thread
            outcome["error"] = exc

    fitting = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    fitting.start()
    rows: list[dict] = []
    stop_sent = False
    while fitting.is_alive():
        fitting.join(POLL_SECONDS)
        if stop is not None and stop.is_set() and not stop_sent:
            board.stop.remote()
            stop_sent = True
            try:
                waiting = ray.get(board.close_if_waiting.remote(), timeout=10)
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
                waiting = None  # the board did not answer: the workers stop at their next step, if they start
            if waiting is not None:  # no worker has its CPU yet: nothing to wait for, nothing trained
                free_reserved(waiting)
                fitting.join(30)  # fit() ends with its controller
                raise StoppedBeforeTraining("The run was stopped while its workers waited for CPUs: nothing was "
                                            "trained, so no model is kept.")
        try:
            batch, new = ray.get(board.seen.remote(len(rows)), timeout=10)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            continue
        if batch is not None and on_batch is not None:
            on_batch(BatchProgress("train", batch[0], config.epochs, batch[1], batch[2]))
        if new:
            rows.extend(new)
            if on_epoch is not None:
                on_epoch(pd.DataFrame(rows, columns=HISTORY_COLUMNS))
    if "error" in outcome:
        raise _in_words(outcome["error"])
    return outcome["result"]


def _in_words(error: BaseException) -> BaseException:
    """Why the run failed, for its user: a worker's own TLError (a dataset it cannot read...), a Ray Train
    process that ended (out of memory, killed) or failed as a ``WorkerError``, else ``error`` itself."""
    from ray.exceptions import RayError
    from ray.train import TrainingFailedError

    for failure in getattr(error, "worker_failures", {}).values():
        cause = getattr(failure, "cause", failure)
        if isinstance(cause, TLError):
            return cause
    if isinstance(error, (RayError, TrainingFailedError)):
        first = (str(error).strip().splitlines() or [""])[0][:300]
        return WorkerError(f"A process of this run across workers failed or ended before training finished (out "
                           f"of memory on its machine, or killed). The server and other runs were not affected. "
                           f"Ray said: {type(error).__name__}: {first}")
    return error


def _collected(result, expected: list[tuple[tuple[int, ...], np.dtype]], config: TrainConfig) -> ParallelResult:
    """The weights, history and each worker's part, from the run's checkpoint, each checked before it is read
    (``checkpoint_reads``): ``expected`` is the (shape, dtype) of each of the model's weights (``weight_shapes``).

    Raises:
        WorkerError, HistoryError: in words, the first part of the checkpoint that is not as a worker writes it.
    """
    if result.checkpoint is None:
        raise refused("A run's workers must end it with a checkpoint.", "none")
    with result.checkpoint.as_directory() as folder:
        folder = Path(folder)
        weights = read_weights(folder / WEIGHTS_FILE, expected)
        history, stopped = read_history(folder, config.epochs)
        steps, images = read_parts(folder, config.workers)
    return ParallelResult(weights, history, steps, images, stopped)
