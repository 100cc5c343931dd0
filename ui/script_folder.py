"""The router's folder stays on ``sys.path`` for good, so no script run edits ``sys.path``.

Streamlit 1.67 runs every script inside ``modified_sys_path``: when the entrypoint's folder
(``app/``) is not on ``sys.path`` it inserts it at position 0 as the run starts and removes it
as the run ends. Python's import system walks ``sys.path`` itself, so a thread importing at
that moment (a training job importing Ray right after the Train click, Keras warming up)
walks a list that shrinks under it and skips one entry: when that entry is site-packages the
import fails with "No module named 'ray'". It happened on CI; ``bench/sys_path_race.py``
reproduces it (a few failed imports in some 200 runs as shipped, none with the folder kept;
README's Benchmarks has the figures).

With the folder already on the path, Streamlit adds and removes nothing. It is appended,
not prepended: ``app/`` holds only the router, which must not shadow any module.

Streamlit compares the folder as spelled in the script's path (``os.path.abspath``, symbolic
links kept), so the router passes its own spelling. Called during a run, the folder may be on
the path only as that run's own entry, which Streamlit takes out at the run's end: so it is
appended once per process whatever the path holds, and the copy that stays makes every later
run leave ``sys.path`` alone.
"""

import sys
from pathlib import Path

ROUTER_FOLDER = str(Path(__file__).resolve().parents[1] / "app")
_kept: set[str] = set()


def keep_on_sys_path(folder: str = ROUTER_FOLDER) -> None:
    """Keep the router's ``folder`` on ``sys.path`` for good, before Streamlit's first script run if possible."""
    if folder not in _kept:  # not "if not in sys.path": a run's own entry is there only until the run ends
        sys.path.append(folder)
        _kept.add(folder)
