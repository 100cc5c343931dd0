"""The develop-a-model demo: the target dataset, the chaining through the queue, Home (the real recipe's margin:
``test_demo_recipe.py``)."""

import dataclasses
import shutil

import keras
import pytest
from support import open_page, tiny_demo_recipe

import tlcore
from tlcore.data.samples import SAMPLE_CLASSES
from tlcore.training.demo import TARGET_CLASSES

TINY = tiny_demo_recipe()
"""The demo's chaining at the smallest size (VGG16, whose few layers build and trace quickest in a worker):
this checks roles, groups and the reused base, not the margin."""


def test_the_target_dataset_is_deterministic_and_its_classes_are_new():
    first = tlcore.demo_target_dataset(per_class=3, size=32, seed=7)
    shutil.rmtree(first.root)  # drawn again from nothing, not read back
    again = tlcore.demo_target_dataset(per_class=3, size=32, seed=7)
    assert again.digest == first.digest and len(first.digest) == 64
    assert again.class_names == TARGET_CLASSES and again.counts == dict.fromkeys(TARGET_CLASSES, 3)
    assert not set(TARGET_CLASSES) & set(SAMPLE_CLASSES)
    assert tlcore.demo_target_dataset(per_class=3, size=32, seed=8).digest != first.digest
    listed = tlcore.list_datasets().set_index("id")
    assert listed.loc[first.root.name, "builtin"] and listed.loc[first.root.name, "name"] == first.name
    with pytest.raises(tlcore.ConfigError, match=r"Images per class must be from 2 to 500. Received: per_class=1"):
        tlcore.demo_target_dataset(per_class=1)


def test_a_recipe_whose_models_disagree_is_refused():
    with pytest.raises(tlcore.ConfigError, match=r"take its images' size, 48x48. Received: input_shape=\(32, 32, 3\)"):
        dataclasses.replace(tlcore.DEMO_RECIPE, source_spec=TINY.source_spec)


def test_a_demo_whose_source_never_trains_says_why_and_queues_no_target(tmp_path):
    queue = tlcore.JobQueue(max_running=0)  # nothing may start: the source waits in line
    demo = tlcore.start_demo(queue, tlcore.RunStore(tmp_path), owner="ada", recipe=TINY)
    waiting = demo.snapshot()
    assert (waiting.stage, waiting.source.state, waiting.source.position) == ("source", "queued", 1)
    assert waiting.transfer is None and waiting.scratch is None and "Step 1 of 2" in waiting.describe()
    demo.stop()  # the source leaves the line untrained
    failed = demo.wait(30)
    assert failed.stage == "failed" and failed.finished and failed.source.state == "stopped"
    assert failed.error == ("the source run did not finish (it was stopped before it finished), so there is "
                            "no trained base to reuse.")
    runs = tlcore.RunStore(tmp_path).group_runs(demo.group)
    assert [(run.role, run.owner, run.status) for run in runs] == [("source", "ada", "stopped")]


def test_a_full_line_refuses_the_demo_before_anything_is_queued(tmp_path):
    store = tlcore.RunStore(tmp_path)
    with pytest.raises(tlcore.ConfigError, match="At most 0 training jobs may wait in line"):
        tlcore.start_demo(tlcore.JobQueue(max_waiting=0), store, recipe=TINY)
    assert store.list().empty


@pytest.fixture(scope="module")
def clicked_demo(ray_address):
    """Home's button clicked with the tiny recipe, and the demo it started run to the end (Ray workers)."""
    from ui.demo import demo_registry

    at = open_page("../pages/home.py", demo_recipe=TINY)
    button = next(b for b in at.button if b.label == "Run the develop-a-model demo")
    assert not button.disabled
    before = len(demo_registry().groups())
    button.click().run()
    assert not at.exception, at.exception
    group = at.session_state["demo_group"]
    live = " ".join(i.value for i in at.info)
    button.click().run()  # a second click on the button as it was drawn, before it went off
    assert at.session_state["demo_group"] == group and len(demo_registry().groups()) == before + 1
    demo = demo_registry().get(group)
    assert demo is not None and demo.group == group
    snapshot = demo.wait(300)
    at.run()
    assert not at.exception, at.exception
    return at, demo, snapshot, live


@pytest.mark.slow
def test_homes_button_chains_the_source_then_the_target_pair_on_its_trained_base(clicked_demo):
    from ui.training import run_store

    at, demo, snapshot, live = clicked_demo
    assert "Step 1 of 2" in live  # the live fragment, right after the click
    assert snapshot.stage == "done" and snapshot.error is None
    assert [snapshot.source.state, snapshot.transfer.state, snapshot.scratch.state] == ["done"] * 3
    store = run_store()
    runs = store.group_runs(demo.group)
    assert [run.role for run in runs] == ["source", "transfer", "scratch"]
    assert {run.id for run in runs} == set(snapshot.run_ids.values())
    source, transfer, scratch = runs
    assert len({run.owner for run in runs}) == 1 and source.owner.startswith("session ")
    assert source.class_names == list(SAMPLE_CLASSES) and transfer.class_names == list(TARGET_CLASSES)
    assert (source.spec.weights, source.spec.trainable_from, source.spec.base_model) == (None, "all", None)
    assert transfer.spec.base_model == str(source.model_path) and transfer.spec.trainable_from is None
    assert (scratch.spec.weights, scratch.spec.trainable_from, scratch.spec.base_model) == (None, "all", None)
    assert transfer.dataset["digest"] == scratch.dataset["digest"] == TINY.target_dataset().digest
    # the target's frozen base is the source's trained base, weight for weight; scratch's is not
    keras.backend.clear_session()
    bases = {run.role: tlcore.base_and_head(store.load_model(run.id))[0] for run in runs}
    pairs = list(zip(bases["source"].get_weights(), bases["transfer"].get_weights(), bases["scratch"].get_weights()))
    assert len(pairs) == 26  # VGG16: 13 convolutions, a kernel and a bias each
    assert all((a == b).all() for a, b, _ in pairs)
    assert sum((a == c).all() for a, _, c in pairs if a.std() > 0) == 0


@pytest.mark.slow
def test_home_shows_the_target_curves_the_gap_and_links_to_the_three_runs(clicked_demo):
    from ui.training import run_store

    at, demo, snapshot, _ = clicked_demo
    comparison = tlcore.scratch_comparison(run_store(), snapshot.transfer.run_id)
    for _ in range(2):  # and again after leaving Home and coming back: the session keeps its demo
        assert [m.label for m in at.metric] == ["Transfer", "From scratch", "Gap"]
        assert at.metric[2].value == f"{comparison.gap * 100:+.1f} points"
        assert len(at.get("vega_lite_chart")) == 1
        links = {link.label: link.proto.query_string for link in at.page_link if link.proto.query_string}
        assert links == {"Source: the sample shapes, whole base trained": f"run={snapshot.source.run_id}",
                         "Target, reusing the source's trained base": f"run={snapshot.transfer.run_id}",
                         "Target, from scratch": f"run={snapshot.scratch.run_id}"}
        at.switch_page("../pages/runs.py").run()
        at.switch_page("../pages/home.py").run()
        assert not at.exception, at.exception


def test_the_demo_button_is_off_in_read_only_mode(monkeypatch):
    monkeypatch.setenv("TL_READ_ONLY", "1")
    at = open_page("../pages/home.py")
    assert next(b for b in at.button if b.label == "Run the develop-a-model demo").disabled


@pytest.mark.slow
def test_homes_address_names_the_demo_so_a_new_session_reopens_it(clicked_demo):
    from streamlit.testing.v1 import AppTest
    from support import APP

    at, demo, snapshot, _ = clicked_demo
    assert at.query_params["demo"] == demo.group
    shared = AppTest.from_file(APP, default_timeout=180)  # a teammate opening the link
    shared.query_params["demo"] = demo.group
    shared.run()
    assert not shared.exception, shared.exception
    assert [m.label for m in shared.metric] == ["Transfer", "From scratch", "Gap"]
    assert shared.metric[0].value == f"{tlcore.scratch_comparison(demo.store, snapshot.transfer.run_id).transfer_accuracy:.1%}"

    stranger = AppTest.from_file(APP, default_timeout=180)
    stranger.query_params["demo"] = "demo-nothing-here"
    stranger.run()
    assert not stranger.exception and len(stranger.toast) == 1  # the link names no demo: said so
    assert [m.value for m in stranger.metric] == [m.value for m in shared.metric]  # Home shows the latest finished demo
    assert "`demo=demo-nothing-here` in this link was not used" in stranger.toast[0].value
    assert stranger.query_params.get("demo") in (None, demo.group)  # the bad value is gone from the address


def test_the_registry_keeps_running_demos_and_lets_the_oldest_finished_go(tmp_path):
    registry = tlcore.DemoRegistry(keep_finished=1)
    queue = tlcore.JobQueue(max_running=0)  # nothing trains: each source waits in line until stopped
    store = tlcore.RunStore(tmp_path)
    first = registry.start(queue, store, owner="ada", recipe=TINY)
    assert registry.get(first.group) is first and registry.get(None) is None and registry.get("other") is None
    first.stop()
    assert first.wait(30).finished
    second = registry.start(queue, store, owner="ada", recipe=TINY)
    assert registry.groups() == [first.group, second.group]  # one finished demo may stay
    second.stop()
    assert second.wait(30).finished
    third = registry.start(queue, store, owner="bob", recipe=TINY)
    assert registry.groups() == [second.group, third.group]  # the oldest finished one let go
    assert registry.get(first.group) is None and [run.role for run in store.group_runs(first.group)] == ["source"]
    third.stop()
    third.wait(30)
    with pytest.raises(tlcore.ConfigError, match="At most 0 training jobs may wait in line"):
        registry.start(tlcore.JobQueue(max_waiting=0), store, recipe=TINY)
    assert registry.groups() == [second.group, third.group]  # a refused demo is not kept
