"""Temporary entries named for the process that made them, removed once that process has ended.

A process killed midway (a run deleted while it trained, a copy cut off mid-transfer, a job's Ray
worker, which always ends killed) cannot remove what it was writing; the next process that writes
there does, by the process id in the name.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

WORKER_TEMP_PREFIX = "tl-worker-"
SERVER_TEMP_PREFIX = "tl-server-"


def owned_name(prefix: str) -> str:
    """``<prefix><this process's id>-``: the start of a name ``remove_orphans`` can trace to its process."""
    return f"{prefix}{os.getpid()}-"


def remove_orphans(folder: Path, prefix: str) -> None:
    """Remove the entries of ``folder`` (folders or files) named ``<prefix><pid>-...`` whose process (on this
    machine) has ended."""
    for entry in folder.glob(f"{prefix}*"):
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def own_temp_folder(prefix: str = WORKER_TEMP_PREFIX) -> Path:
    """Give this process a temporary folder of its own (``tempfile``'s), and remove those of ended ones.

    Ray's ``worker_process_setup_hook`` for every worker of the lab (``tlcore.training.worker``): a
    job's worker is killed when its job ends, so what it left in the temporary folder stayed there, at
    least TensorFlow's autograph sources (``__autograph_generated_file*.py``, one per traced Python
    function, removed only at a normal exit): hundreds a day on a busy server. They now go with the
    worker's folder, at the next worker's start, or at its own exit when it exits normally.

    The dashboard's server calls it with ``SERVER_TEMP_PREFIX`` when it starts (``app.py``): stopped by
    a signal, it ends without running exit handlers (uvicorn raises the signal again once it has shut
    down), so its autograph sources stayed behind at every stop; its folder goes when it stops.
    """
    parent = Path(tempfile.gettempdir())
    remove_orphans(parent, prefix)
    folder = Path(tempfile.mkdtemp(prefix=owned_name(prefix), dir=parent))
    atexit.register(shutil.rmtree, folder, True)
    tempfile.tempdir = str(folder)
    return folder


def give_back_temp_folder(folder: Path) -> None:
    """Remove ``folder`` (from ``own_temp_folder``) and return this process to the folder it came from."""
    if tempfile.tempdir == str(folder):
        tempfile.tempdir = str(folder.parent)
    shutil.rmtree(folder, ignore_errors=True)
