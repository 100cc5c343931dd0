"""The run store: every training run's configuration, history, metrics and model, on disk.

Layout, under ``<data_dir>/runs``::

    index.sqlite           one row per run (SQLite transactions)
    <run id>/config.json   the TransferSpec and TrainConfig, and who started the run
    <run id>/dataset.json  the dataset summary
    <run id>/history.csv   per-epoch history, rewritten as each epoch ends
    <run id>/result.json   final metrics, class names, confusion matrix
    <run id>/model.keras   the trained model

Every file is written to a temporary name beside it, fsynced and renamed, so a
server killed mid-run leaves the earlier epochs readable and never a half
file taken for whole.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tlcore.core.atomic import atomic_save, atomic_write_text
from tlcore.core.errors import ModelFileError, UnknownNameError
from tlcore.core.orphans import remove_orphans
from tlcore.models.spec import TransferSpec
from tlcore.training.config import HISTORY_COLUMNS, TrainConfig, TrainResult
from tlcore.training.results import WRONG_SHOWN, RunResult, WrongPrediction

if TYPE_CHECKING:
    import keras

RUNNING, INTERRUPTED = "running", "interrupted"
"""A run's status while it trains, and how ``RunStore.list`` shows one whose server stopped meanwhile."""
MODEL_CHECK_PREFIX = ".worker-model-"
"""The start of the folder, inside a run's, where its server checks a worker's model before keeping it; the server's
process id follows (``owned_name``), so that what a stopped server left there can go."""
MODEL_FILE = "model.keras"
"""A run's trained model in its folder (a bundle holds it under the same name)."""
RUN_COLUMNS = ["id", "created", "name", "backbone", "input_size", "trainable_from", "dataset",
               "status", "best_val_accuracy", "epochs", "seconds", "owner", "run_group", "role", "accuracy"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created REAL, name TEXT, backbone TEXT, input_size INTEGER,
    trainable_from TEXT, dataset TEXT, status TEXT, best_val_accuracy REAL,
    epochs INTEGER, seconds REAL, owner TEXT, run_group TEXT, role TEXT, accuracy REAL
)"""
_ADDED_COLUMNS = {"owner": "TEXT", "run_group": "TEXT", "role": "TEXT", "accuracy": "REAL"}
"""Columns added after the first index was written, with their types: an older index gains them, empty
("accuracy", the kept model's, is then filled once from its runs' files: ``RunStore._index_accuracies``)."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One stored run, read back."""

    id: str
    folder: Path
    spec: TransferSpec
    config: TrainConfig
    dataset: dict
    history: pd.DataFrame
    result: RunResult | None
    """The final metrics; None until the run has finished (or when it failed)."""
    status: str
    owner: str = ""
    """Who started the run (a login name or a browser session's id); "" for runs stored before owners."""
    name: str = ""
    """What the run is called (its dataset and backbone unless named)."""
    group: str = ""
    """Runs started together share a group, e.g. a model and the same model from scratch; "" for none."""
    role: str = ""
    """The run's part in its group: "transfer", "scratch", or "source" (a develop-a-model demo's first run)."""

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.get("classes", []))

    @property
    def created(self) -> datetime.datetime | None:
        """When the run started (read from its id, local time); None for an id of another form."""
        return created_of(self.id)

    def title(self, owner_label: Callable[[str], str] = str) -> str:
        """The run in one line that tells it from the others (``run_title``)."""
        return run_title(self.name or f"{self.spec.backbone} on {self.dataset.get('name', 'images')}",
                         self.created, role=self.role, owner=owner_label(self.owner) if self.owner else "")

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    def image_path(self, index: int) -> Path | None:
        """The stored dataset image at ``index``, if the dataset folder still exists."""
        files = self.dataset.get("files", [])
        path = Path(self.dataset.get("root", "")) / files[index] if index < len(files) else None
        return path if path is not None and path.is_file() else None


SWEEP_BEST = "sweep best"
"""The role of a run kept from a head sweep ("Keep the best"): chosen by its score on its own validation images."""
ROLE_TITLES = {"transfer": "reusing a base", "scratch": "from scratch", "source": "demo's source",
               SWEEP_BEST: "best head of a sweep"}
"""A run's part in its group, in words for its title."""


def created_of(run_id: str) -> datetime.datetime | None:
    """When a run started, from its id ("20261204-211500-ab12cd": 4 Dec 2026 21:15:00); None if not of that form."""
    found = re.match(r"(\d{8}-\d{6})", str(run_id))
    try:
        return datetime.datetime.strptime(found[1], "%Y%m%d-%H%M%S") if found else None
    except ValueError:
        return None


def run_title(name: str, created: datetime.datetime | pd.Timestamp | None, *, role: str = "",
              owner: str = "") -> str:
    """A run in one line for legends, lists and choices: what it is, its part, when, and who started it.

    Example: "MobileNetV2 on develop-a-model target shapes, from scratch · 4 Dec 21:15 · alice".

    Args:
        name: the run's name (its backbone and dataset unless named).
        created: when it started; left out when None.
        role: its part in a group ("transfer", "scratch", "source"), in words after the name.
        owner: who started it, as it should read ("" to leave out).
    """
    parts = [str(name) + (f", {ROLE_TITLES[role]}" if role in ROLE_TITLES else "")]
    if created is not None and not pd.isna(created):
        parts.append(f"{created.day} {created:%b %H:%M}")
    if owner:
        parts.append(str(owner))
    return " · ".join(parts)


def run_titles(runs: pd.DataFrame, owner_label: Callable[[str], str] = str) -> dict[str, str]:
    """Run id -> ``run_title`` for every row of ``RunStore.list()``, each one different.

    The time is read from the id, as ``RunRecord.created`` reads it. Two runs whose titles would
    read the same (same name and part, started the same minute by the same person) get the end
    of their id added.
    """
    titles = {row.id: run_title(row.name, created_of(row.id) or row.created, role=row.role,
                                owner=owner_label(row.owner) if row.owner else "")
              for row in runs.itertuples()}
    repeated = {title for title in titles.values() if list(titles.values()).count(title) > 1}
    return {run_id: f"{title} · {run_id[-6:]}" if title in repeated else title for run_id, title in titles.items()}


@dataclasses.dataclass(frozen=True)
class WrongImage:
    """A confidently wrong validation image of a run, ready to show.

    Attributes:
        prediction: what the model got wrong (``RunResult.confidently_wrong``'s row).
        path: the stored image, or None when the dataset is no longer on disk.
        predicted_class: the output index of the class it was taken for (e.g. for Grad-CAM).
    """

    prediction: WrongPrediction
    path: Path | None
    predicted_class: int


def wrong_predictions(record: RunRecord, limit: int = WRONG_SHOWN) -> list[WrongImage]:
    """The run's most confidently wrong validation images, most confident first, at most ``limit``.

    Empty for a run without results. An image whose file is gone keeps its row, with no path.
    """
    if record.result is None:
        return []
    names = list(record.result.class_names)
    return [WrongImage(row, record.image_path(row.index), names.index(row.predicted))
            for row in record.result.confidently_wrong[:max(limit, 0)]]


def save_run_model(folder: Path, model: keras.Model) -> Path:
    """Save ``model`` as ``folder``/``MODEL_FILE``, atomically (a crash leaves no half file); returns the path.

    ``RunStore.finish`` saves a model trained in this process with it; a Ray worker saves
    into a temporary folder of its own machine and hands the bytes back, which the server
    writes into the run's folder: the run store is the server's alone.
    """
    path = Path(folder) / MODEL_FILE
    atomic_save(path, model.save, suffix=".keras")
    return path


def kept_accuracy(result: RunResult, history: pd.DataFrame) -> float | None:
    """The index's "accuracy": the kept model's on the run's held-out images; None when nothing was held out
    (``history`` has no validation accuracy: the result then scored the training images). The best epoch's
    (``best_val_accuracy``) can be far above it: a run without early stopping keeps its last epoch's weights (one
    listed 50% for a model scoring 25%)."""
    held_out = "val_accuracy" in history and bool(history["val_accuracy"].notna().any())
    return float(result.accuracy) if held_out and not math.isnan(result.accuracy) else None


def _spec_from(values: dict) -> TransferSpec:
    values = dict(values)
    values["input_shape"] = tuple(values["input_shape"])
    return TransferSpec(**values)


class RunStore:
    """Runs on disk with a SQLite index. Safe to share between threads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in columns:  # an index written before: its runs keep none
                    try:
                        db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError:  # another process added it meanwhile
                        continue
                    if column == "accuracy":
                        self._index_accuracies(db)

    def _index_accuracies(self, db: sqlite3.Connection) -> None:
        """Fill the new "accuracy" column of an index written before it, once, from each finished run's files
        (else its runs would go on showing their best epoch's). A run whose files do not read keeps none."""
        finished = db.execute("SELECT id FROM runs WHERE status IN ('done', 'stopped')").fetchall()
        for (run_id,) in finished:
            folder = self.root / run_id
            try:
                result = RunResult.from_json(json.loads((folder / "result.json").read_text()))
                history = pd.read_csv(folder / "history.csv")
            except (OSError, ValueError, TypeError, KeyError):
                continue
            db.execute("UPDATE runs SET accuracy = ? WHERE id = ?", (kept_accuracy(result, history), run_id))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.root / "index.sqlite", timeout=30)

    def _update(self, run_id: str, **values) -> None:
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._connect() as db:
            db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), run_id))

    def create(self, spec: TransferSpec, config: TrainConfig, dataset: dict, *, name: str = "",
               owner: str = "", group: str = "", role: str = "") -> str:
        """Start a run record; returns its id.

        Args:
            owner: who started it (a login name or a browser session's id); only
                they, or an admin, may stop or delete it (``tlcore.can_manage``).
            group, role: runs started together and each one's part (see ``RunRecord``).
        """
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = self.root / run_id
        folder.mkdir()
        atomic_write_text(folder / "config.json", json.dumps(
            {"spec": dataclasses.asdict(spec), "config": dataclasses.asdict(config), "owner": owner,
             "group": group, "role": role}, indent=2))
        atomic_write_text(folder / "dataset.json", json.dumps(dataset, indent=2))
        with self._connect() as db:
            db.execute(
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                (run_id, time.time(), name or f"{spec.backbone} on {dataset.get('name', 'images')}",
                 spec.backbone, spec.input_shape[0], spec.trainable_from or "frozen",
                 dataset.get("name", ""), RUNNING, None, 0, 0.0, owner, group, role, None),
            )
        return run_id

    def with_models(self) -> pd.DataFrame:
        """``list()``'s finished runs that have a model file: those that can classify, or lend their base
        (a run stopped before it trained is listed, and has none)."""
        runs = self.list().query("status in ['done', 'stopped']")
        has_model = pd.Series([self.model_path(run_id).is_file() for run_id in runs["id"]],
                              index=runs.index, dtype=bool)
        return runs[has_model]

    def has(self, run_id: str) -> bool:
        """Whether ``run_id`` has an index row or a folder here."""
        with self._connect() as db:
            indexed = db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None
        return indexed or (self.root / run_id).exists()

    def add_rows(self, rows: Collection[tuple]) -> None:
        """Index runs whose folders are already in place (imported bundles), in one transaction.

        Each row holds ``RUN_COLUMNS``' values in order; an id already indexed fails them all.
        """
        with self._connect() as db:
            db.executemany(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                           list(rows))

    def record_history(self, run_id: str, history: pd.DataFrame) -> None:
        """Replace the stored history (called after every epoch)."""
        atomic_write_text(self.root / run_id / "history.csv", history.to_csv(index=False))
        best = history["val_accuracy"].max() if len(history) else None
        self._update(run_id, epochs=len(history),
                     best_val_accuracy=None if best is None or np.isnan(best) else float(best))

    def finish(self, run_id: str, result: TrainResult) -> None:
        """Store a run trained in this process: its model, history and final metrics.

        The run is then done (or stopped). For a job trained in a worker, the server writes
        the model's bytes the worker handed back and calls ``record_result``.
        """
        save_run_model(self.root / run_id, result.model)
        self.record_result(run_id, result.history, RunResult.of(result))

    def record_result(self, run_id: str, history: pd.DataFrame, result: RunResult) -> None:
        """Store the final history and metrics; the run is then done (or stopped, as ``result`` says)."""
        self.record_history(run_id, history)
        atomic_write_text(self.root / run_id / "result.json", json.dumps(result.to_json(), indent=2))
        self._update(run_id, status="stopped" if result.stopped else "done", seconds=result.seconds,
                     accuracy=kept_accuracy(result, history))

    def mark(self, run_id: str, status: str) -> None:
        """Set a run's status (e.g. "stopped" for a job that left the line before training)."""
        self._update(run_id, status=status)

    def fail(self, run_id: str, message: str) -> None:
        atomic_write_text(self.root / run_id / "error.txt", message)
        self._update(run_id, status="failed")

    def list(self, *, live: Collection[str] | None = None) -> pd.DataFrame:
        """All runs, newest first, one row each with ``RUN_COLUMNS``.

        Args:
            live: the ids of runs a job is queued or training for (``JobQueue.live_runs``).
                When given, a run recorded as "running" that is not among them is listed
                as "interrupted" (``interrupted``): the server that trained it stopped.
        """
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY created DESC").fetchall()
        frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
        frame["created"] = pd.to_datetime(frame["created"], unit="s", errors="coerce")  # one odd row: no date
        for column in (name for name, kind in _ADDED_COLUMNS.items() if kind == "TEXT"):
            frame[column] = frame[column].fillna("")
        for column in ("best_val_accuracy", "accuracy"):  # numbers, NaN where none (SQLite gives None)
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        if live is not None:
            frame.loc[frame["id"].isin(self.interrupted(live)), "status"] = INTERRUPTED
        return frame

    def interrupted(self, live: Collection[str]) -> list[str]:
        """Runs recorded as "running" that no job of ``live`` (run ids) trains, newest first.

        Such a run lost its server mid-training (a restart, a crash): its earlier epochs
        are kept, it has no model, and nothing will finish it. A model its server was
        checking when it stopped (up to ``TL_MAX_MODEL_FILE_MB``) is removed here.
        """
        with self._connect() as db:
            ids = [row[0] for row in db.execute(
                "SELECT id FROM runs WHERE status = ? ORDER BY created DESC", (RUNNING,))]
        live = set(live)
        lost = [run_id for run_id in ids if run_id not in live]
        for run_id in lost:
            remove_orphans(self.root / run_id, MODEL_CHECK_PREFIX)
        return lost

    def group_runs(self, group: str) -> list[RunRecord]:
        """The runs of a group, oldest first; none for ""."""
        if not group:
            return []
        with self._connect() as db:
            ids = [row[0] for row in db.execute(
                "SELECT id FROM runs WHERE run_group = ? ORDER BY created", (group,))]
        return [self.get(run_id) for run_id in ids if (self.root / run_id).is_dir()]

    def get(self, run_id: str) -> RunRecord:
        """Read a run back.

        Raises:
            KeyError: no run with that id.
        """
        with self._connect() as db:
            row = db.execute("SELECT status, owner, name, run_group, role FROM runs WHERE id = ?",
                             (run_id,)).fetchone()
        folder = self.root / run_id
        if row is None or not folder.is_dir():
            raise UnknownNameError(f"Run id must name a stored run. Received: {run_id!r}")
        saved = json.loads((folder / "config.json").read_text())
        history_path = folder / "history.csv"
        history = (pd.read_csv(history_path) if history_path.is_file()
                   else pd.DataFrame(columns=HISTORY_COLUMNS))
        result_path = folder / "result.json"
        return RunRecord(
            run_id, folder, _spec_from(saved["spec"]), TrainConfig(**saved["config"]),
            json.loads((folder / "dataset.json").read_text()), history,
            RunResult.from_json(json.loads(result_path.read_text())) if result_path.is_file() else None, row[0],
            row[1] or saved.get("owner", ""), row[2] or "", row[3] or saved.get("group", ""),
            row[4] or saved.get("role", ""),
        )

    def load_model(self, run_id: str) -> keras.Model:
        """The run's trained model, loaded in Keras's safe mode.

        Raises:
            ModelFileError: the run has no model (still running, stopped before saving, or failed).
        """
        path = self.model_path(run_id)
        if not path.is_file():
            raise ModelFileError(f"A run must have finished to have a model. Received: run {run_id!r} has none")
        from tlcore.models.model_files import load_model_file  # Keras, only when a model is opened

        return load_model_file(path)

    def model_path(self, run_id: str) -> Path:
        """Where the run's trained model is (or will be) stored."""
        return self.root / run_id / MODEL_FILE

    def model_bytes(self, run_id: str) -> bytes:
        return self.model_path(run_id).read_bytes()

    def delete(self, run_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.root / run_id, ignore_errors=True)
