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
"""

import sys
from pathlib import Path

ROUTER_FOLDER = str(Path(__file__).resolve().parents[1] / "app")


def keep_on_sys_path() -> None:
    """Put ``app/`` on ``sys.path`` once, before Streamlit's first script run if possible."""
    if ROUTER_FOLDER not in sys.path:
        sys.path.append(ROUTER_FOLDER)
