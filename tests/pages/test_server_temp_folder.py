"""The server's temporary files go when it stops (uvicorn ends a signalled server without exit handlers, so
TensorFlow's autograph sources stayed in /tmp at every stop: six per visit to Predict)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tlcore.core.orphans import SERVER_TEMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]

SERVE = """
import asyncio, json, os, signal, sys, tempfile
sys.path.insert(0, sys.argv[1])
import app as served

async def serve():
    async with served.lifespan(served.app):  # what the server runs when it starts and stops
        with tempfile.NamedTemporaryFile("w", prefix="__autograph_generated_file", suffix=".py",
                                         delete=False) as source:  # as autograph writes a traced function's
            source.write("x = 1")
        print(json.dumps({"file": source.name, "pid": os.getpid()}), flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)  # a server killed: its lifespan never ends
    print(json.dumps({"after": tempfile.gettempdir()}), flush=True)

asyncio.run(serve())
"""


def _serve(temp: Path, how: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("TL_RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-c", SERVE, str(ROOT), how], capture_output=True, text=True,
                          env=env, cwd="/", timeout=120)


def test_a_stopped_servers_temporary_files_go_with_it_and_a_killed_ones_go_when_the_next_starts(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()

    killed = _serve(temp, "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    seen = json.loads(killed.stdout.splitlines()[0])
    left = Path(seen["file"])
    assert left.is_file() and left.parent.parent == temp  # in a folder of the server's own, not in /tmp itself
    assert left.parent.name.startswith(f"{SERVER_TEMP_PREFIX}{seen['pid']}-")

    stopped = _serve(temp, "stop")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    lines = [json.loads(line) for line in stopped.stdout.splitlines()]
    made = Path(lines[0]["file"])
    assert not left.parent.exists()  # the killed server's folder went when this one started
    assert not made.exists() and not made.parent.exists()  # its own went when it stopped
    assert lines[1]["after"] == str(temp)  # and the process is back in the folder it came from
    assert list(temp.iterdir()) == []

