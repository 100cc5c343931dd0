"""After each script run Keras is reset as Streamlit resets it, without Streamlit's full gc.collect()."""

from support import open_page


def test_every_run_resets_keras_and_none_collects_all_garbage(monkeypatch):
    import keras
    from streamlit.runtime.scriptrunner import script_runner

    from ui import keras_reset

    asked = []
    reset = keras.backend.clear_session
    monkeypatch.setattr(keras.backend, "clear_session",
                        lambda free_memory=True: asked.append(free_memory) or reset(free_memory=free_memory))
    at = open_page("../pages/layers.py")  # two runs (the router, then the page): Keras loaded in both
    at.run()
    assert script_runner._clean_problem_modules is keras_reset.reset_after_run  # a Streamlit upgrade renamed it?
    assert len(asked) >= 3 and not any(asked)  # reset after every run, never with a full collection
