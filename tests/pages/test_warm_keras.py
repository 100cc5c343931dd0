"""Predict's wait for Keras's import reaches Streamlit ten times a second, so a rerun asked for meanwhile (a new
upload) ends it at once; once Keras is imported there is no wait and no spinner (issue 18)."""

import contextlib
import threading
import time

import pytest

from ui import warm_keras


class Rerun(Exception):
    """What Streamlit raises inside a script run that a rerun request ends."""


@pytest.fixture
def streamlit_calls(monkeypatch):
    """The spinners shown and the session-state reads made, the tenth read raising ``Rerun`` if asked."""
    seen = {"spinners": [], "reads": 0, "rerun_at": None}

    class State:
        def get(self, key, default=None):
            seen["reads"] += 1
            if seen["reads"] == seen["rerun_at"]:
                raise Rerun
            return default

    @contextlib.contextmanager
    def spinner(text):
        seen["spinners"].append(text)
        yield

    monkeypatch.setattr(warm_keras.st, "session_state", State())
    monkeypatch.setattr(warm_keras.st, "spinner", spinner)
    return seen


def _importing(seconds: float, monkeypatch) -> threading.Thread:
    """An import that takes ``seconds``, as the page's thread."""
    thread = threading.Thread(target=time.sleep, args=(seconds,), daemon=True)
    thread.start()
    monkeypatch.setattr(warm_keras, "_thread", thread)
    return thread


def test_the_wait_reaches_streamlit_while_the_import_runs(streamlit_calls, monkeypatch):
    thread = _importing(0.6, monkeypatch)
    started = time.perf_counter()
    warm_keras.import_keras("Loading TensorFlow for the heatmap")
    assert time.perf_counter() - started >= 0.5 and not thread.is_alive()
    assert streamlit_calls["spinners"] == ["Loading TensorFlow for the heatmap"]
    assert 4 <= streamlit_calls["reads"] <= 8  # every POLL_SECONDS (0.1 s)

    warm_keras.import_keras("again")  # imported: nothing to wait for
    assert streamlit_calls["spinners"] == ["Loading TensorFlow for the heatmap"]


def test_a_rerun_ends_the_wait_and_the_import_goes_on(streamlit_calls, monkeypatch):
    thread = _importing(2.0, monkeypatch)
    streamlit_calls["rerun_at"] = 3
    started = time.perf_counter()
    with pytest.raises(Rerun):
        warm_keras.import_keras("Loading TensorFlow for the heatmap")
    assert time.perf_counter() - started < 1.0 and thread.is_alive()  # the new run need not wait for the import
