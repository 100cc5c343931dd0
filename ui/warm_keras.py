"""Keras's import (and with it TensorFlow's: 3 to 5 s on 2 cores) in a thread of its own.

A page that answers first without TensorFlow (Predict's LiteRT top-5) starts the import as it begins, and
waits for it only where Keras is needed (the heatmap). The wait reaches Streamlit ten times a second, so a
rerun asked for meanwhile (a new upload, another sample) starts at once, instead of after the import: the
new image's top-5 is on screen while TensorFlow still loads.
"""

from __future__ import annotations

import importlib
import sys
import threading

import streamlit as st

_LOCK = threading.Lock()
_thread: threading.Thread | None = None
POLL_SECONDS = 0.1


def start() -> None:
    """Import Keras in the background, once per process (nothing to do once it is imported)."""
    global _thread
    with _LOCK:
        if _thread is None and "keras" not in sys.modules:
            _thread = threading.Thread(target=importlib.import_module, args=("keras",), name="keras-import",
                                       daemon=True)
            _thread.start()


def wait(what: str) -> None:
    """Until Keras is imported, under a spinner saying ``what`` waits. Reading the session state is a
    Streamlit call: where a rerun was asked for, Streamlit ends this script run there."""
    thread = _thread
    if thread is None or not thread.is_alive():
        return
    with st.spinner(what):
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            st.session_state.get("_keras_import")  # a rerun asked for meanwhile starts here
