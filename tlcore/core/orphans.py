"""Temporary entries named for the process that made them, removed once that process has ended.

A process killed midway (a run deleted while it trained, a copy cut off mid-transfer) cannot remove
what it was writing; the next process that writes there does, by the process id in the name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def owned_name(prefix: str) -> str:
    """``<prefix><this process's id>-``: the start of a name ``remove_orphans`` can trace to its process."""
    return f"{prefix}{os.getpid()}-"


def remove_orphans(folder: Path, prefix: str) -> None:
    """Remove the entries of ``folder`` named ``<prefix><pid>-...`` whose process (on this machine) has ended."""
    for entry in folder.glob(f"{prefix}*"):
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
