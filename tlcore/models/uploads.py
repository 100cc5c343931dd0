"""Uploaded model and weights files: stored once by content, within ``TL_MAX_DATA_GB``, listed and deleted.

Layout, under ``<data_dir>/uploads``::

    <digest><suffix>        the bytes as uploaded (suffix ``.keras``, ``.weights.h5`` or ``.h5``,
                            which Keras reads to choose a loader); its id is this file name
    <digest><suffix>.json   its record: the name it was uploaded as, its kind, size, owner, when

The same bytes uploaded again (by anyone, under any name) are the stored file: no room is
needed and the first record is kept. New bytes are checked against the room left under
``TL_MAX_DATA_GB`` before anything is written, then written through the quota's accounting
(``WriteBudget``) and atomically, so a refused or interrupted upload leaves nothing behind.
Files that older versions kept in ``<data_dir>/models`` and ``<data_dir>/weights`` are listed
and deleted here too.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Collection
from pathlib import Path, PurePath

import pandas as pd

from tlcore.core.atomic import atomic_write_bytes
from tlcore.core.errors import ModelFileError
from tlcore.core.storage import WriteBudget, upload_folders, uploads_dir

UPLOAD_SUFFIXES = ((".weights.h5", "weights"), (".h5", "weights"), (".keras", "model"))
"""Accepted endings of an uploaded file's name, and what each holds (the longest ending first)."""
DIGEST_CHARS = 32
"""Hex digits of the SHA-256 of the bytes in a stored upload's name (128 bits)."""
RECORD_SUFFIX = ".json"
MAX_NAME_CHARS = 120
"""An uploaded file's name is recorded up to this many characters (its ending is kept)."""
UPLOAD_COLUMNS = ["id", "name", "kind", "bytes", "created", "owner"]
_STORED_NAME = re.compile(r"[0-9a-f]{16}(?:[0-9a-f]{16})?(?:\.weights\.h5|\.h5|\.keras)")
"""A stored upload's file name: this version's (32 hex digits) or an older version's (16)."""


def upload_kind(filename: str) -> tuple[str, str]:
    """The ending an uploaded file is stored with, and what it holds.

    Args:
        filename: the name it was uploaded as (only its ending is read, in any case).

    Returns:
        (suffix, kind): ``(".keras", "model")``, ``(".weights.h5", "weights")`` or ``(".h5", "weights")``.

    Raises:
        ModelFileError: any other ending.
    """
    lowered = PurePath(str(filename)).name.lower()
    for suffix, kind in UPLOAD_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix, kind
    raise ModelFileError(
        "An uploaded model or weights file must be named *.keras, *.weights.h5 or *.h5. "
        f"Received: {PurePath(str(filename)).name[:MAX_NAME_CHARS]!r}"
    )


def _clean_name(filename: str, suffix: str) -> str:
    name = PurePath(str(filename)).name.strip() or f"upload{suffix}"
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - len(suffix) - 3] + "..." + suffix


def store_model_upload(data: bytes, filename: str, *, owner: str = "") -> Path:
    """Keep an uploaded model or weights file, named by its content, within the data folder's quota.

    Args:
        data: the file's bytes.
        filename: the name it was uploaded as: its ending (``.keras``, ``.weights.h5``, ``.h5``)
            is kept, the name itself is only recorded, never used as a path.
        owner: who uploaded it (a login name or a browser session's id), recorded with it
            (``tlcore.can_manage`` decides who may delete it).

    Returns:
        The stored file's path (the same for the same bytes and ending, however often uploaded).

    Raises:
        ModelFileError: an empty file or a name with another ending; nothing is written.
        StorageError: the data folder has no room for it (``TL_MAX_DATA_GB``) or the disk
            refused the write; nothing is written.
    """
    suffix, kind = upload_kind(filename)
    name = _clean_name(filename, suffix)
    if not data:
        raise ModelFileError(f"An uploaded {kind} file must not be empty. Received: {name!r}, 0 bytes")
    path = uploads_dir() / f"{hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]}{suffix}"
    if path.is_file():  # stored before: needs no room, keeps its first record
        return path
    record = json.dumps({"name": name, "kind": kind, "bytes": len(data), "owner": owner or "",
                         "created": time.time()}).encode("utf-8")
    budget = WriteBudget(expected=len(data) + len(record), what=f"an uploaded {kind} file ({name!r})")
    budget.take(len(data) + len(record))
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_name(path.name + RECORD_SUFFIX), record)  # listed with a plain name till then
    return path


def _stored_files() -> dict[str, Path]:
    """Upload id (the stored file's name) -> its path, across this version's folder and the older ones."""
    found: dict[str, Path] = {}
    for folder in upload_folders():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if _STORED_NAME.fullmatch(entry.name) and not entry.is_symlink() and entry.is_file():
                found.setdefault(entry.name, entry)
    return found


def _record(path: Path) -> dict:
    try:
        record = json.loads(path.with_name(path.name + RECORD_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def list_uploads() -> pd.DataFrame:
    """The uploaded model and weights files, newest first.

    Returns:
        One row per stored file with columns ``id`` (for ``delete_upload``), ``name`` (as
        uploaded; files from before records: "an upload stored before records"), ``kind``
        ("model" or "weights"), ``bytes`` (size on disk), ``created`` and ``owner`` ("" when
        not recorded: only admins manage those).
    """
    rows = []
    for upload_id, path in _stored_files().items():
        try:
            info = path.stat()
        except FileNotFoundError:  # deleted meanwhile
            continue
        record = _record(path)
        suffix, kind = upload_kind(upload_id)
        rows.append({"id": upload_id, "name": str(record.get("name") or "an upload stored before records"),
                     "kind": kind, "bytes": info.st_size, "created": float(record.get("created") or info.st_mtime),
                     "owner": str(record.get("owner") or "")})
    table = pd.DataFrame(rows, columns=UPLOAD_COLUMNS).sort_values("created", ascending=False, ignore_index=True)
    table["created"] = pd.to_datetime(table["created"], unit="s")
    return table


def delete_upload(upload_id: str, *, in_use: Collection[str | None] = ()) -> int:
    """Delete an uploaded model or weights file and return the bytes freed.

    Runs trained from it keep their records and models; a visitor still holding the file in
    an upload box stores it again on the next page run (if there is room).

    Args:
        upload_id: an ``id`` from ``list_uploads``.
        in_use: weights of queued or running training jobs (their ``TransferSpec.weights``
            and ``base_model``: paths, "imagenet" or None); an upload among them is kept.

    Raises:
        ModelFileError: not the id of a stored upload, or one a queued or running job reads.
    """
    stored = _stored_files()
    if upload_id not in stored:
        shown = f"{len(stored)} stored upload(s)" if stored else "no stored uploads"
        raise ModelFileError(
            f"An upload to delete must be one listed by list_uploads ({shown}). Received: {upload_id!r}"
        )
    path = stored[upload_id]
    if any(used and PurePath(str(used)).name == upload_id for used in in_use):
        raise ModelFileError(
            "An upload that a queued or running training job reads cannot be deleted; stop the job or "
            f"wait for it to end. Received: {upload_id!r}, in use"
        )
    record = path.with_name(path.name + RECORD_SUFFIX)
    freed = 0
    for doomed in (path, record):
        try:
            size = doomed.stat().st_size
            doomed.unlink()
        except FileNotFoundError:  # deleted by someone else meanwhile, or no record
            continue
        freed += size
    return freed
