"""The Ray side of training: joining Ray, and the worker process that trains one job.

This module and ``tlcore.training.jobs`` are the only ones that use Ray, and neither
imports it at module level: ``ray_module()`` sets the variables Ray reads when it is
imported (no usage statistics; a local instance on 127.0.0.1 only; the cluster's token
when one is set) and then imports it, on the first call, so ``import tlcore`` loads no Ray
and changes no environment.

Ray is the engine: a local instance on 127.0.0.1 by default, or the cluster at
``TL_RAY_ADDRESS``, so more machines mean more capacity with no code change. No shared disk
is needed: a worker keeps its own data folder (its machine's ``TL_DATA_DIR``), receives a
dataset it lacks from the server through Ray's object store once per machine
(``tlcore.data.replica``), makes feature files there, and hands the model back as bytes: the
server alone writes the run store.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd

from tlcore.core.atomic import atomic_write_text
from tlcore.core.errors import DatasetError
from tlcore.core.orphans import own_temp_folder
from tlcore.core.settings import load_settings
from tlcore.data.datasets import ImageDataset
from tlcore.data.replica import Manifest, Receiver, keep_file, local_copy, local_file
from tlcore.models.spec import TransferSpec
from tlcore.training.config import HISTORY_COLUMNS, BatchProgress, TrainConfig
from tlcore.training.results import RunResult
from tlcore.training.runs import save_run_model
from tlcore.training.shipped_logs import log_folder, pack_logs

DONE, STOPPED = "done", "stopped"
WORKER_ENVIRONMENT = ("KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
"""Variables a worker takes from the server besides every ``TL_*`` setting."""
MACHINE_SETTINGS = ("TL_DATA_DIR",)
"""Settings a training worker keeps from its own machine, not the server's: where its data folder is."""
TOKEN_MODE = 0o600
"""Who may read the Ray token file: its owner only (Ray 2.60 writes it with the umask's 0644)."""
_log = logging.getLogger("transfer_lab.ray")


def default_token_path() -> Path:
    """Where Ray 2.60 writes a token it generates, and reads one by default: ``~/.ray/auth_token``."""
    return Path.home() / ".ray" / "auth_token"


def token_paths() -> list[Path]:
    """The token files Ray may read here: ``RAY_AUTH_TOKEN_PATH`` when set, and the default one."""
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return list(dict.fromkeys([*([Path(named).expanduser()] if named else []), default_token_path()]))


def _has_ray_token() -> bool:
    """Whether this machine has a Ray token: ``RAY_AUTH_TOKEN(_PATH)``, or ``~/.ray/auth_token``."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path or default_token_path()).is_file()


def protect_token_files() -> list[Path]:
    """Make every Ray token file here readable by its owner only (0600); returns those changed.

    Anyone who reads the token may run code on the cluster as this user. A file another user
    owns is left as it is (and logged); so is a path that is not a regular file.
    """
    changed = []
    for path in token_paths():
        try:
            if path.is_symlink() or not path.is_file() or (path.stat().st_mode & 0o777) == TOKEN_MODE:
                continue
            os.chmod(path, TOKEN_MODE)
            changed.append(path)
        except OSError as exc:  # not ours, or it went away: say so, start anyway
            _log.warning("Could not make the Ray token file %s readable by its owner only: %s", path, exc)
    return changed


def _ensure_local_token() -> None:
    """Before a local Ray starts, write its token at 0600 if there is none, so Ray does not write one at 0644.

    Ray 2.60's ``ray.init()`` of a new local cluster turns token authentication on (unless
    ``RAY_AUTH_MODE`` says otherwise) and, finding no token, writes 64 hex digits to
    ``~/.ray/auth_token`` with ``open(path, "w")``; this writes the same kind of token first,
    created with mode 0600 (never replacing an existing file).
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if (mode is not None and mode.lower() != "token") or os.environ.get("RAY_AUTH_TOKEN") \
            or os.environ.get("RAY_AUTH_TOKEN_PATH") or default_token_path().exists():
        return
    path = default_token_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_MODE)
    except FileExistsError:  # another process wrote one just now: protect_token_files sees to it
        return
    with os.fdopen(handle, "w") as file:
        file.write(secrets.token_hex(32))


@functools.cache
def ray_module() -> ModuleType:
    """Ray, imported once with the variables it reads at import time set first.

    No usage statistics, and (measured with Ray 2.60) a local instance that listens on
    127.0.0.1 only instead of the machine's network address; a client of a cluster at
    ``TL_RAY_ADDRESS`` sends the cluster's token when this machine has one. Values already
    set by whoever runs the server win.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ.get("TL_RAY_ADDRESS") and _has_ray_token():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    import ray.exceptions  # noqa: F401  (used as ray.exceptions by the job modules)

    return ray


_CONNECT_LOCK = threading.Lock()


def connect() -> str:
    """Join Ray once per process and return the cluster's address.

    With ``TL_RAY_ADDRESS`` set, joins that cluster; otherwise starts a local
    instance that listens on 127.0.0.1 only, with no dashboard and no usage
    statistics. Ray's token file is made readable by its owner only (``protect_token_files``;
    Ray 2.60 writes ``~/.ray/auth_token`` with mode 0644). Ray is started from a thread that lives as long as the process:
    Linux ends a child that asked to die with its parent when the *thread* that
    started it ends, so starting Ray from a job's or a page's thread would take
    the local instance down with that thread.
    """
    ray = ray_module()
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


def disconnect() -> None:
    """Leave Ray: the local instance this process started goes down with it (its head, workers and
    object store); a cluster joined at ``TL_RAY_ADDRESS`` only loses this client. The server calls
    it when it stops (``app.py``'s lifespan), so no Ray process outlives the dashboard."""
    if "ray" not in sys.modules:  # Ray was never used here: nothing to stop, nothing to import
        return
    ray = ray_module()
    with _CONNECT_LOCK:
        if ray.is_initialized():
            ray.shutdown()


def _start_ray() -> None:
    ray = ray_module()
    address = load_settings().ray_address
    common = dict(runtime_env={"py_modules": [str(Path(__file__).resolve().parents[1])],
                               "worker_process_setup_hook": f"{own_temp_folder.__module__}.{own_temp_folder.__name__}"},
                  namespace="transfer-lab", log_to_driver=False, configure_logging=False)
    if address:
        protect_token_files()
        ray.init(address=address, **common)
    else:
        _ensure_local_token()
        protect_token_files()
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 num_cpus=os.cpu_count(), object_store_memory=256 * 2**20, **common)
    protect_token_files()  # whatever Ray wrote while starting


def _rss() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class WorkerOutcome:
    """What a worker hands back when training ends; the server writes all of it to the run store.

    Attributes:
        history: every epoch's row.
        result: the final metrics, for the run store.
        model: the trained model's ``.keras`` file, as bytes.
        logs: the run's TensorBoard logs packed (``shipped_logs.pack_logs``) when the worker could
            not write them into the run's folder; empty when it did.
    """

    history: pd.DataFrame
    result: RunResult
    model: bytes = b""
    logs: bytes = b""

    @property
    def state(self) -> str:
        """DONE, or STOPPED when Stop was pressed before the planned epochs ended."""
        return STOPPED if self.result.stopped else DONE


def _checked_by_queue(trainer: Callable) -> dict[str, bool]:
    """``checked=True`` for a trainer that takes it (``tlcore.train`` does): the job queue checked
    the spec and its memory before queueing it, so the worker builds without checking again."""
    try:
        parameters = inspect.signature(trainer).parameters
    except (TypeError, ValueError):  # a callable without a signature: call it as it is
        return {}
    takes = "checked" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return {"checked": True} if takes else {}


def _logged_in(trainer: Callable, logs: Path) -> dict[str, Path]:
    """``log_dir=logs`` (a TensorBoard folder), for a trainer that takes it (``tlcore.train`` does)."""
    try:
        parameters = inspect.signature(trainer).parameters
    except (TypeError, ValueError):
        return {}
    takes = "log_dir" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return {"log_dir": logs} if takes else {}


RUN_BOARDS: set = set()
"""The boards (``data_parallel.Board``) of the runs across workers this process drives: each names the
placement groups its run's workers asked for, which ``TrainingWorker.close_runs`` hands over."""


class TrainingWorker:
    """One job's worker process: trains, reports progress, stops when asked.

    A watchdog thread samples the process's memory; past ``memory_limit`` it
    writes what happened to ``death_note`` and ends the process at once, as the
    kernel's out-of-memory killer would, but only this worker and with a reason.
    """

    def __init__(self, environ: dict[str, str], memory_limit: int, death_note: str):
        # the server's settings and budgets, but this machine's own data folder (no shared disk needed)
        os.environ.update({key: value for key, value in environ.items() if key not in MACHINE_SETTINGS})
        self._receiver: Receiver | None = None
        self.transferred = 0
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
                try:  # the note is read by a server on this machine; on another machine there is no such folder
                    atomic_write_text(self._note, json.dumps({
                        "reason": "memory", "used": used, "limit": self._limit,
                        "progress": dataclasses.asdict(progress) if progress else None}))
                except OSError:
                    pass
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.05)

    def where(self) -> str:
        """The node this worker runs on (Ray's node id)."""
        return ray_module().get_runtime_context().get_node_id()

    def has_dataset(self, dataset: ImageDataset) -> bool:
        """Whether this machine holds ``dataset`` already (the server's own folder, or a copy by digest)."""
        return local_copy(dataset) is not None

    def receive_begin(self, described: Manifest) -> None:
        """Start receiving a dataset: its budgets are checked here, before a byte is sent."""
        self._receiver = Receiver(described)
        self._receiver.begin()

    def receive_part(self, files: list[bytes]) -> int:
        """Write the next part of the dataset being received; returns the bytes received so far."""
        self._receiver.write(files)
        self.transferred = self._receiver.received
        return self.transferred

    def local_file(self, path: str, digest: str) -> str | None:
        """Where this machine holds the server's file ``path`` (sha256 ``digest``), or None."""
        return local_file(path, digest)

    def receive_file(self, data: bytes, digest: str, suffix: str) -> str:
        """Keep a file the server sent (a saved model a job builds on); returns its path here."""
        return keep_file(data, digest, suffix)

    def receive_abandon(self) -> None:
        """Remove what was received of a dataset that will not be finished."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.abandon()

    def receive_finish(self) -> int:
        """Check the received copy's digest and keep it; returns the bytes it took."""
        receiver, self._receiver = self._receiver, None
        receiver.finish()
        return receiver.received

    def run(self, trainer: Callable, spec: TransferSpec, dataset: ImageDataset, config: TrainConfig,
            run_folder: str) -> WorkerOutcome:
        """Train on this machine's copy of ``dataset`` and hand everything back; TLErrors travel back to the server.

        Nothing of the run's record is written here: its index row, history, result and model
        file are written by the server, from what ``progress`` and this return. Its TensorBoard
        logs go into ``run_folder`` as it trains when this machine sees that folder (the server's
        own machine, or a shared mount); otherwise they come back packed, with the model.
        Feature files are made in this machine's data folder and kept there for the next job.
        """
        here = local_copy(dataset)
        if here is None:
            raise DatasetError(f"A job's dataset must reach its worker before training. Received: no copy of "
                               f"{dataset.name} ({dataset.digest[:12]}) on this machine")
        def on_batch(progress: BatchProgress) -> None:
            self._progress = progress

        def on_epoch(history: pd.DataFrame) -> None:
            with self._lock:
                self._history = history

        shared = Path(run_folder).is_dir()  # the server's run folder is on this disk: log into it, live
        with tempfile.TemporaryDirectory(prefix="tl-run-") as folder:
            logs = log_folder(run_folder if shared else folder)
            result = trainer(spec, here, config, on_batch=on_batch, on_epoch=on_epoch, stop=self._stop,
                             **_checked_by_queue(trainer), **_logged_in(trainer, logs))
            model = save_run_model(Path(folder), result.model).read_bytes()
            packed = b"" if shared else pack_logs(logs)
        return WorkerOutcome(result.history, RunResult.of(result), model, packed)

    def progress(self, since: int = 0) -> tuple[BatchProgress | None, pd.DataFrame, int]:
        """(last batch, the history rows after row ``since``, peak memory in bytes).

        The server asks every ``POLL_SECONDS`` with the number of rows it has, so only
        the epochs it has not seen cross over (none, most of the time).
        """
        with self._lock:
            return self._progress, self._history.iloc[since:].reset_index(drop=True), self._peak

    def stop(self) -> None:
        self._stop.set()

    def close_runs(self) -> list[tuple[str, object]]:
        """Close the boards of the runs across workers this worker drives (none for a one-process run): the
        placement groups their workers asked for, by name, with the controller that asked. Called before
        the worker is killed, so its killer can free their CPUs (``data_parallel.free_reserved``)."""
        ray = ray_module()
        return [reserved for board in list(RUN_BOARDS) for reserved in ray.get(board.close.remote(), timeout=10)]



@functools.cache
def training_worker():
    """``TrainingWorker`` as a Ray actor class: one process per job, never restarted."""
    return ray_module().remote(max_restarts=0, max_concurrency=2)(TrainingWorker)


def worker_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if (key.startswith("TL_") or key in WORKER_ENVIRONMENT) and key != "TL_PASSWORD"}


def memory_message(note: dict, progress: BatchProgress | None) -> str:
    where = note.get("progress")
    where = BatchProgress(**where) if where else progress
    at = f" while {where.describe()}" if where else " while preparing the images and the model"
    return (f"The training worker ran out of memory: it grew past its limit of "
            f"{note['limit'] / 2**30:.1f} GB (TL_JOB_MEMORY_GB){at}, so it was stopped. The server and "
            "other runs were not affected. Try a smaller batch size or input size, freeze more layers, "
            "or ask whoever runs the server to raise TL_JOB_MEMORY_GB.")




def cluster_resources() -> tuple[list[dict], dict[str, float]] | None:
    """The Ray cluster this process joined, without joining one: (alive nodes, resources free now), or None.

    Each node: ``address``, ``cpus``, ``gpus``, ``memory`` (bytes Ray may schedule there), ``custom``
    (its other resources). None when this process has not joined Ray (nothing is started to look).
    """
    if "ray" not in sys.modules:
        return None
    ray = ray_module()
    if not ray.is_initialized():
        return None
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        nodes.append({"address": node.get("NodeManagerAddress", ""), "cpus": resources.get("CPU", 0.0),
                      "gpus": resources.get("GPU", 0.0), "memory": int(resources.get("memory", 0)),
                      "custom": {key: value for key, value in resources.items()
                                 if key not in ("CPU", "GPU", "memory", "object_store_memory")
                                 and not key.startswith("node:")}})
    return nodes, dict(ray.available_resources())
