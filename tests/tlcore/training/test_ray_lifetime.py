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
        print("connected", flush=True)
        sys.stdin.readline()  # the test lists Ray's processes meanwhile

asyncio.run(serve())
print("stopped", flush=True)
time.sleep(60)  # the process lives on: only the lifespan's shutdown can have ended Ray
"""


def _parents() -> dict[int, int]:
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # a zombie has ended; only its parent has not read its exit yet
            found[int(pid)] = int(fields[1])
    return found


def _descendants(root: int) -> set[int]:
    parents, found, grew = _parents(), {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found - {root}


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_parents())


@pytest.mark.slow
def test_the_servers_lifespan_takes_its_local_ray_instance_down(tmp_path):
    env = {**os.environ, "TL_DATA_DIR": str(tmp_path / "data")}
    env.pop("TL_RAY_ADDRESS", None)  # its own local instance, not the test session's
    process = subprocess.Popen([sys.executable, "-c", SERVE_AND_STOP, str(ROOT)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    ray_processes: set[int] = set()
    try:
        assert process.stdout.readline().strip() == "connected"
        ray_processes = _descendants(process.pid)  # the head: GCS, raylet, agents, idle workers
        assert len(ray_processes) >= 3, ray_processes
        process.stdin.write("stop\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "stopped"
        deadline = time.monotonic() + 20
        while _alive(ray_processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in _alive(ray_processes)}
        assert left == {}, "Ray processes outlived the server's lifespan"
        assert process.poll() is None  # the driver is still alive: the lifespan did it, not an exit
    finally:
        process.kill()
        process.wait()
        for pid in _alive(ray_processes):  # never leave a Ray process behind, pass or fail
            os.kill(pid, 9)
