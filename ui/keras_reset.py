"""Streamlit's reset of Keras after every script run, without its full garbage collection.

Streamlit ends every script run, a fragment's included, with ``keras.backend.clear_session()`` when
Keras is loaded (``_clean_problem_modules`` in its script runner), and that call ends with a full
``gc.collect()``: about 0.1 s with TensorFlow and two networks in memory (measured on 2 cores), held
under Python's lock, after every rerun of every page and every second of a run page's progress; in
the pages' tests it was about a fifth of the time. The reset stays, as Streamlit does it (Keras
numbers the layers it names itself from zero again, so a page shows the names a program shows,
``tlcore.explain.code``), but ``free_memory=False``: Python's own collector frees cycles as it
always does. Matplotlib's figures are still closed, as Streamlit does.
"""

from __future__ import annotations

import sys

from streamlit.runtime.scriptrunner import script_runner


def reset_after_run() -> None:
    """What Streamlit runs after each script run, without the collection."""
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session(free_memory=False)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def install() -> None:
    """Take the place of Streamlit's reset (read by name at the end of every run: the next run has it).
    A Streamlit without it keeps its own: ``tests/pages/test_keras_reset.py`` says so at the upgrade."""
    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = reset_after_run
