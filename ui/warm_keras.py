"""Keras's import (and with it TensorFlow's: 3 to 5 s on 2 cores) in a thread of its own, waited for in a
way a rerun can end.

A page that answers first without TensorFlow (Predict's LiteRT top-5) draws its answer, then imports Keras
where it needs it (the heatmap). The import runs in a thread and the page's wait reaches Streamlit ten times
a second, so a rerun asked for meanwhile (a new upload, another sample) starts then instead of after the
import, the model's load and the heatmap: the new image's top-5 is on screen while TensorFlow still loads.

The import is started only there, after the answer was drawn: loading TensorFlow's shared libraries holds
Python's GIL for a second or more, during which the server sends nothing, so an import started before the
answer (tried first) held the answer back with it.
"""

from __future__ import annotations

import importlib
import sys
import threading

import streamlit as st

_LOCK = threading.Lock()
_thread: threading.Thread | None = None
POLL_SECONDS = 0.1


def _start() -> threading.Thread | None:
    """Import Keras in a thread, once per process: that thread (None when something else imported Keras)."""
    global _thread
    with _LOCK:
        if _thread is None and "keras" not in sys.modules:
            _thread = threading.Thread(target=importlib.import_module, args=("keras",), name="keras-import",
                                       daemon=True)
            _thread.start()
        return _thread


def import_keras(what: str) -> None:
    """Import Keras, under a spinner saying ``what`` waits, in a wait a rerun ends: reading the session
    state is a Streamlit call, and where a rerun was asked for, Streamlit ends this script run there."""
    thread = _start()
    if thread is None or not thread.is_alive():
        return
    with st.spinner(what):
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            st.session_state.get("_keras_import")  # a rerun asked for meanwhile starts here
