"""Training jobs: they wait in line on the server and train in Ray workers.

The server process (the dashboard) keeps one small handle per job: its place
in line, the last progress its worker reported and the history so far. The
training itself runs in a Ray actor, one process per job, that streams the
images, trains, and writes the run store as it goes. A worker that runs out
of memory or crashes ends its own run as failed, in words; the server and
every other session go on.

Ray is the engine: a local instance on 127.0.0.1 by default, or the cluster at
``TL_RAY_ADDRESS``, so more machines mean more capacity with no code change
(workers need the data folder at the same path, e.g. a shared mount). This is
the one tlcore module that imports Ray; ``tlcore.train`` stays a plain function.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

# Read by Ray when it is imported: no usage statistics, and (measured with Ray 2.60) a local
# instance that listens on 127.0.0.1 only instead of the machine's network address.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _has_ray_token() -> bool:
    """Whether this machine has a Ray token: ``RAY_AUTH_TOKEN(_PATH)``, or ``~/.ray/auth_token``."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path or Path.home() / ".ray" / "auth_token").is_file()


if os.environ.get("TL_RAY_ADDRESS") and _has_ray_token():
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # a client sends the cluster's token only when told to

import ray  # noqa: E402
import ray.exceptions  # noqa: E402

from tlcore.budgets import check_job_memory
from tlcore.build import TransferSpec, check_transfer_spec
from tlcore.compare import SCRATCH, TRANSFER, scratch_config, scratch_spec
from tlcore.datasets import ImageDataset
from tlcore.errors import ConfigError, TLError
from tlcore.runs import RunStore
from tlcore.settings import load_settings
from tlcore.train import FEATURES_PHASE, HISTORY_COLUMNS, BatchProgress, TrainConfig, train

QUEUED, RUNNING, STOPPING, DONE, STOPPED, FAILED = "queued", "running", "stopping", "done", "stopped", "failed"
FINISHED = (DONE, STOPPED, FAILED)
POLL_SECONDS = 0.5
"""How often the server asks a worker for its progress."""
WORKER_ENVIRONMENT = ("KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
"""Variables a worker takes from the server besides every ``TL_*`` setting."""

_CONNECT_LOCK = threading.Lock()


def connect() -> str:
    """Join Ray once per process and return the cluster's address.

    With ``TL_RAY_ADDRESS`` set, joins that cluster; otherwise starts a local
    instance that listens on 127.0.0.1 only, with no dashboard and no usage
    statistics. Ray is started from a thread that lives as long as the process:
    Linux ends a child that asked to die with its parent when the *thread* that
    started it ends, so starting Ray from a job's or a page's thread would take
    the local instance down with that thread.
    """
    with _CONNECT_LOCK:
        if not ray.is_initialized():
            started = threading.Event()
            failure: list[BaseException] = []

            def keep_ray() -> None:
                try:
                    _start_ray()
                except BaseException as exc:  # handed to the caller below
                    failure.append(exc)
                started.set()
                if not failure:
                    threading.Event().wait()

            threading.Thread(target=keep_ray, name="ray-engine", daemon=True).start()
            started.wait()
            if failure:
                raise failure[0]
        return ray.get_runtime_context().gcs_address


def _start_ray() -> None:
    address = load_settings().ray_address
    common = dict(runtime_env={"py_modules": [str(Path(__file__).parent)]},
                  namespace="transfer-lab", log_to_driver=False, configure_logging=False)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 num_cpus=os.cpu_count(), object_store_memory=256 * 2**20, **common)


def _rss() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@ray.remote(max_restarts=0, max_concurrency=2)
class TrainingWorker:
    """One job's worker process: trains, reports progress, stops when asked.

    A watchdog thread samples the process's memory; past ``memory_limit`` it
    writes what happened to ``death_note`` and ends the process at once, as the
    kernel's out-of-memory killer would, but only this worker and with a reason.
    """

    def __init__(self, environ: dict[str, str], memory_limit: int, death_note: str):
        os.environ.update(environ)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._progress: BatchProgress | None = None
        self._history = pd.DataFrame(columns=HISTORY_COLUMNS)
        self._peak = _rss()
        self._limit, self._note = memory_limit, Path(death_note)
        threading.Thread(target=self._watch_memory, name="memory-watchdog", daemon=True).start()

    def _watch_memory(self) -> None:
        while True:
            used = _rss()
            self._peak = max(self._peak, used)
            if used > self._limit:
                progress = self._progress
                self._note.write_text(json.dumps({
                    "reason": "memory", "used": used, "limit": self._limit,
                    "progress": dataclasses.asdict(progress) if progress else None}))
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.05)

    def run(self, trainer: Callable, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
            store_root: str, run_id: str) -> str:
        """Train and store the run; returns DONE or STOPPED. TLErrors travel back to the server."""
        store = RunStore(store_root)

        def on_batch(progress: BatchProgress) -> None:
            self._progress = progress

        def on_epoch(history: pd.DataFrame) -> None:
            with self._lock:
                self._history = history
            store.record_history(run_id, history)

        result = trainer(spec, dataset, config, on_batch=on_batch, on_epoch=on_epoch, stop=self._stop)
        store.finish(run_id, result)
        return STOPPED if result.stopped else DONE

    def progress(self) -> tuple[BatchProgress | None, pd.DataFrame, int]:
        """(last batch, history so far, peak memory in bytes)."""
        with self._lock:
            return self._progress, self._history, self._peak

    def stop(self) -> None:
        self._stop.set()


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

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _worker_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if (key.startswith("TL_") or key in WORKER_ENVIRONMENT) and key != "TL_PASSWORD"}


def _memory_message(note: dict, progress: BatchProgress | None) -> str:
    where = note.get("progress")
    where = BatchProgress(**where) if where else progress
    at = f" while {where.describe()}" if where else " while preparing the images and the model"
    return (f"The training worker ran out of memory: it grew past its limit of "
            f"{note['limit'] / 2**30:.1f} GB (TL_JOB_MEMORY_GB){at}, so it was stopped. The server and "
            "other runs were not affected. Try a smaller batch size or input size, freeze more layers, "
            "or ask whoever runs the server to raise TL_JOB_MEMORY_GB.")


class TrainingJob:
    """One training run, from the line on the server to a worker and the run store."""

    def __init__(self, queue: JobQueue, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
                 store: RunStore, trainer: Callable = train, owner: str = "", *, group: str = "",
                 role: str = "", name: str = ""):
        self.id = uuid.uuid4().hex[:8]
        self.spec, self.dataset, self.config, self.store, self.trainer = spec, dataset, config, store, trainer
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
            ray.kill(worker)

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
                               self._history.copy(), elapsed, self._remaining(elapsed), self._error, self._peak)

    def _remaining(self, elapsed: float) -> float | None:
        progress = self._progress
        if progress is None or self._state not in (RUNNING, STOPPING) or progress.phase == FEATURES_PHASE \
                or not progress.fraction:
            return None
        return elapsed / progress.fraction * (1 - progress.fraction)

    def _run(self) -> None:
        if not self._queue.acquire(self, self._stop):
            self.store.mark(self.run_id, STOPPED)
            self._finish(STOPPED)
            return
        note = self.store.root / self.run_id / "worker-death.json"
        try:
            with self._lock:
                self._state = STOPPING if self._stop.is_set() else RUNNING
                self._started = time.monotonic()
            self._finish(self._train_in_worker(note))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, TLError):
                self._fail(str(cause))
            else:
                print(f"Training job {self.id} (run {self.run_id}) failed in its worker:\n{exc}", flush=True)
                self._fail(f"Training failed unexpectedly ({type(cause).__name__}); the details are in "
                           "the server log.")
        except ray.exceptions.RayError as exc:  # the worker died: out of memory, killed, or its machine left
            if self._killed:
                self._finish(STOPPED)
            else:
                self._fail(self._death_message(exc, note))
        except Exception as exc:  # a bug or the machine: log it, tell the user plainly
            traceback.print_exc()
            self._fail(f"Training failed unexpectedly ({type(exc).__name__}); the details are in the server log.")
        finally:
            self._worker = None
            self._queue.release(self)

    def _train_in_worker(self, note: Path) -> str:
        connect()
        limit = int(load_settings().job_memory_gb * 2**30)
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        self._worker = TrainingWorker.options(num_cpus=1, num_gpus=gpus).remote(
            _worker_environment(), limit, str(note))
        if self._killed:  # killed while its worker was being created: end it before it trains
            ray.kill(self._worker)
        try:
            done = self._worker.run.remote(self.trainer, self.spec, self.dataset, self.config,
                                           str(self.store.root), self.run_id)
            stop_sent, asked = False, None
            while not ray.wait([done], timeout=POLL_SECONDS)[0]:
                asked = asked or self._worker.progress.remote()  # one question at a time, even
                if ray.wait([asked], timeout=0)[0]:                # while the worker waits for a machine
                    progress, history, peak = ray.get(asked)
                    asked = None
                    with self._lock:
                        self._progress, self._history, self._peak = progress, history, peak
                if self._stop.is_set() and not stop_sent:
                    self._worker.stop.remote()
                    stop_sent = True
            state = ray.get(done)
            _, _, peak = ray.get(self._worker.progress.remote())
            with self._lock:
                self._history, self._peak = self.store.get(self.run_id).history, peak
            return state
        finally:
            if self._worker is not None:
                ray.kill(self._worker)

    def _death_message(self, exc: Exception, note: Path) -> str:
        print(f"Training job {self.id} (run {self.run_id}) lost its worker: {exc}", flush=True)
        if note.is_file():
            return _memory_message(json.loads(note.read_text()), self._progress)
        if isinstance(exc, ray.exceptions.OutOfMemoryError) or "memory" in str(exc).lower():
            return ("The training worker ran out of memory on its machine and was stopped. The server "
                    "and other runs were not affected. Try a smaller batch size or input size, or "
                    "freeze more layers.")
        return ("The training worker ended unexpectedly (its process or machine went away); the details "
                "are in the server log. The server and other runs were not affected.")

    def _fail(self, message: str) -> None:
        self.store.fail(self.run_id, message)
        with self._lock:
            self._error = message
        self._finish(FAILED)

    def _finish(self, state: str) -> None:
        with self._lock:
            self._state = state
            self._finished = time.monotonic()


class JobQueue:
    """Admits ``max_running`` jobs at a time, first come first served."""

    KEEP_FINISHED = 16
    """Finished job handles kept in memory; older ones live on in the run store."""

    def __init__(self, max_running: int = 1, max_waiting: int = 8):
        self.max_running, self.max_waiting = max_running, max_waiting
        self._condition = threading.Condition()
        self._waiting: list[TrainingJob] = []
        self._running: list[TrainingJob] = []
        self.jobs: dict[str, TrainingJob] = {}

    def submit(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
               store: RunStore, *, trainer: Callable = train, owner: str = "", group: str = "",
               role: str = "", name: str = "") -> TrainingJob:
        """Queue a training job; it trains in a Ray worker when its turn comes.

        Args:
            spec, dataset, config: what to train, on what, and how.
            store: where the run is recorded (the worker writes to it).
            trainer: the training function (``tlcore.train``'s signature).
            owner: who starts it (recorded with the run; see ``tlcore.can_manage``).
            group, role, name: recorded with the run (see ``RunRecord``).

        Raises:
            ConfigError: the line is full (``max_queued_jobs``), or the config is invalid.
            BudgetError: the job would need more memory than a worker may use (``TL_JOB_MEMORY_GB``).
            ShapeError: the spec cannot be built.
        """
        spec = self._checked(spec, dataset, config)
        return self._enqueue([(spec, config, role, name)], dataset, store, trainer, owner, group)[0]

    def submit_with_scratch(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
                            store: RunStore, *, trainer: Callable = train, owner: str = "",
                            group: str = "") -> tuple[TrainingJob, TrainingJob]:
        """Queue ``spec`` and, right behind it, the same model trained from scratch on the same split.

        The pair shares a group (``tlcore.scratch_comparison`` reads it back); the scratch run
        has random weights, every layer trainable, and the same epochs in one phase
        (``scratch_config``). Both are checked before either is queued.

        Returns:
            (the transfer job, the scratch job).

        Raises:
            ConfigError: ``spec`` is itself a model from scratch, the line has no room for
                two more jobs, or the config is invalid.
            BudgetError, ShapeError: as ``submit``, for either model.
        """
        transfer = self._checked(spec, dataset, config)
        scratch, again = scratch_spec(transfer), scratch_config(config)
        self._checked(scratch, dataset, again)
        jobs = self._enqueue([(transfer, config, TRANSFER, ""),
                              (scratch, again, SCRATCH, f"{spec.backbone} on {dataset.name}, from scratch")],
                             dataset, store, trainer, owner, group or uuid.uuid4().hex[:12])
        return jobs[0], jobs[1]

    def _checked(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig) -> TransferSpec:
        config.check()
        spec = dataclasses.replace(spec, num_classes=len(dataset.class_names))
        check_transfer_spec(spec)
        check_job_memory(spec, config.batch_size)
        return spec

    def _enqueue(self, runs: list[tuple[TransferSpec, TrainConfig, str, str]], dataset: ImageDataset,
                 store: RunStore, trainer: Callable, owner: str, group: str) -> list[TrainingJob]:
        with self._condition:
            if len(self._waiting) + len(runs) > self.max_waiting:
                raise ConfigError(
                    f"At most {self.max_waiting} training jobs may wait in line (TL_MAX_QUEUED_JOBS). "
                    f"Received: {len(runs)} new job(s) while {len(self._waiting)} wait; try again later"
                )
            jobs = [TrainingJob(self, spec, dataset, config, store, trainer, owner, group=group, role=role,
                                name=name) for spec, config, role, name in runs]
            self._waiting.extend(jobs)
            self.jobs.update((job.id, job) for job in jobs)
            finished = [old for old in self.jobs.values() if old.finished]
            for old in finished[: max(0, len(finished) - self.KEEP_FINISHED)]:
                del self.jobs[old.id]
        for job in jobs:
            job._thread.start()
        return jobs

    def for_run(self, run_id: str) -> TrainingJob | None:
        """The job of a run, while the server still holds it."""
        return next((job for job in list(self.jobs.values()) if job.run_id == run_id), None)

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
