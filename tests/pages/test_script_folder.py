"""No script run edits sys.path once the server has started (a thread's import walks it: ui/script_folder.py)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: sys.path during and after one Streamlit script run of the router, before and after
# importing app.py (what `streamlit run app.py` imports at start, before any run).
PATHS_AROUND_A_RUN = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from streamlit.runtime.scriptrunner.exec_code import modified_sys_path
router = sys.argv[1] + "/app/streamlit_app.py"

def around_a_run():
    before = list(sys.path)
    with modified_sys_path(router):
        during = list(sys.path)
    return {"before": before, "during": during, "after": list(sys.path)}

first = around_a_run()
import app  # noqa: F401
print(json.dumps({"without": first, "with": around_a_run()}))
"""


def test_after_app_py_is_imported_a_script_run_neither_adds_nor_removes_a_path_entry():
    done = subprocess.run([sys.executable, "-c", PATHS_AROUND_A_RUN, str(ROOT)], capture_output=True, text=True,
                          cwd="/", timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    router_folder = str(ROOT / "app")
    # Streamlit's own behaviour, which the fix relies on: the router's folder goes in first, then out again
    assert seen["without"]["during"] == [router_folder, *seen["without"]["before"]]
    assert seen["without"]["after"] == seen["without"]["before"]
    # with app.py imported the folder is already there (last, shadowing nothing) and a run changes nothing
    assert seen["with"]["before"][-1] == router_folder
    assert seen["with"]["during"] == seen["with"]["before"] == seen["with"]["after"]


# In a fresh process: two AppTest runs of the router through a symbolic link to the repository, without app.py (as a
# server started on app/streamlit_app.py itself, from a linked folder): sys.path after each run.
PATHS_AFTER_ROUTER_RUNS = r"""
import json, sys
from streamlit.testing.v1 import AppTest
router = sys.argv[1] + "/app/streamlit_app.py"
before = list(sys.path)
after = []
for _ in range(2):
    AppTest.from_file(router, default_timeout=120).run()
    after.append(list(sys.path))
print(json.dumps({"before": before, "after": after}))
"""


def test_a_server_started_on_the_router_through_a_link_keeps_the_folder_as_streamlit_spells_it(tmp_path):
    link = tmp_path / "lab"
    link.symlink_to(ROOT, target_is_directory=True)
    done = subprocess.run([sys.executable, "-c", PATHS_AFTER_ROUTER_RUNS, str(link)], capture_output=True, text=True,
                          cwd="/", timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    linked_folder = str(link / "app")
    assert linked_folder not in seen["before"]
    # the first run's own entry went at its end; the router's copy stayed (last), and the second run changed nothing
    first, second = seen["after"]
    assert first.count(linked_folder) == 1 and first[-1] == linked_folder
    assert second == first
