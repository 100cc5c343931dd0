"""The data folder's disk budget: what is used, which datasets and uploads take it, and deleting datasets.

``TL_MAX_DATA_GB`` caps the whole data folder (runs, datasets, feature caches,
uploaded models). Whatever stores a large thing checks the room it declares
before writing (``check_room``) and counts each write against the cap while it
writes (``WriteBudget``), so a dataset that turns out larger than declared is
stopped at the cap, not when the disk is full.

Stored datasets live in ``<data_dir>/datasets/<id>``; ``list_datasets`` and
``delete_dataset`` read and remove them. The built-in sample datasets are
listed but never deleted: they are tiny and may be in use by a cached page.
Uploaded model and weights files live in ``<data_dir>/uploads`` (``tlcore.models.uploads``
stores, lists and deletes them; older versions kept them in ``models`` and ``weights``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from tlcore.core.atomic import StorageError
from tlcore.core.errors import DatasetError
from tlcore.core.settings import Settings, load_settings

GB = 1_000_000_000
DATASETS = "datasets"
"""Folder of the stored datasets, inside the data folder."""
UPLOADS = "uploads"
"""Folder of the uploaded model and weights files, inside the data folder."""
LEGACY_UPLOADS = ("models", "weights")
"""Folders where versions before ``UPLOADS`` kept uploaded models and weights files (still counted and listed)."""
RECORD_FILE = "dataset.json"
"""A stored dataset's record: name, classes, images, pixels, skipped inputs, created, digest."""
CLASSES_FILE = "classes.txt"
DIGEST_FILE = "digest.txt"
"""Written last: a dataset folder without it is unfinished."""
SAMPLE_PREFIX = "sample-"
BUILDING_PREFIX = ".building-"
DELETING_PREFIX = ".deleting-"
STALE_AFTER_S = 24 * 3600
"""Unfinished dataset folders (a killed server) older than this are removed by the next store."""

DATASET_COLUMNS = ["id", "name", "images", "classes", "bytes", "created", "builtin"]


def format_size(n_bytes: float) -> str:
    """Bytes for people: "850 bytes", "12.3 MB", "3.1 GB" (decimal units, as TL_MAX_DATA_GB)."""
    if abs(n_bytes) < 1_000:
        return f"{n_bytes:,.0f} bytes"
    for unit, size in (("GB", GB), ("MB", 1_000_000), ("KB", 1_000)):
        if abs(n_bytes) >= size or unit == "KB":
            value = n_bytes / size
            return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    raise AssertionError("unreachable")


def folder_size(folder: str | os.PathLike) -> int:
    """Bytes of the regular files under ``folder``; links are not followed, vanished files not counted."""
    total, pending = 0, [os.fspath(folder)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(entry.path)
                    elif stat.S_ISREG(info.st_mode):
                        total += info.st_size
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


def datasets_dir(settings: Settings | None = None) -> Path:
    """Where stored datasets live (``<data_dir>/datasets``)."""
    return (settings or load_settings()).data_dir / DATASETS


def uploads_dir(settings: Settings | None = None) -> Path:
    """Where uploaded model and weights files live (``<data_dir>/uploads``)."""
    return (settings or load_settings()).data_dir / UPLOADS


def upload_folders(settings: Settings | None = None) -> tuple[Path, ...]:
    """Every folder holding uploaded model and weights files: ``uploads_dir`` and the older ones."""
    settings = settings or load_settings()
    return (uploads_dir(settings), *(settings.data_dir / name for name in LEGACY_UPLOADS))


@dataclasses.dataclass(frozen=True)
class DataUsage:
    """The data folder against its cap.

    Attributes:
        used: bytes in the data folder now.
        cap: bytes it may hold (``TL_MAX_DATA_GB``).
        datasets: bytes of those in stored datasets.
        uploads: bytes of those in uploaded model and weights files.
    """

    used: int
    cap: int
    datasets: int
    uploads: int = 0

    @property
    def free(self) -> int:
        return max(self.cap - self.used, 0)

    @property
    def fraction(self) -> float:
        """Share of the cap in use, 0 to 1 (1 when the cap is 0)."""
        return min(self.used / self.cap, 1.0) if self.cap else 1.0

    def __str__(self) -> str:
        return f"{format_size(self.used)} of {_cap_text(self.cap)} used"


def _cap_text(cap: int) -> str:
    """The cap as set ("50 GB"), or in smaller units when it is under 0.1 GB."""
    return f"{cap / GB:g} GB" if cap >= GB / 10 else format_size(cap)


def data_usage() -> DataUsage:
    """How much of ``TL_MAX_DATA_GB`` the data folder uses (walks it: about 1 s per 200,000 files)."""
    settings = load_settings()
    return DataUsage(folder_size(settings.data_dir), int(settings.max_data_gb * GB),
                     folder_size(datasets_dir(settings)),
                     sum(folder_size(folder) for folder in upload_folders(settings)))


def _full_message(cap: int, what: str, size: int, used: int, *, grew: bool) -> str:
    if grew:
        received = (f"{what} that reached {format_size(size)} while writing, with {format_size(used)} in use, "
                    "so it was not kept")
    elif size:
        received = f"{what} of about {format_size(size)} while {format_size(used)} are in use"
    else:  # its size is known only as it is written, and the folder is already past the cap
        received = f"{what}, while {format_size(used)} are already in use"
    return (f"The data folder may hold at most {_cap_text(cap)} (TL_MAX_DATA_GB). Received: {received}; "
            "delete runs or datasets to make room.")


def check_room(incoming: int, *, what: str = "a dataset", used: int | None = None) -> int:
    """Refuse, before writing, anything that would take the data folder past ``TL_MAX_DATA_GB``.

    Args:
        incoming: the bytes about to be written (an estimate, e.g. an archive's declared size).
        what: what is being stored, for the message.
        used: the data folder's bytes, if already measured.

    Returns:
        The bytes in use (measured once, for a ``WriteBudget``).

    Raises:
        StorageError: the data folder has no room for ``incoming`` bytes.
    """
    settings = load_settings()
    used = folder_size(settings.data_dir) if used is None else used
    cap = int(settings.max_data_gb * GB)
    if used + incoming > cap:
        raise StorageError(_full_message(cap, what, incoming, used, grew=False))
    return used


_ledger_lock = threading.Lock()
_ledger_total = 0
"""Bytes written by every WriteBudget of this process: writes others made after a budget measured the folder."""


class WriteBudget:
    """Counts bytes against ``TL_MAX_DATA_GB`` while something is being written.

    Measures the data folder once, checks the declared size, then ``take(n)``
    before each write of n bytes. Writes by other budgets of this process
    (another visitor's upload) made meanwhile are counted too.
    """

    def __init__(self, *, expected: int = 0, what: str = "a dataset") -> None:
        settings = load_settings()
        self.cap = int(settings.max_data_gb * GB)
        self.what = what
        with _ledger_lock:
            self._others_at_start = _ledger_total
        self.used = check_room(expected, what=what)
        self.written = 0

    def take(self, n_bytes: int) -> None:
        """Count ``n_bytes`` about to be written.

        Raises:
            StorageError: writing them would take the data folder past the cap.
        """
        global _ledger_total
        with _ledger_lock:
            others = _ledger_total - self._others_at_start - self.written
            if self.used + others + self.written + n_bytes > self.cap:
                raise StorageError(_full_message(self.cap, self.what, self.written + n_bytes,
                                                 self.used + others, grew=True))
            _ledger_total += n_bytes
            self.written += n_bytes


def sweep_unfinished(settings: Settings | None = None) -> None:
    """Remove dataset folders left unfinished (a killed server) more than a day ago."""
    folder = datasets_dir(settings)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith((BUILDING_PREFIX, DELETING_PREFIX)):
            try:
                old = time.time() - entry.lstat().st_mtime > STALE_AFTER_S
            except FileNotFoundError:
                continue
            if old or entry.name.startswith(DELETING_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)


def _read_record(folder: Path) -> dict:
    try:
        return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _dataset_row(folder: Path) -> dict:
    record = _read_record(folder)
    builtin = folder.name.startswith(SAMPLE_PREFIX)
    classes = record.get("classes")
    if classes is None:
        try:
            classes = (folder / CLASSES_FILE).read_text(encoding="utf-8").splitlines()
        except OSError:
            classes = []
    images = record.get("images")
    if images is None:
        images = sum(1 for path in folder.glob("*/*") if path.suffix in (".png", ".jpg", ".webp"))
    created = record.get("created") or folder.stat().st_mtime
    name = record.get("name") or ("built-in sample shapes" if builtin else "a dataset stored before records")
    drawn = re.fullmatch(rf"{SAMPLE_PREFIX}(\d+)-(\d+)-\d+", folder.name)
    if drawn and name == "built-in sample shapes":  # stored before its name said which drawing it is
        name = f"{name}, {drawn[1]} a class at {drawn[2]} px"
    return {"id": folder.name, "name": name, "images": int(images), "classes": len(classes),
            "bytes": folder_size(folder), "created": float(created), "builtin": builtin}


def list_datasets() -> pd.DataFrame:
    """The stored datasets, newest first.

    Returns:
        One row per dataset with columns ``id`` (for ``delete_dataset``), ``name``,
        ``images``, ``classes``, ``bytes`` (size on disk), ``created`` (as the run store's) and
        ``builtin`` (a sample dataset, which is not deleted). Unfinished ones are not listed.
    """
    folder = datasets_dir()
    rows = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
                continue
            if not (entry / DIGEST_FILE).is_file() and not (entry / CLASSES_FILE).is_file():
                continue  # neither finished nor a dataset of the older layout
            try:
                rows.append(_dataset_row(entry))
            except OSError:  # deleted meanwhile
                continue
    table = pd.DataFrame(rows, columns=DATASET_COLUMNS).sort_values("created", ascending=False, ignore_index=True)
    table["created"] = pd.to_datetime(table["created"], unit="s")
    return table


def delete_dataset(dataset_id: str, *, in_use: Collection[str] = ()) -> int:
    """Delete a stored dataset and return the bytes freed.

    The folder is first renamed out of the way, so no one can open it half
    deleted. Runs trained on it keep their records and models.

    Args:
        dataset_id: an ``id`` from ``list_datasets``.
        in_use: ids of datasets that queued or running jobs read (``JobQueue.datasets_in_use``).

    Raises:
        DatasetError: not the id of a stored dataset, a built-in sample dataset, or one in use.
    """
    folder = datasets_dir()
    ids = set(list_datasets()["id"])
    if dataset_id not in ids:
        shown = f"{len(ids)} stored dataset(s)" if ids else "no stored datasets"
        raise DatasetError(
            f"A dataset to delete must be one listed by list_datasets ({shown}). Received: {dataset_id!r}"
        )
    if dataset_id.startswith(SAMPLE_PREFIX):
        raise DatasetError(
            "Built-in sample datasets are not deleted: they are small, rebuilt on demand and may be in "
            f"use. Received: {dataset_id!r}"
        )
    if dataset_id in in_use:
        raise DatasetError(
            "A dataset that a queued or running training job reads cannot be deleted; stop the job or "
            f"wait for it to end. Received: {dataset_id!r}, in use"
        )
    target = folder / dataset_id
    freed = folder_size(target)
    doomed = folder / f"{DELETING_PREFIX}{uuid.uuid4().hex}"
    try:
        target.rename(doomed)
    except FileNotFoundError:  # deleted by someone else meanwhile
        return 0
    shutil.rmtree(doomed, ignore_errors=True)
    return freed
