"""Home for every visitor: the latest finished demo (read-only servers too) with why its button is off,
owners shown by name, and a "Copy link" on each view that can be shared."""

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, open_page

import tlcore

pytestmark = pytest.mark.slow  # trains a small run in this process, opens pages


def _demo(store, trained, owner: str, group: str, *, finish=("source", "transfer", "scratch")) -> dict[str, str]:
    """Three runs of one demo group, as the job queue records them; those in ``finish`` finished."""
    dataset, result = trained
    ids = {}
    for role in ("source", "transfer", "scratch"):
        ids[role] = store.create(result.spec, result.config, dataset.summary(), name=f"{role} of {group}",
                                 owner=owner, group=group, role=role)
        if role in finish:
            store.finish(ids[role], result)
    return ids


def test_the_latest_finished_demo_is_found_in_the_run_store(store, trained):
    assert tlcore.latest_demo_group(store) is None
    _demo(store, trained, "Ann", "demo-older")
    _demo(store, trained, "Bo", "demo-newer")
    _demo(store, trained, "Cy", "demo-unfinished", finish=("source", "transfer"))  # its scratch still training
    assert tlcore.latest_demo_group(store) == "demo-newer"


def test_a_read_only_home_shows_the_latest_demo_and_why_the_button_is_off(store, trained, monkeypatch):
    monkeypatch.setenv("TL_READ_ONLY", "1")
    ids = _demo(store, trained, "Ann", "demo-shown")
    at = open_page("../pages/home.py")
    button = next(b for b in at.button if b.label == "Run the develop-a-model demo")
    assert button.disabled
    captions = " ".join(c.value for c in at.caption)
    assert "The button is off because this server is a read-only demo" in captions
    assert any("**The latest demo on this server**, started by Ann" in m.value for m in at.markdown)
    assert [m.label for m in at.metric] == ["Transfer", "From scratch", "Gap"]
    comparison = tlcore.scratch_comparison(store, ids["transfer"])
    assert at.metric[2].value == f"{comparison.gap * 100:+.1f} points"
    assert at.query_params["demo"] == "demo-shown"  # so its Copy link names it
    assert any("Copy link" in element.proto.body for element in at.get("html"))


def test_a_read_only_home_with_no_demo_says_so(store, monkeypatch):
    monkeypatch.setenv("TL_READ_ONLY", "1")
    at = open_page("../pages/home.py")
    assert "No demo has run on this server yet." in " ".join(c.value for c in at.caption)
    assert not at.metric


def test_owners_are_names_not_session_ids(store, trained, monkeypatch):
    dataset, result = trained
    named = store.create(result.spec, result.config, dataset.summary(), name="named", owner="Ann")
    anonymous = store.create(result.spec, result.config, dataset.summary(), name="anonymous",
                             owner="session 0b01f2b4")
    for run_id in (named, anonymous):
        store.finish(run_id, result)
    monkeypatch.setenv("TL_PASSWORD", "pw")  # the Runs table names owners when access is on
    at = open_page("../pages/runs.py", _access_passed=True, _access_visitor="Bo")
    started = at.dataframe[0].value.set_index("name")["started by"]
    assert started["named"] == "Ann" and started["anonymous"] == "a visitor who gave no name"


def test_a_visitor_without_a_password_may_give_a_name(store, trained):
    _demo(store, trained, "Ann", "demo-by-ann")
    at = open_page("../pages/home.py")
    assert any("started by Ann:" in m.value for m in at.markdown)
    at.sidebar.text_input(key="visitor_name").set_value("ann ").run()  # the same person, as names compare
    assert any("started by you:" in m.value for m in at.markdown)
    import ui.access

    assert ui.access.owner_label("session 12345678") == "a visitor who gave no name"


def test_a_name_that_does_not_print_is_refused_in_words(store):
    at = open_page("../pages/home.py")
    at.sidebar.text_input(key="visitor_name").set_value("Ann\u202e").run()
    assert "must be 1 to 40 printable characters" in " ".join(c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("page", ["predict", "features", "layers", "build", "runs"])
def test_every_shareable_page_has_copy_link(store, page):
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["backbone"] = "MobileNetV2"
    at.session_state["weights"] = "Random (untrained)"
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    bodies = [element.proto.body for element in at.get("html")]
    assert sum("Copy link" in body and "navigator.clipboard.writeText" in body for body in bodies) == 1
