"""Imports from a thread while a Streamlit script run ends: how many fail, with and without the fix.

Run: .venv/bin/python bench/sys_path_race.py [seconds]   (default 20 s per side)

What happens in the server: a script run (inside Streamlit's ``modified_sys_path``, which
inserts ``app/`` at ``sys.path[0]`` and removes it at the end) starts threads that import
(the Train click starts a job that imports Ray), then the run ends. Here each "run" enters
``modified_sys_path`` for the router, starts ten threads that each import a small module of
site-packages afresh, and leaves. "as shipped" is the path as Streamlit leaves it; "folder
kept" calls ``ui.script_folder.keep_on_sys_path()`` first, as app.py does. Both sides run in
fresh processes one after the other; a failure is a ``ModuleNotFoundError`` for a module that
is installed. Not a speed figure: a count of failures, which depends on thread timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["six", "idna", "certifi", "packaging", "attr", "yaml", "requests", "urllib3", "charset_normalizer",
         "filelock"]

SIDE = r"""
import importlib, sys, threading, time
sys.path.insert(0, {root!r})
from streamlit.runtime.scriptrunner.exec_code import modified_sys_path
from ui import script_folder
if {keep}:
    script_folder.keep_on_sys_path()
script = script_folder.ROUTER_FOLDER + "/streamlit_app.py"
names, failed, runs = {names!r}, [], 0

def job(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        failed.append(str(exc))

start = time.monotonic()
while time.monotonic() - start < {seconds}:
    for key in [key for key in sys.modules if key.split(".")[0] in names]:
        del sys.modules[key]
    with modified_sys_path(script):
        threads = [threading.Thread(target=job, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join()
    runs += 1
print(len(failed), runs, failed[:2])
"""


def side(keep: bool, seconds: float) -> str:
    code = SIDE.format(root=str(ROOT), keep=keep, names=NAMES, seconds=seconds)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    failed, runs, examples = done.stdout.split(" ", 2)
    return f"{failed} failed imports in {runs} runs of 10 threads {examples.strip()}"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from machine_line import this_machine  # bench/ is this script's folder, first on the path

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    print(this_machine())
    print(f"as shipped:  {side(False, seconds)}")
    print(f"folder kept: {side(True, seconds)}")


if __name__ == "__main__":
    main()
