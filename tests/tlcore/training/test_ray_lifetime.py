"""The local Ray instance goes down with the server (issue 22: three Ray processes outlived it)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SERVE_AND_STOP = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
import app as served
import tlcore

async def serve():
    async with served.lifespan(served.app):  # what the server runs when it starts and stops
        tlcore.connect_ray()
        import ray
        print(ray._private.worker._global_node.get_session_dir_path(), flush=True)

asyncio.run(serve())
print("stopped", flush=True)
time.sleep(60)  # the process lives on: only the lifespan's shutdown can have ended Ray
"""


def _ray_processes(session_dir: str) -> list[str]:
    """Command lines of the processes started for one Ray session."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session_dir in line:
            found.append(f"{pid}: {line[:120]}")
    return found


@pytest.mark.slow
def test_the_servers_lifespan_takes_its_local_ray_instance_down(tmp_path):
    env = {**os.environ, "TL_DATA_DIR": str(tmp_path / "data")}
    env.pop("TL_RAY_ADDRESS", None)  # its own local instance, not the test session's
    process = subprocess.Popen([sys.executable, "-c", SERVE_AND_STOP, str(ROOT)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:
        session = process.stdout.readline().strip()
        assert session.startswith("/") and "session_" in session, session
        assert process.stdout.readline().strip() == "stopped"
        deadline = time.monotonic() + 20
        while _ray_processes(session) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ray_processes(session) == [], "Ray processes outlived the server's lifespan"
        assert process.poll() is None  # the driver is still alive: the lifespan did it, not an exit
    finally:
        process.kill()
        process.wait()
