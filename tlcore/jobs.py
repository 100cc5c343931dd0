"""Training jobs: run in a background thread, wait in line, report, stop, and save as they go.

A page starts a job and then polls ``job.snapshot()``; reruns, clicks and page
switches do not touch the thread. Only ``max_running`` jobs train at once (two
cores cannot train two models well); the rest wait with their place in line.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
import uuid

import pandas as pd

from tlcore.build import TransferSpec
from tlcore.datasets import ImageDataset
from tlcore.errors import ConfigError, TLError
from tlcore.runs import RunStore
from tlcore.train import HISTORY_COLUMNS, BatchProgress, TrainConfig, TrainResult, train

QUEUED, RUNNING, STOPPING, DONE, STOPPED, FAILED = "queued", "running", "stopping", "done", "stopped", "failed"
FINISHED = (DONE, STOPPED, FAILED)


@dataclasses.dataclass(frozen=True)
class JobSnapshot:
    """What a page needs to draw a job, copied at one moment."""

    id: str
    run_id: str
    state: str
    position: int | None
    progress: BatchProgress | None
    history: pd.DataFrame
    elapsed: float
    remaining: float | None
    error: str | None
    result: TrainResult | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class TrainingJob:
    """One training run, from the queue to the run store."""

    def __init__(self, queue: JobQueue, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
                 store: RunStore):
        self.id = uuid.uuid4().hex[:8]
        self.spec, self.dataset, self.config, self.store = spec, dataset, config, store
        self.run_id = store.create(dataclasses.replace(spec, num_classes=len(dataset.class_names)),
                                   config, dataset.summary())
        self._queue = queue
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = QUEUED
        self._progress: BatchProgress | None = None
        self._history = pd.DataFrame(columns=HISTORY_COLUMNS)
        self._started: float | None = None
        self._finished: float | None = None
        self._error: str | None = None
        self._result: TrainResult | None = None
        self._thread = threading.Thread(target=self._run, name=f"train-{self.id}", daemon=True)

    def stop(self) -> None:
        """Stop at the next batch (or leave the queue); what was learned is kept."""
        self._stop.set()
        with self._lock:
            if self._state == RUNNING:
                self._state = STOPPING

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
            return JobSnapshot(self.id, self.run_id, self._state, position,
                               self._progress, self._history.copy(), elapsed,
                               self._remaining(elapsed), self._error, self._result)

    def _remaining(self, elapsed: float) -> float | None:
        progress = self._progress
        if progress is None or self._state not in (RUNNING, STOPPING) or not progress.fraction:
            return None
        return elapsed / progress.fraction * (1 - progress.fraction)

    def _on_batch(self, progress: BatchProgress) -> None:
        with self._lock:
            self._progress = progress

    def _on_epoch(self, history: pd.DataFrame) -> None:
        with self._lock:
            self._history = history
        self.store.record_history(self.run_id, history)

    def _run(self) -> None:
        if not self._queue.acquire(self, self._stop):
            self._finish(STOPPED)
            return
        try:
            with self._lock:
                self._state = STOPPING if self._stop.is_set() else RUNNING
                self._started = time.monotonic()
            result = train(self.spec, self.dataset, self.config, on_batch=self._on_batch,
                           on_epoch=self._on_epoch, stop=self._stop)
            self.store.finish(self.run_id, result)
            with self._lock:
                self._result, self._history = result, result.history
            self._finish(STOPPED if result.stopped else DONE)
        except TLError as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug or the machine: log it, tell the user plainly
            traceback.print_exc()
            self._fail(f"Training failed unexpectedly: {type(exc).__name__}: {exc}")
        finally:
            self._queue.release(self)

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
    """Finished jobs kept in memory (with their models); older ones live on in the run store."""

    def __init__(self, max_running: int = 1, max_waiting: int = 8):
        self.max_running, self.max_waiting = max_running, max_waiting
        self._condition = threading.Condition()
        self._waiting: list[TrainingJob] = []
        self._running: list[TrainingJob] = []
        self.jobs: dict[str, TrainingJob] = {}

    def submit(self, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
               store: RunStore) -> TrainingJob:
        """Queue a training job and start its thread.

        Raises:
            ConfigError: the line is full (``max_queued_jobs``).
        """
        with self._condition:
            if len(self._waiting) >= self.max_waiting:
                raise ConfigError(
                    f"At most {self.max_waiting} training jobs may wait in line. "
                    f"Received: a new job while {len(self._waiting)} wait; try again later"
                )
            job = TrainingJob(self, spec, dataset, config, store)
            self._waiting.append(job)
            self.jobs[job.id] = job
            finished = [old for old in self.jobs.values() if old.finished]
            for old in finished[: max(0, len(finished) - self.KEEP_FINISHED)]:
                del self.jobs[old.id]
        job._thread.start()
        return job

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
