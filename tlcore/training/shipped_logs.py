"""A run's TensorBoard logs, brought back from a worker that cannot see the server's run folder.

A worker on this machine (or on a shared mount) writes a run's logs into the run's folder as it
trains, so ``tensorboard --logdir`` shows them live. A worker on another machine writes them into
a folder of its own and hands them back with the model when the run ends (``pack_logs``); the
server, which alone writes the run store, checks them as any archive from another machine and
puts them in place whole or not at all (``unpack_logs``).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from tlcore.core.errors import DatasetError
from tlcore.core.settings import load_settings
from tlcore.data.intake import check_archive, read_capped

LOG_FOLDER = "tensorboard"
"""A run's TensorBoard logs, inside its folder (``tlcore.training.tensorboard`` writes them)."""
MAX_LOG_BYTES = 256 * 2**20
"""A run's logs, at most, packed or unpacked (the projector's vectors are capped at about 20 MB)."""


def log_folder(run_folder: str | Path) -> Path:
    """Where a run's TensorBoard logs go."""
    return Path(run_folder) / LOG_FOLDER


def pack_logs(folder: str | Path) -> bytes:
    """Every file under ``folder`` in one zip (relative names); empty bytes when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return b""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def unpack_logs(data: bytes, run_folder: str | Path) -> Path:
    """Put logs a worker packed into ``run_folder``'s log folder, whole or not at all.

    Raises:
        DatasetError: the archive breaks a rule (size, names, links, ratio), in words; nothing is written.
    """
    if len(data) > MAX_LOG_BYTES:
        raise DatasetError(f"A run's TensorBoard logs may be at most {MAX_LOG_BYTES:,} bytes. "
                           f"Received: {len(data):,} bytes")
    target = Path(run_folder) / LOG_FOLDER
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"A run's TensorBoard logs must come as a zip archive. Received: {exc}") from None
    with archive:
        members = check_archive(archive, load_settings(), data)
        if sum(info.file_size for info in members) > MAX_LOG_BYTES:
            raise DatasetError(f"A run's TensorBoard logs may unpack to at most {MAX_LOG_BYTES:,} bytes. "
                               f"Received: {sum(info.file_size for info in members):,} bytes")
        staging = Path(tempfile.mkdtemp(prefix=".tensorboard-", dir=run_folder))
        try:
            for info in members:
                if info.is_dir():
                    continue
                path = staging / info.filename
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(read_capped(archive, info))
            if target.exists():  # logs written earlier (a first phase on this machine): replaced whole
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
