"""Crash-safe file writes: a temporary file in the same folder, fsynced, then renamed.

A reader (or a restarted server) sees the old complete file or the new complete
one, never half of either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from tlcore.core.errors import TLError


class StorageError(TLError, OSError):
    """The disk refused a write (full, read-only, over a size limit)."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def storage_refusals(path: Path) -> Iterator[None]:
    """Turn the disk's refusals (full, over a quota or a file size limit, read-only) while saving ``path`` into a
    ``StorageError`` that says so; other errors pass as they are."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS):
            raise StorageError(
                f"Saving {path.name} needs free disk space in {path.parent}. "
                f"Received: {os.strerror(exc.errno)}; the previous version is kept."
            ) from exc
        raise


@contextlib.contextmanager
def _temporary_beside(path: Path, suffix: str) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        with storage_refusals(path):
            yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a new file ``path``, readable by this user alone (as ``mkstemp`` makes them), and wait
    until the disk has it (not atomic: for a file no reader sees yet)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def move_into_place(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a complete, synced file (same file system) to ``path``, replacing what was there in one step."""
    path = Path(path)
    os.replace(source, path)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is either wholly old or wholly new."""
    path = Path(path)
    with _temporary_beside(path, ".tmp") as temporary:
        write_synced(temporary, data)
        move_into_place(temporary, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path: str | os.PathLike, save: Callable[[Path], None], *, suffix: str = "") -> None:
    """Let ``save(temporary_path)`` write a file (e.g. ``model.save``), then move it into place.

    Keras's ``save_model`` writes straight to its target, so it is given a
    temporary name (ending in ``suffix``, which Keras checks) beside the target.
    """
    path = Path(path)
    with _temporary_beside(path, suffix) as temporary:
        save(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        move_into_place(temporary, path)
