"""Uploaded models' passes in a Ray worker of their own, so a stranger's model cannot stall the server.

An uploaded ``.keras`` model passes every budget before Keras reads it (parameters,
activations, FLOPs), but its passes still take real time and memory: a prediction
(with the first-pass precision calibration), a Grad-CAM heatmap, a batch's passes.
Here they run outside the server process: ``UploadedModel`` is what the server holds
(the model's outline, built with shapes only, and a handle to its worker), and
``UploadWorker`` is a Ray actor, one per uploaded file, that loads the model once
through the same checked loader (``load_model_file``) and answers passes, one at a
time. TensorFlow uses one thread in it, and the passes of all uploads take turns, one at a
time in this server (``PASSES_AT_ONCE``), so they queue rather than pile onto the machine's
cores. A worker asks Ray for no CPU: an idle one never keeps a training job or another
upload's worker from starting (Ray's CPUs are held for an actor's whole life, idle or not).
A watchdog in it ends it

- when a pass (or loading the model) runs longer than ``TL_MAX_UPLOAD_PASS_SECONDS``;
- when it grows past its memory limit, which follows the model's measured cost
  (``worker_memory_limit``: ``TL_UPLOAD_WORKER_BASE_MB`` plus the weights and the
  largest pass's activations, at most ``TL_JOB_MEMORY_GB``);
- after ``TL_UPLOAD_WORKER_IDLE_SECONDS`` without a pass, giving its memory back.

Before ending it writes why to a note in the data folder; the server reads the note and
tells the visitor in words (naming the limit and its setting). A worker that dies without
a note (a crash, the kernel's OOM killer) is told as that. The server and other sessions
go on; the next pass starts a new worker. Built-in backbones and trained runs stay in
the server process (their passes are the registry's, measured, and shared by every session).

Ray is imported through ``tlcore.training.worker.ray_module`` when the first upload is
loaded, as the job queue does; a notebook passes a ``keras.Model`` to the same functions
and never needs Ray.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path

from tlcore.core.errors import BudgetError, TLError, WorkerError
from tlcore.core.settings import load_settings
from tlcore.inference.forward import compiled_forward
from tlcore.models.cost import MB, ModelCost, measure_model
from tlcore.models.model_files import load_model_file, model_outline
from tlcore.models.remote import RemoteModel
from tlcore.models.scopes import shapes_only
from tlcore.training.worker import _rss, connect, ray_module, worker_environment

LOADING = "loading the model"
WORKER_THREADS = 1
"""The threads TensorFlow may use in a worker: the server and training jobs keep the other cores."""
PASSES_AT_ONCE = 1
"""Passes (loading included) of all uploaded models that run at once; the others wait their turn."""
_turns = threading.BoundedSemaphore(PASSES_AT_ONCE)
WEIGHT_COPIES = 3
"""Copies of the weights a worker may hold: the model, its bfloat16 copy (half) and Keras's read of the file."""
PASS_COPIES = 3
"""The largest pass's activations, times this: a pass's outputs, Grad-CAM's gradients and TensorFlow's scratch."""
PASS_IMAGES = 16
"""The most images one pass takes (Predict's batches), when TL_MAX_ACTIVATION_MB allows."""
START_SECONDS = 120.0
"""How long the server waits, beyond the passes' own limits, for a worker to start and a pass to have its turn."""
WATCH_SECONDS = 0.05
_log = logging.getLogger("transfer_lab.uploads")


def worker_memory_limit(cost: ModelCost) -> int:
    """The bytes an uploaded model's worker may use: ``TL_UPLOAD_WORKER_BASE_MB`` plus what its model's
    measured cost needs (``WEIGHT_COPIES`` of its float32 weights and ``PASS_COPIES`` of its largest pass's
    activations, a pass keeping to ``TL_MAX_ACTIVATION_MB``), at most ``TL_JOB_MEMORY_GB``."""
    settings = load_settings()
    per_image = max(cost.activation_bytes, 1)
    images = max(1, min(PASS_IMAGES, settings.max_activation_mb * MB // per_image))
    wanted = settings.upload_worker_base_mb * MB + WEIGHT_COPIES * 4 * cost.params + PASS_COPIES * per_image * images
    return int(min(wanted, settings.job_memory_gb * 2**30))


class UploadWorker:
    """The Ray actor that holds one uploaded model and runs its passes, one at a time.

    Each pass (loading the model is one) comes with its time limit, the server's ``TL_MAX_UPLOAD_PASS_SECONDS``
    when it was sent.
    """

    def __init__(self, environ: dict[str, str], memory_limit: int, idle_seconds: float, note: str):
        os.environ.update(environ)
        import tensorflow as tf  # before its runtime starts: as many threads as Ray gave this worker CPUs

        tf.config.threading.set_intra_op_parallelism_threads(WORKER_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(WORKER_THREADS)
        self._model = None
        self._limit, self._idle = memory_limit, idle_seconds
        self._note = Path(note)
        self._pass: tuple[str, str, float, float] | None = None  # (id, what, started, seconds it may take)
        self._last = time.monotonic()
        self._peak = _rss()
        threading.Thread(target=self._watch, name="upload-watchdog", daemon=True).start()

    def _end(self, note: dict) -> None:
        """Write why, then end this process at once (a pass in TensorFlow's kernels cannot be interrupted)."""
        self._note.parent.mkdir(parents=True, exist_ok=True)
        self._note.write_text(json.dumps(note))
        os.kill(os.getpid(), signal.SIGKILL)

    def _watch(self) -> None:
        while True:
            used, now, running = _rss(), time.monotonic(), self._pass
            self._peak = max(self._peak, used)
            what = running[1] if running else None
            if used > self._limit:
                self._end({"reason": "memory", "used": used, "limit": self._limit, "what": what,
                           "pass": running and running[0]})
            if running and now - running[2] > running[3]:
                self._end({"reason": "time", "limit": running[3], "what": what, "pass": running[0]})
            if not running and self._idle and now - self._last > self._idle:
                self._end({"reason": "idle"})
            time.sleep(WATCH_SECONDS)

    def _timed(self, seconds: float, pass_id: str, what: str, function: Callable, *args, **kwargs):
        self._pass = (pass_id, what, time.monotonic(), seconds)
        try:
            return function(*args, **kwargs)
        finally:
            self._pass, self._last = None, time.monotonic()

    def load(self, seconds: float, path: str) -> int:
        """Load the model (the checked loader) and warm its float32 pass; returns this process's id."""
        def load_and_warm():
            self._model = load_model_file(path)
            compiled_forward(self._model)  # trace and warm once, so timings shown are steady
        self._timed(seconds, LOADING, LOADING, load_and_warm)
        return os.getpid()

    def run(self, seconds: float, pass_id: str, what: str, function: Callable, args: tuple, kwargs: dict):
        """``function(model, *args, **kwargs)``, within ``seconds``; TLErrors travel back to the server as they are."""
        return self._timed(seconds, pass_id, what, function, self._model, *args, **kwargs)

    def peak_memory(self) -> int:
        """The most this process has held, in bytes (sampled every 50 ms)."""
        return self._peak


def _upload_worker():
    return ray_module().remote(max_restarts=0, max_concurrency=1)(UploadWorker)


class UploadedModel(RemoteModel):
    """An uploaded ``.keras`` model: its outline here, the model and its passes in an ``UploadWorker``.

    Creating one checks the file as ``load_model_file`` does before Keras reads it, then starts
    its worker, which loads the model (its refusals come back as ``ModelFileError``). Pass it to
    ``predict_top_k``, ``predict_batch``, ``grad_cam``, ``model_input_size``, ``last_conv_layer``
    and ``cam_map_size`` as a model. Its worker ends when this object is let go (Ray ends an actor
    whose handles are all gone), when idle too long, or when a pass breaks a limit; the next
    pass starts a new one.

    Args:
        path: the stored ``.keras`` file (``store_model_upload``).

    Raises:
        ModelFileError: the file is refused, or cannot be loaded.
        BudgetError, WorkerError: its worker could not load it within its limits, or died.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.outline = model_outline(self.path)
        with shapes_only():
            self.cost = measure_model(self.outline)
        self.memory_limit = worker_memory_limit(self.cost)
        self._lock = threading.RLock()  # _answer may _forget while _start holds it
        self._actor = None
        self._note: Path | None = None
        self._notes: list[Path] = []  # every worker's note: gone with this object (a worker ended idle leaves one)
        weakref.finalize(self, _remove, self._notes)
        self.pid: int | None = None
        self._start()

    def __repr__(self) -> str:
        return f"UploadedModel({self.path.name!r}, worker pid {self.pid})"

    def _start(self):
        """The running worker, or a new one that has loaded the model."""
        with self._lock:
            if self._actor is not None:
                return self._actor, self._note
            try:
                connect()
            except Exception as exc:  # Ray cannot start or be reached here: log it, tell the visitor plainly
                _log.exception("Ray could not be started or joined for an uploaded model's worker")
                raise WorkerError(
                    "Uploaded models run in a worker of their own, and it could not be started here "
                    f"({type(exc).__name__}); the details are in the server log. Received: {self.path.name!r}"
                ) from None
            settings = load_settings()
            note = settings.data_dir / "upload-workers" / f"{uuid.uuid4().hex}.json"
            self._notes.append(note)
            actor = _upload_worker().options(num_cpus=0).remote(
                worker_environment(), self.memory_limit, settings.upload_worker_idle_seconds, str(note))
            self.pid = self._answer(actor, note, LOADING, LOADING, actor.load, str(self.path))
            self._actor, self._note = actor, note
            return actor, note

    def _forget(self, actor) -> None:
        with self._lock:
            if self._actor is actor:
                self._actor, self.pid = None, None
        ray_module().kill(actor)

    def run(self, what: str, function: Callable, *args, **kwargs):
        """``function(model, *args, **kwargs)`` in this model's worker (see ``RemoteModel.run``).

        A pass that finds its worker ended for another reason than itself (idle, or another
        pass over a limit) is sent once more, to a new worker.
        """
        for attempt in range(2):
            actor, note = self._start()
            pass_id = uuid.uuid4().hex
            try:
                return self._answer(actor, note, pass_id, what, actor.run, pass_id, what, function, args, kwargs)
            except _NotMine:
                if attempt:
                    raise WorkerError(_died(what)) from None
        raise AssertionError("unreachable")

    def _answer(self, actor, note: Path, pass_id: str, what: str, method, *args):
        """The result of ``method.remote(seconds, *args)`` (a pass of the worker ``actor``, ``seconds`` its time
        limit), sent when its turn comes, or its failure in words (the worker that broke a limit is gone)."""
        ray = ray_module()
        settings = load_settings()
        waited = START_SECONDS + 3 * settings.max_upload_pass_seconds
        if not _turns.acquire(timeout=waited):  # other uploads' passes held the line all that time
            raise WorkerError(
                f"A pass of an uploaded model must have its turn within {waited:,.0f} s here (the passes of "
                f"uploaded models run {PASSES_AT_ONCE} at a time, and others are running). Received: {what} with "
                f"{self.path.name!r} still waiting; try again in a minute")
        try:
            ref = method.remote(settings.max_upload_pass_seconds, *args)
            ready, _ = ray.wait([ref], timeout=waited)
            if not ready:  # its worker never started (the cluster has no room for it) or never answered
                try:
                    ray.cancel(ref)
                except Exception:  # already finished or its worker gone: nothing to take back
                    _log.info("A waiting pass of %s could not be cancelled", self.path.name, exc_info=True)
                self._forget(actor)
                raise WorkerError(
                    f"The worker for an uploaded model must answer within {waited:,.0f} s here. Received: {what} "
                    f"with {self.path.name!r} still waiting (the cluster had no room to start its worker); "
                    "try again in a minute")
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, TLError):
                raise exc.cause from None
            _log.error("A pass of %s (%s) failed in its worker:\n%s", self.path.name, what, exc)
            raise WorkerError(f"{what.capitalize()} with your uploaded model failed unexpectedly "
                              f"({type(exc.cause).__name__}); the details are in the server log.") from None
        except ray.exceptions.RayError as exc:  # the worker died: a limit, idle, a crash, the OOM killer
            self._forget(actor)
            found = _read_note(note)
            _log.warning("The worker of %s ended while %s: %s (%s)", self.path.name, what, found, exc)
            if found.get("reason") == "idle" or found.get("pass") not in (pass_id, None):
                raise _NotMine() from None  # ended idle, or by another pass: this one was never run
            raise _limit_error(found, what, self.path.name) if found else WorkerError(_died(what)) from None
        finally:
            _turns.release()

    def worker_pid(self) -> int | None:
        """The process id of the worker that holds the model now (None before one is started)."""
        return self.pid

    def peak_memory(self) -> int:
        """The worker's peak memory so far, in bytes."""
        actor, _ = self._start()
        return ray_module().get(actor.peak_memory.remote())


class _NotMine(Exception):
    """The worker ended for a reason that is not this pass's: send the pass again."""


def _remove(notes: list[Path]) -> None:
    for note in notes:
        note.unlink(missing_ok=True)


def _read_note(note: Path) -> dict:
    try:
        found = json.loads(note.read_text())
    except (OSError, ValueError):
        return {}
    note.unlink(missing_ok=True)
    return found


def _died(what: str) -> str:
    return (f"The worker running your uploaded model ended unexpectedly while {what} (it crashed, or the "
            "machine ran out of memory and ended it); the details are in the server log. The server and other "
            "users were not affected. Try again, or try a smaller model or input.")


def _limit_error(note: dict, what: str, name: str) -> BudgetError:
    """The limit a worker broke, in words, naming its ``TL_*`` setting."""
    doing = note.get("what") or what
    if note["reason"] == "time":
        return BudgetError(
            f"A pass of an uploaded model may take at most {note['limit']:,.0f} s on this server "
            f"(TL_MAX_UPLOAD_PASS_SECONDS). Received: {doing} with {name!r} took longer, so it was stopped. "
            "The server and other users were not affected. Try a model with a smaller input or fewer, smaller "
            "convolutions, or ask whoever runs the server to raise TL_MAX_UPLOAD_PASS_SECONDS.")
    return BudgetError(
        f"The worker for an uploaded model may use at most {note['limit'] / MB:,.0f} MB here (TL_UPLOAD_WORKER_BASE_MB "
        f"plus what the model's measured cost needs, at most TL_JOB_MEMORY_GB). Received: {doing} with {name!r} "
        f"grew it to {note['used'] / MB:,.0f} MB, so it was stopped. The server and other users were not affected. "
        "Try a model with a smaller input, or ask whoever runs the server to raise TL_UPLOAD_WORKER_BASE_MB.")
