"""A process's own temporary folder: what a killed process left there goes when the next one starts."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import ended_pid

from tlcore.core.orphans import WORKER_TEMP_PREFIX, own_temp_folder, remove_orphans

KILLED_WORKER = """
import os, signal, sys, tempfile
sys.path.insert(0, {root!r})
from tlcore.core.orphans import own_temp_folder
own_temp_folder()  # as Ray's setup hook calls it in a worker
import tensorflow as tf

@tf.function
def step(x):
    if x > 0:  # Python control flow: autograph converts the function and writes its source to a file
        return x * 2
    return x

step(tf.constant(1.0))
print(tempfile.gettempdir(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as a job's worker ends: killed, so no exit handler runs
"""


@pytest.mark.slow  # a subprocess importing TensorFlow
def test_a_killed_workers_autograph_files_go_with_its_folder_when_the_next_worker_starts(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(KILLED_WORKER.format(root=str(Path(__file__).resolve().parents[3])))
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(temp), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    folder = Path(done.stdout.split()[-1])
    assert folder.parent == temp and folder.name.startswith(WORKER_TEMP_PREFIX)
    assert list(folder.glob("__autograph_generated_file*.py"))  # left behind by the killed process
    assert not list(temp.glob("__autograph_generated_file*"))  # none in the shared temporary folder
    remove_orphans(temp, WORKER_TEMP_PREFIX)  # what the next worker's own_temp_folder does first
    assert not folder.exists()


def test_a_live_processs_folder_stays_and_this_one_gets_its_own(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    live = tmp_path / f"{WORKER_TEMP_PREFIX}{os.getppid()}-abc"  # the parent of this process: alive
    live.mkdir()
    gone = tmp_path / f"{WORKER_TEMP_PREFIX}{ended_pid()}-abc"
    gone.mkdir()
    (gone / "left.py").write_text("x = 1")
    own_temp_folder()
    mine = Path(tempfile.gettempdir())
    assert live.is_dir() and not gone.exists()
    assert mine.parent == tmp_path and mine.name.startswith(f"{WORKER_TEMP_PREFIX}{os.getpid()}-")
