"""Training jobs: they wait in line on the server and train in Ray workers.

The server process (the dashboard) keeps one small handle per job: its place
in line, the last progress its worker reported and the history so far. The
training itself runs in a Ray actor, one process per job, on any machine of the
cluster: the server first sends the job's dataset there when that machine has no
copy of it yet (by content digest, through Ray's object store, ``send_dataset``),
then the worker streams the images and trains. The server is the one writer of the
run's record: it stores each epoch as the worker reports it, and the result and the
model file when the worker hands them back. A worker that runs out of memory or
crashes ends its own run as failed, in words; the server and every other
session go on.

Ray is joined through ``tlcore.training.worker`` (the only other module that uses
it, and neither imports it at module level); ``tlcore.train`` stays a plain function.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tlcore.core.access import person_key
from tlcore.core.answers import Answers
from tlcore.core.atomic import move_into_place, storage_refusals, write_synced
from tlcore.core.errors import (
    ConfigError,
    HistoryError,
    ModelFileError,
    StoppedBeforeTraining,
    TLError,
    WorkerError,
)
from tlcore.core.orphans import owned_name
from tlcore.core.settings import load_settings
from tlcore.core.storage import check_room
from tlcore.core.values import finite_number
from tlcore.data.datasets import ImageDataset
from tlcore.data.replica import file_digest, manifest, parts
from tlcore.models.spec import TransferSpec
from tlcore.training.capacity import capacity
from tlcore.training.compare import SCRATCH, TRANSFER, scratch_config, scratch_spec
from tlcore.training.config import FEATURES_PHASE, HISTORY_COLUMNS, BatchProgress, TrainConfig
from tlcore.training.data_parallel import free_reserved
from tlcore.training.history import check_history
from tlcore.training.runs import MODEL_CHECK_PREFIX, RunStore
from tlcore.training.shipped_logs import unpack_logs
from tlcore.training.worker import (
    DONE,
    STOPPED,
    connect,
    memory_message,
    ray_module,
    training_worker,
    worker_environment,
)

QUEUED, RUNNING, STOPPING, FAILED = "queued", "running", "stopping", "failed"
FINISHED = (DONE, STOPPED, FAILED)
POLL_SECONDS = 0.5
"""How often the server asks a worker for its progress."""


def _plain_train() -> Callable:
    """``tlcore.train``, imported when a job is made: a queue that only lists and draws jobs (Home,
    Runs) loads neither TensorFlow nor Ray, and nor do the checks until a job is queued."""
    from tlcore.training.train import train

    return train


@dataclasses.dataclass(frozen=True)
class JobSnapshot:
    """What a page needs to draw a job, copied at one moment.

    Attributes:
        id, run_id: the job and its run in the run store (where the result is once finished).
        state: queued, running, stopping, done, stopped or failed.
        position: place in line while queued (1 is next), else None.
        progress: the worker's last batch, or None before the first.
        history: per-epoch history so far.
        elapsed, remaining: seconds since training started, and an estimate of those left.
        error: why a failed job failed, in words.
        peak_memory: the worker's peak resident memory in bytes, as last reported.
        transferred: bytes of the dataset sent to the worker's machine for this job (0: it had a copy).
        node: the Ray node id the job's worker runs on ("" until Ray has placed it: it waits for a free CPU).
    """

    id: str
    run_id: str
    state: str
    position: int | None
    progress: BatchProgress | None
    history: pd.DataFrame
    elapsed: float
    remaining: float | None
    error: str | None
    peak_memory: int = 0
    transferred: int = 0
    node: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class TrainingJob:
    """One training run, from the line on the server to a worker and the run store."""

    def __init__(self, queue: JobQueue, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
                 store: RunStore, trainer: Callable | None = None, owner: str = "", *, group: str = "",
                 role: str = "", name: str = ""):
        self.id, self.owner = uuid.uuid4().hex[:8], owner
        self.spec, self.dataset, self.config, self.store = spec, dataset, config, store
        self.trainer = trainer if trainer is not None else _plain_train()
        self.run_id = store.create(dataclasses.replace(spec, num_classes=len(dataset.class_names)),
                                   config, dataset.summary(), owner=owner, group=group, role=role, name=name)
        self._queue = queue
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = QUEUED
        self._progress: BatchProgress | None = None
        self._history = pd.DataFrame(columns=HISTORY_COLUMNS)
        self._peak = 0
        self._started: float | None = None
        self._finished: float | None = None
        self._error: str | None = None
        self._worker = None
        self._killed = False
        self._transferred, self._node = 0, ""
        self._thread = threading.Thread(target=self._run, name=f"train-{self.id}", daemon=True)

    def stop(self) -> None:
        """Stop at the next batch (or leave the line); what was learned is kept."""
        self._stop.set()
        with self._lock:
            if self._state == RUNNING:
                self._state = STOPPING

    def kill(self) -> None:
        """End the worker at once, keeping nothing more (used before deleting the run)."""
        self._killed = True
        self._stop.set()
        worker = self._worker
        if worker is not None:
            reserved = self._close_runs(worker) if self.config.workers > 1 else []
            ray_module().kill(worker)  # Ray Train's controller and workers end with their driver...
            free_reserved(reserved)  # ...but not their placement groups: freed here, or they keep their CPUs

    @staticmethod
    def _close_runs(worker) -> list:
        """The placement groups (by name, with their controllers) of the run across workers ``worker``
        drives, none asked for after this; none when it cannot answer."""
        ray = ray_module()
        try:
            return ray.get(worker.close_runs.remote(), timeout=15)
        except (ray.exceptions.RayError, TimeoutError):
            return []

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        self._thread.join(timeout)
        return self.snapshot()

    @property
    def finished(self) -> bool:
        return self._state in FINISHED

    def snapshot(self) -> JobSnapshot:
        position = self._queue.position(self)  # the queue's lock first, never inside the job's
        with self._lock:
            now = self._finished or time.monotonic()
            elapsed = now - self._started if self._started else 0.0
            return JobSnapshot(self.id, self.run_id, self._state, position, self._progress,
                               self._history.copy(), elapsed, self._remaining(elapsed), self._error, self._peak,
                               self._transferred, self._node)

    def _remaining(self, elapsed: float) -> float | None:
        progress = self._progress
        if progress is None or self._state not in (RUNNING, STOPPING) or progress.phase == FEATURES_PHASE \
                or not progress.fraction:
            return None
        return elapsed / progress.fraction * (1 - progress.fraction)

    def _run(self) -> None:
        if not self._queue.acquire(self, self._stop):  # the turn first: importing Ray takes seconds
            self.store.mark(self.run_id, STOPPED)
            self._finish(STOPPED)
            return
        try:
            self._train(self.store.root / self.run_id / "worker-death.json")
        finally:
            self._worker = None
            self._queue.release(self)

    def _train(self, note: Path) -> None:
        try:
            self._train_and_record(note)
        except Exception as exc:  # recording the outcome failed too (a full disk): the job still ends, as failed
            traceback.print_exc()
            with self._lock:
                self._error = self._error or (f"Training failed and its outcome could not be recorded "
                                              f"({type(exc).__name__}); the details are in the server log.")
            self._finish(FAILED)

    def _train_and_record(self, note: Path) -> None:
        try:
            ray = ray_module()
        except Exception as exc:  # Ray cannot be loaded here: log it, tell the user plainly
            traceback.print_exc()
            self._fail(f"Training failed unexpectedly ({type(exc).__name__}); the details are in the server log.")
            return
        try:
            with self._lock:
                self._state = STOPPING if self._stop.is_set() else RUNNING
                self._started = time.monotonic()
            self._finish(self._train_in_worker(note))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, StoppedBeforeTraining):  # as a one-worker job stopped before its CPU was free
                self.store.mark(self.run_id, STOPPED)
                self._finish(STOPPED)
            elif isinstance(cause, TLError):
                self._fail(str(cause))
            else:
                print(f"Training job {self.id} (run {self.run_id}) failed in its worker:\n{exc}", flush=True)
                self._fail(disk_message(cause) or f"Training failed unexpectedly ({type(cause).__name__}); "
                           "the details are in the server log.")
        except ray.exceptions.RayError as exc:  # the worker died: out of memory, killed, or its machine left
            if self._killed:
                self._finish(STOPPED)
            else:
                self._fail(disk_message(exc) or self._death_message(exc, note))
        except TLError as exc:  # here, in words (the run store's disk full while the model is written)
            self._fail(str(exc))
        except Exception as exc:  # a bug or the machine: log it, tell the user plainly
            traceback.print_exc()
            self._fail(f"Training failed unexpectedly ({type(exc).__name__}); the details are in the server log.")

    def _train_in_worker(self, note: Path) -> str:
        connect()
        ray = ray_module()
        limit = int(load_settings().job_memory_gb * 2**30)
        if self.config.workers > 1:  # Ray Train's driver: its workers take a CPU each, it holds none (no deadlock)
            options = dict(num_cpus=0, num_gpus=0, resources={})
        else:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            options = dict(num_cpus=1, num_gpus=gpus, resources=self._queue.resources)
        self._worker = training_worker().options(**options).remote(worker_environment(), limit, str(note))
        if self._killed:  # killed while its worker was being created: end it before it trains
            ray.kill(self._worker)
        try:
            node = self._placed(ray)
            with self._lock:
                self._node = node or ""
            transferred = None if node is None else send_dataset(ray, self._worker, self.dataset, self._stop)
            with self._lock:
                self._transferred = transferred or 0
            if transferred is None:  # stopped before a CPU was free or its dataset arrived: nothing was trained
                self.store.mark(self.run_id, STOPPED)
                return STOPPED
            spec = self.spec
            if spec.base_model:  # develop-a-model: the saved run's model file, by sha256, unless the machine has it
                spec, sent = send_base_model(ray, self._worker, spec)
                with self._lock:
                    self._transferred += sent
            done = self._worker.run.remote(self.trainer, spec, self.dataset, self.config,
                                           str(self.store.root / self.run_id))
            stop_sent, asked = False, None
            while not ray.wait([done], timeout=POLL_SECONDS)[0]:
                # one question at a time, even while the worker waits for a machine; only new epochs come back
                asked = asked or self._worker.progress.remote(len(self._history))
                if ray.wait([asked], timeout=0)[0]:
                    progress, rows, peak = ray.get(asked)
                    asked = None
                    history = self._checked(_appended(self._history, rows))
                    if len(rows) and not self._killed:  # on disk first: a snapshot's epochs are stored ones
                        self.store.record_history(self.run_id, history)
                    with self._lock:
                        self._progress, self._history, self._peak = _checked_progress(progress), history, \
                            _checked_peak(peak)
                if self._stop.is_set() and not stop_sent:
                    self._worker.stop.remote()
                    stop_sent = True
            outcome = ray.get(done)
            _, _, peak = ray.get(self._worker.progress.remote(len(outcome.history)))
            history = self._checked(outcome.history)
            if (mismatch := outcome.result.mismatch()) is not None:
                raise WorkerError(f"A worker's result must fit the run's classes. Received: {mismatch} in the "
                                  f"worker's report of run {self.run_id}")
            self._check_result_classes(outcome.result.class_names)
            if outcome.model:
                self._keep_model(outcome.model)
            self.store.record_result(self.run_id, history, outcome.result)
            if outcome.logs:  # trained on a machine that cannot see the run's folder: its logs came back packed
                try:
                    unpack_logs(outcome.logs, self.store.root / self.run_id)
                except (TLError, OSError) as exc:  # the run is kept; only its TensorBoard view is missing
                    print(f"Run {self.run_id}: its TensorBoard logs were not kept: {exc}", flush=True)
            with self._lock:
                self._history, self._peak = history, _checked_peak(peak)
            return outcome.state
        finally:
            if self._worker is not None:
                ray.kill(self._worker)

    def _check_result_classes(self, class_names: object) -> None:
        """A worker's result names the run's classes, in the run's order (the Runs page labels its numbers with them,
        and Predict labels the model's outputs with the run's).

        Raises:
            WorkerError: other names, or the same in another order.
        """
        wanted = list(self.dataset.class_names)
        if list(class_names) != wanted:
            raise WorkerError(f"A worker's result must name the run's classes, {wanted[:5]}, in that order. "
                              f"Received: {list(class_names)[:5]} in the worker's report of run {self.run_id}")

    def _keep_model(self, model: bytes) -> None:
        """Keep a worker's model file as the run's: within ``TL_MAX_MODEL_FILE_MB`` and the data folder's room, then
        written once, under its own name in a folder of its own, checked (``_check_model_file``) and moved into place.

        Raises:
            WorkerError: not bytes, larger than a model file may be, or not the run's model (nothing of it is kept);
                StorageError: no room in the data folder, or the disk refused the write.
        """
        if not isinstance(model, bytes):
            raise WorkerError(f"A worker's model file must come as bytes. Received: a {type(model).__name__} in the "
                              f"worker's report of run {self.run_id}")
        limit_mb = load_settings().max_model_file_mb  # MiB, as the upload checks count them
        if len(model) > limit_mb * 2**20:  # (tlcore.models.cost.MB would load Keras on Home, which lists jobs)
            raise WorkerError(f"A worker's model file may be at most {limit_mb:,} MB (TL_MAX_MODEL_FILE_MB). "
                              f"Received: {len(model) / 2**20:,.1f} MB in the worker's report of run {self.run_id}")
        check_room(len(model), what=f"run {self.run_id}'s model")
        target = self.store.model_path(self.run_id)
        with storage_refusals(target), tempfile.TemporaryDirectory(prefix=owned_name(MODEL_CHECK_PREFIX),
                                                                   dir=target.parent) as checking:
            path = Path(checking) / target.name  # the name a refusal quotes
            write_synced(path, model)
            self._check_model_file(path)
            move_into_place(path, target)

    def _check_model_file(self, path: Path) -> None:
        """The worker's model file is one this server loads (every check ``model_outline`` makes before Keras reads a
        file) and the model its run asked for (``run_mismatch``).

        Raises:
            WorkerError: in words, what the file holds and what the run asked for.
        """
        from tlcore.models.model_files import model_outline, run_mismatch  # Keras: only when a job's model comes back

        what = f"the worker's report of run {self.run_id}"
        try:
            outline = model_outline(path)
        except ModelFileError as exc:
            raise WorkerError(f"{exc} (the model file in {what})") from None
        input_shape, classes = tuple(self.spec.input_shape), len(self.dataset.class_names)
        if (mismatch := run_mismatch(outline, input_shape, classes)) is not None:
            raise WorkerError(f"A worker's model must be the one its run asked for: input {input_shape} and {classes} "
                              f"class scores. Received: {mismatch} in {what}")

    def _checked(self, history: pd.DataFrame) -> pd.DataFrame:
        """A worker's history as the run store keeps it: the columns and values a run writes, no more epochs
        than planned, and no fewer than already stored (a stored history only grows).

        Raises:
            HistoryError: in words; the run fails and its stored history stays as it was.
        """
        what = f"the worker's report of run {self.run_id}"
        checked = check_history(history, what=what, max_rows=self.config.total_epochs)
        if len(checked) < len(self._history):
            raise HistoryError(f"A run's history only grows. Received: {len(checked):,} epochs after "
                               f"{len(self._history):,} in {what}")
        return checked

    def _placed(self, ray) -> str | None:
        """The node Ray placed the job's worker on, once a CPU there was free; None when stopped first.

        Until then the snapshot's ``node`` is empty: the page says the job waits for a CPU, and Stop
        works while it waits (the worker that never started is ended by the caller).
        """
        asked = self._worker.where.remote()
        while not ray.wait([asked], timeout=POLL_SECONDS)[0]:
            if self._stop.is_set():
                return None
        return ray.get(asked)

    def _death_message(self, exc: Exception, note: Path) -> str:
        ray = ray_module()
        print(f"Training job {self.id} (run {self.run_id}) lost its worker: {exc}", flush=True)
        try:
            return memory_message(json.loads(note.read_text()), self._progress)
        except (OSError, ValueError, KeyError, TypeError):  # no note, or one cut off by the kill mid-write
            pass
        if isinstance(exc, ray.exceptions.OutOfMemoryError) or "memory" in str(exc).lower():
            return ("The training worker ran out of memory on its machine and was stopped. The server "
                    "and other runs were not affected. Try a smaller batch size or input size, or "
                    "freeze more layers.")
        return ("The training worker ended unexpectedly (its process or machine went away); the details "
                "are in the server log. The server and other runs were not affected.")

    def _fail(self, message: str) -> None:
        try:
            self.store.fail(self.run_id, message)
        except Exception:  # the disk that failed the run may refuse its record too: the job still ends, failed
            traceback.print_exc()
            message += " (This failure could not be recorded in the run store; the details are in the server log.)"
        with self._lock:
            self._error = message
        self._finish(FAILED)

    def _finish(self, state: str) -> None:
        with self._lock:
            self._state = state
            self._finished = time.monotonic()


def disk_message(error: BaseException) -> str | None:
    """What to tell the user when Ray refused to store a run's results for lack of disk; None for other errors."""
    if not isinstance(error, ray_module().exceptions.OutOfDiskError):
        return None
    return ("Training stopped: the disk of the machine it ran on is over Ray's limit (95% full by default), so "
            "Ray could not store the run's results. Free space on that machine (its temporary folder first), "
            "then train again. Runs already saved are kept.")


def job_resources(text: str) -> dict[str, float]:
    """``TL_JOB_RESOURCES`` read: ``"gpu_box=1, fast_disk=0.5"`` -> ``{"gpu_box": 1.0, "fast_disk": 0.5}``.

    Raises:
        ConfigError: a pair that is not ``name=amount`` with a positive amount.
    """
    resources = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        name, _, amount = pair.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not name.strip() or not value > 0:
            raise ConfigError("Setting TL_JOB_RESOURCES must be name=amount pairs separated by commas, each "
                              f"amount above 0 (e.g. gpu_box=1). Received: {pair!r}")
        resources[name.strip()] = value
    return resources


def send_dataset(ray, worker, dataset: ImageDataset, stop: threading.Event | None = None) -> int | None:
    """Give ``worker``'s machine a copy of ``dataset`` unless it has one; returns the bytes sent.

    The worker checks the budgets from the manifest before a byte is sent, then receives the
    files part by part (``tlcore.data.replica.PART_BYTES``, each through the object store) and
    keeps the copy only once its content digest matches. A job stopped meanwhile stops sending,
    has its worker remove what it received, and gets None.
    """
    if ray.get(worker.has_dataset.remote(dataset)):
        return 0
    ray.get(worker.receive_begin.remote(manifest(dataset)))
    for files in parts(dataset):
        if stop is not None and stop.is_set():
            ray.get(worker.receive_abandon.remote())
            return None
        ray.get(worker.receive_part.remote(files))
    return ray.get(worker.receive_finish.remote())


def send_base_model(ray, worker, spec: TransferSpec) -> tuple[TransferSpec, int]:
    """``spec`` with ``base_model`` where the worker's machine holds it (sent when it does not), and bytes sent."""
    digest = file_digest(spec.base_model)
    there = ray.get(worker.local_file.remote(spec.base_model, digest))
    sent = 0
    if there is None:
        data = Path(spec.base_model).read_bytes()
        there, sent = ray.get(worker.receive_file.remote(data, digest, Path(spec.base_model).suffix)), len(data)
    return dataclasses.replace(spec, base_model=there), sent


def _checked_progress(progress: object) -> BatchProgress | None:
    """A worker's progress report as the pages can read it: a ``BatchProgress`` of whole numbers, else none."""
    if not isinstance(progress, BatchProgress):
        return None
    counts = (progress.epoch, progress.epochs, progress.batch, progress.batches)
    whole = all(isinstance(count, int | np.integer) and not isinstance(count, bool) for count in counts)
    return progress if whole and isinstance(progress.phase, str) else None


def _checked_peak(peak: object) -> int:
    """A worker's peak memory in bytes as the pages can read it (0: not known)."""
    return int(peak) if (finite_number(peak) or isinstance(peak, np.integer)) and peak >= 0 else 0


def _appended(history: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``history`` with ``rows`` (the epochs after it) added."""
    if not len(rows):
        return history
    return rows.reset_index(drop=True) if history.empty else pd.concat([history, rows], ignore_index=True)


class JobQueue:
    """Admits ``max_running`` jobs at a time, first come first served, and at most
    ``max_per_person`` of one person's jobs in line and training at once."""

    KEEP_FINISHED = 16
    """Finished job handles kept in memory; older ones live on in the run store."""

    def __init__(self, max_running: int = 1, max_waiting: int = 8, max_per_person: int | None = None, *,
                 resources: dict[str, float] | None = None):
        """``resources``: Ray custom resources every job's worker asks for (e.g. ``{"gpu_box": 1}`` to train
        only on machines started with ``ray start --resources '{"gpu_box": 1}'``); None: ``TL_JOB_RESOURCES``."""
        self.max_running, self.max_waiting = max_running, max_waiting
        self.resources = dict(resources) if resources is not None else job_resources(load_settings().job_resources)
        self.max_per_person = load_settings().max_jobs_per_person if max_per_person is None else max_per_person
        self._condition = threading.Condition()
        self._waiting: list[TrainingJob] = []
        self._answers = Answers()  # request id -> what its submit queued
        self._running: list[TrainingJob] = []
        self.jobs: dict[str, TrainingJob] = {}

    def submit(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
               store: RunStore, *, trainer: Callable | None = None, owner: str = "", group: str = "",
               role: str = "", name: str = "", request: str | None = None) -> TrainingJob:
        """Queue a training job; it trains in a Ray worker when its turn comes.

        Args:
            spec, dataset, config: what to train, on what, and how.
            store: where the run is recorded (by this process; the worker saves only the model).
            trainer: the training function (``tlcore.train``'s signature; ``tlcore.train``, or the run
                across Ray Train workers for ``config.workers`` above 1, unless given); the worker calls it
                with ``checked=True`` when it takes that keyword, since the spec is checked here.
            owner: who starts it (recorded with the run; see ``tlcore.can_manage``).
            group, role, name: recorded with the run (see ``RunRecord``).
            request: the id of the click that asked for it: submitted again with the same id (a button
                clicked twice before the page changed) it returns the job the first call queued.

        Raises:
            ConfigError: the line is full (``max_queued_jobs``), ``owner`` already has
                ``max_per_person`` jobs in line and training (TL_MAX_JOBS_PER_PERSON; jobs without
                an owner are not counted), or the config is invalid.
            BudgetError: the job would need more memory than a worker may use (``TL_JOB_MEMORY_GB``).
            ShapeError: the spec cannot be built.
        """
        def queue() -> TrainingJob:
            checked = self._checked(spec, dataset, config)
            return self._enqueue([(checked, config, role, name)], dataset, store, trainer, owner, group)[0]

        return self._once(request, queue)

    def submit_with_scratch(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
                            store: RunStore, *, trainer: Callable | None = None, owner: str = "",
                            group: str = "", request: str | None = None) -> tuple[TrainingJob, TrainingJob]:
        """Queue ``spec`` and, right behind it, the same model trained from scratch on the same split.

        The pair shares a group (``tlcore.scratch_comparison`` reads it back); the scratch run
        has random weights, every layer trainable, and the same epochs in one phase
        (``scratch_config``). Both are checked before either is queued.

        Returns:
            (the transfer job, the scratch job); the same pair again for a ``request`` already submitted.

        Raises:
            ConfigError: ``spec`` is itself a model from scratch, the line has no room for
                two more jobs, ``owner`` has no room for two more (the pair counts two against
                TL_MAX_JOBS_PER_PERSON), or the config is invalid.
            BudgetError, ShapeError: as ``submit``, for either model.
        """
        def queue() -> tuple[TrainingJob, TrainingJob]:
            transfer = self._checked(spec, dataset, config)
            scratch, again = scratch_spec(transfer), scratch_config(config)
            self._checked(scratch, dataset, again)
            jobs = self._enqueue([(transfer, config, TRANSFER, ""),
                                  (scratch, again, SCRATCH, f"{spec.backbone} on {dataset.name}, from scratch")],
                                 dataset, store, trainer, owner, group or uuid.uuid4().hex[:12])
            return jobs[0], jobs[1]

        return self._once(request, queue)

    def _once(self, request: str | None, queue: Callable):
        """``queue()``, or what it returned for ``request`` before (``tlcore.core.answers``).

        A page's script runs one at a time per session: a second click interrupts the first run only
        between Streamlit calls, after this returned, so the same request never queues twice."""
        with self._condition:
            if (answered := self._answers.get(request)) is not None:
                return answered
        queued = queue()
        with self._condition:
            self._answers.keep(request, queued)
        return queued

    def _checked(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig) -> TransferSpec:
        from tlcore.training.parallel_checks import check_across_workers  # Keras: queued work only (see _plain_train)
        from tlcore.training.run_checks import check_run

        config.check()
        if config.workers > 1:  # one run across Ray Train workers: what it can train, the CPUs, a batch each
            check_across_workers(dataset, config, capacity(self).cpus)
        return check_run(spec, dataset, config)

    def _enqueue(self, runs: list[tuple[TransferSpec, TrainConfig, str, str]], dataset: ImageDataset,
                 store: RunStore, trainer: Callable | None, owner: str, group: str) -> list[TrainingJob]:
        with self._condition:
            self._check_share(owner, len(runs))
            if len(self._waiting) + len(runs) > self.max_waiting:
                raise ConfigError(
                    f"At most {self.max_waiting} training jobs may wait in line (TL_MAX_QUEUED_JOBS). "
                    f"Received: {len(runs)} new job(s) while {len(self._waiting)} wait; try again later"
                )
            jobs = [TrainingJob(self, spec, dataset, config, store, self._trainer_for(config, trainer), owner,
                                group=group, role=role, name=name) for spec, config, role, name in runs]
            self._waiting.extend(jobs)
            self.jobs.update((job.id, job) for job in jobs)
            finished = [old for old in self.jobs.values() if old.finished]
            for old in finished[: max(0, len(finished) - self.KEEP_FINISHED)]:
                del self.jobs[old.id]
        for job in jobs:
            job._thread.start()
        return jobs

    def _trainer_for(self, config: TrainConfig, trainer: Callable | None) -> Callable:
        """``trainer`` when given; else ``tlcore.train``, or for ``workers`` above 1 the run across Ray Train
        workers (each asking for the queue's resources)."""
        if trainer is not None:
            return trainer
        if config.workers > 1:
            from tlcore.training.data_parallel_run import train_across_workers

            return functools.partial(train_across_workers, resources=self.resources)
        return _plain_train()

    def load(self) -> tuple[int, int]:
        """(jobs training now, jobs waiting in line)."""
        with self._condition:
            return len(self._running), len(self._waiting)

    def jobs_of(self, owner: str) -> int:
        """How many of ``owner``'s jobs wait in line or train now (names compared as ``can_manage`` does)."""
        key = person_key(owner)
        with self._condition:
            return sum(person_key(job.owner) == key for job in [*self._waiting, *self._running])

    def _check_share(self, owner: str, new: int) -> None:
        """Refuse ``new`` jobs that would take ``owner`` past ``max_per_person`` (called under the lock)."""
        if not person_key(owner):
            return  # no owner: a notebook's own queue, not shared by people
        held = self.jobs_of(owner)
        if held + new > self.max_per_person:
            raise ConfigError(
                f"One person may have at most {self.max_per_person} training jobs waiting in line or training "
                f"at once on this server (TL_MAX_JOBS_PER_PERSON), so everyone gets a turn. Received: {new} new "
                f"job(s) from {owner.strip()} while {held} of theirs wait or train; wait for one to finish, or stop one "
                "on the Runs page, then try again"
                + (" (a run with its comparison from scratch counts two)" if new > 1 else "")
            )

    def for_run(self, run_id: str) -> TrainingJob | None:
        """The job of a run, while the server still holds it."""
        return next((job for job in list(self.jobs.values()) if job.run_id == run_id), None)

    def live_runs(self) -> set[str]:
        """Run ids of the jobs queued or training (for ``RunStore.list(live=...)``)."""
        return {job.run_id for job in list(self.jobs.values()) if not job.finished}

    def datasets_in_use(self) -> set[str]:
        """Folder names (dataset ids) of the datasets that queued or running jobs read."""
        return {job.dataset.root.name for job in list(self.jobs.values()) if not job.finished}

    def delete_run(self, run_id: str, store: RunStore, *, timeout: float = 60) -> None:
        """Delete a run; a job still queued or training for it is ended first."""
        job = self.for_run(run_id)
        if job is not None and not job.finished:
            job.kill()
            job.wait(timeout)
        store.delete(run_id)

    def position(self, job: TrainingJob) -> int | None:
        """1 for the next job to start; None when not waiting."""
        with self._condition:
            return self._waiting.index(job) + 1 if job in self._waiting else None

    def acquire(self, job: TrainingJob, stop: threading.Event) -> bool:
        with self._condition:
            while not (self._waiting[0] is job and len(self._running) < self.max_running):
                if stop.is_set():
                    self._waiting.remove(job)
                    self._condition.notify_all()
                    return False
                self._condition.wait(timeout=0.5)
            self._waiting.remove(job)
            self._running.append(job)
            return True

    def release(self, job: TrainingJob) -> None:
        with self._condition:
            if job in self._running:
                self._running.remove(job)
            self._condition.notify_all()
