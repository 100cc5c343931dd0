"""The first screen on a server without ImageNet weights: no red box, one calm notice, and what works offered.

Every test here is offline (the weights URL cannot be reached) with an empty Keras cache and its own run store.
"""


import pytest
from streamlit.testing.v1 import AppTest
from support import RANDOM, open_link

CALM = "ImageNet weights are not on this server, and it cannot download them now."


def _keep(store, trained, **fields) -> str:
    dataset, result = trained
    run_id = store.create(result.spec, result.config, dataset.summary(), **fields)
    store.finish(run_id, result)
    return run_id


def fresh(page: str = "../pages/home.py", **params) -> AppTest:
    """A fresh visit (nothing chosen yet) from a link with ``params``, then ``page``."""
    return open_link(page, backbone="MobileNetV2", **params)


def text_of(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error") for e in at.get(kind)]
    parts += [e.value for e in at.sidebar.caption]
    return "\n".join(str(p) for p in parts)


def test_a_fresh_visit_offline_starts_on_random_weights_without_an_error(offline, store):
    home = fresh()
    assert home.session_state["weights"] == RANDOM  # not ImageNet, which cannot be had
    assert not home.error
    assert "cannot download one now" in text_of(home) and "The demo below trains its own" in text_of(home)
    at = fresh("../pages/predict.py")
    assert not at.error
    assert at.session_state["predict_model"] == "imagenet" and len(at.table[0].value) == 5
    assert "not predictions" in at.warning[0].value and "develop-a-model demo on Home" in at.warning[0].value
    shown = text_of(at)
    assert "urlopen" not in shown and ".h5" not in shown and str(offline) not in shown


def test_a_link_asking_for_imagenet_gets_one_calm_notice_and_what_works(offline, store):
    at = fresh("../pages/predict.py", weights="ImageNet")
    assert at.session_state["weights"] == "ImageNet"  # the link's choice is kept...
    assert not at.error and not at.exception  # ...and said calmly: no red box
    shown = text_of(at)
    assert sum(CALM in m.value for m in at.main.markdown) == 1  # once on the page (the sidebar's line is shorter)
    assert "urlopen" not in shown and ".h5" not in shown and str(offline) not in shown
    assert "No trained run yet" in shown
    assert not any(e.label.startswith("For the server's operator") for e in at.expander)  # a visitor
    assert [link.label for link in at.page_link if link.label == "Run the develop-a-model demo"]
    at.button(key="offline-random").click().run()
    assert at.session_state["weights"] == RANDOM and not at.error
    assert len(at.table[0].value) == 5


def test_the_operator_is_told_which_file_goes_where(offline, store, monkeypatch):
    import ui.access

    monkeypatch.setattr(ui.access, "_connection", lambda: ("127.0.0.1", [("host", "localhost:8501")]))
    at = fresh("../pages/features.py", weights="ImageNet")
    assert not at.error
    operator = next(e for e in at.expander if e.label.startswith("For the server's operator"))
    said = " ".join(m.value for m in operator.markdown)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" in said and str(offline) in said


@pytest.mark.slow  # trains a small run in this process
def test_offline_a_fresh_visit_classifies_with_the_newest_trained_run(offline, store, trained):
    older = _keep(store, trained, name="older run")
    newest = _keep(store, trained, name="newest run")
    at = fresh("../pages/predict.py")
    assert at.session_state["predict_model"] == newest != older
    assert not at.error and set(at.table[0].value["label"]) == {"ant", "bee"}
    assert "Untrained weights" not in " ".join(c.value for c in at.sidebar.caption)  # Predict uses a trained run
    assert not at.warning
    # a link that asked for ImageNet is offered the run in one click
    linked = fresh("../pages/predict.py", weights="ImageNet", predict_model="imagenet")
    assert not linked.error
    linked.button(key="offline-newest").click().run()
    assert linked.session_state["predict_model"] == newest and set(linked.table[0].value["label"]) == {"ant", "bee"}


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["random", "imagenet", "run", "newest-run", "nonsense"])
def test_the_server_sets_what_a_fresh_visit_starts_on(offline, store, trained, monkeypatch, setting):
    first = _keep(store, trained, name="first")
    _keep(store, trained, name="second")
    monkeypatch.setenv("TL_DEFAULT_MODEL", first if setting == "run" else setting)
    at = fresh("../pages/predict.py")
    assert not at.error and not at.exception
    expected_weights = "ImageNet" if setting == "imagenet" else RANDOM
    assert at.session_state["weights"] == expected_weights
    model = {"random": "imagenet", "imagenet": "imagenet", "run": first}.get(setting, store.list()["id"].iloc[0])
    assert at.session_state["predict_model"] == model
    if setting == "imagenet":  # asked for, cannot be had: the calm notice
        assert CALM in text_of(at) and not at.table


def test_the_sidebar_shows_visitors_no_file_names(offline, store):
    at = fresh(weights="ImageNet")
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "ImageNet weights: none here, and no download possible now." in captions
    assert ".h5" not in captions and str(offline) not in captions and "Keras cache" not in captions
