"""A run's Ray Train checkpoint folder: named for its process; those of processes that are gone are removed."""

import os
import tempfile
from pathlib import Path

from support import ended_pid

from tlcore.training.data_parallel import STORAGE_PREFIX, storage_folder


def test_a_new_folder_is_this_processs_and_folders_of_ended_processes_go():
    gone = Path(tempfile.mkdtemp(prefix=f"{STORAGE_PREFIX}{ended_pid()}-"))  # a run deleted as it trained
    (gone / "data-parallel").mkdir()
    (gone / "data-parallel" / "weights.npz").write_bytes(b"\0" * 1024)
    mine = Path(tempfile.mkdtemp(prefix=f"{STORAGE_PREFIX}{os.getpid()}-"))  # a run of this process, training
    other = Path(tempfile.mkdtemp(prefix=f"{STORAGE_PREFIX}x-"))  # not named by a process: left alone
    new = Path(storage_folder())
    try:
        assert not gone.exists() and mine.is_dir() and other.is_dir()
        assert new.is_dir() and new.name.startswith(f"{STORAGE_PREFIX}{os.getpid()}-") and new != mine
    finally:
        for folder in (mine, other, new):
            folder.rmdir()
