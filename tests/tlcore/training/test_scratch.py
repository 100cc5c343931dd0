"""Transfer against scratch: a model and the same model from random weights, trained as a pair."""

import json
import sqlite3

import numpy as np
import pytest
from support import open_page

import tlcore

SPEC = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=8,
                           trainable_from="block5_conv1")  # VGG16: few layers, quick to trace in a worker


def test_scratch_is_the_same_architecture_with_nothing_reused():
    spec = tlcore.TransferSpec(backbone="VGG16", weights="imagenet", trainable_from="block5_conv1",
                               base_model="/runs/a/model.keras", hidden_units=32, pooling="max")
    scratch = tlcore.scratch_spec(spec)
    assert (scratch.weights, scratch.base_model, scratch.trainable_from) == (None, None, "all")
    assert (scratch.backbone, scratch.input_shape, scratch.hidden_units, scratch.pooling) == (
        "VGG16", (224, 224, 3), 32, "max")
    with pytest.raises(tlcore.ConfigError, match="already a model trained from scratch"):
        tlcore.scratch_spec(scratch)


def test_scratch_trains_every_epoch_of_both_phases_in_one():
    config = tlcore.TrainConfig(epochs=4, fine_tune_from="block5_conv1", fine_tune_epochs=3, learning_rate=3e-3)
    again = tlcore.scratch_config(config)
    assert (again.epochs, again.fine_tune_from, again.fine_tune_epochs, again.learning_rate) == (7, None, 0, 3e-3)
    assert again.total_epochs == config.total_epochs


def test_an_index_written_before_the_accuracy_column_is_filled_from_its_runs_files(tmp_path):
    """Else every run stored before would go on showing its best epoch's accuracy (50% for a model scoring 25%)."""
    import shutil

    import pandas as pd

    earlier = tlcore.RunStore(tmp_path / "earlier")
    history = pd.DataFrame({"epoch": [1, 2], "phase": ["train"] * 2, "loss": [1.0, 1.0], "accuracy": [0.5, 0.25],
                            "val_loss": [1.0, 1.0], "val_accuracy": [0.5, 0.25]})
    confusion = ((1, 0), (1, 0))
    ids = []
    for name, validated in (("validated", history), ("nothing held out", history.assign(val_accuracy=np.nan))):
        run_id = earlier.create(SPEC, tlcore.TrainConfig(), {"name": name})
        earlier.record_result(run_id, validated, tlcore.RunResult(("a", "b"), 0.25, 1.0, confusion, (1.0, 0.0),
                                                                  (0.5, 0.0)))
        ids.append(run_id)
    assert earlier.list().set_index("id").loc[ids[0], "accuracy"] == 0.25
    assert np.isnan(earlier.list().set_index("id").loc[ids[1], "accuracy"])  # its 25% is the training images'
    older = tmp_path / "older"
    older.mkdir()
    with sqlite3.connect(older / "index.sqlite") as db:  # the schema before the accuracy column
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL, name TEXT, backbone TEXT, "
                   "input_size INTEGER, trainable_from TEXT, dataset TEXT, status TEXT, best_val_accuracy REAL, "
                   "epochs INTEGER, seconds REAL, owner TEXT, run_group TEXT, role TEXT)")
        for run_id in ids:
            db.execute("INSERT INTO runs VALUES (?, 1.0, 'old', 'VGG16', 32, 'frozen', 'd', 'done', 0.5, 2, 1.0, "
                       "'', '', '')", (run_id,))
            shutil.copytree(tmp_path / "earlier" / run_id, older / run_id)
    listed = tlcore.RunStore(older).list().set_index("id")
    assert listed.loc[ids[0], "accuracy"] == 0.25 and np.isnan(listed.loc[ids[1], "accuracy"])


def test_an_index_written_before_groups_gains_the_columns_and_keeps_its_runs(tmp_path):
    with sqlite3.connect(tmp_path / "index.sqlite") as db:  # the schema of the previous release
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL, name TEXT, backbone TEXT, "
                   "input_size INTEGER, trainable_from TEXT, dataset TEXT, status TEXT, best_val_accuracy REAL, "
                   "epochs INTEGER, seconds REAL, owner TEXT)")
        db.execute("INSERT INTO runs VALUES ('old', 1.0, 'old run', 'VGG16', 32, 'frozen', 'd', 'done', 0.5, 1, "
                   "1.0, 'ann')")
    store = tlcore.RunStore(tmp_path)
    runs = store.list()
    assert runs.loc[0, "id"] == "old" and runs.loc[0, "run_group"] == "" and runs.loc[0, "role"] == ""
    assert np.isnan(runs.loc[0, "accuracy"])  # the kept model's accuracy was not indexed then
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        assert ("accuracy", "REAL") in {(row[1], row[2]) for row in db.execute("PRAGMA table_info(runs)")}
    new = store.create(SPEC, tlcore.TrainConfig(), {"name": "d"}, group="g1", role="scratch")
    record = store.get(new)
    assert (record.group, record.role) == ("g1", "scratch")
    assert json.loads((record.folder / "config.json").read_text())["group"] == "g1"
    assert [r.id for r in store.group_runs("g1")] == [new] and store.group_runs("") == []


def test_a_run_alone_has_no_comparison(tmp_path):
    store = tlcore.RunStore(tmp_path)
    alone = store.create(SPEC, tlcore.TrainConfig(), {"name": "d"})
    assert tlcore.scratch_comparison(store, alone) is None


@pytest.mark.slow
def test_a_pair_from_the_train_page_trains_on_the_same_split_and_states_the_gap():
    """One switch on Train queues the twin; its run page and Runs show both curves and the gap."""
    from ui.training import job_queue, run_store

    at = open_page("../pages/train.py", transfer_spec=SPEC)
    assert "Frozen random layers have nothing to pass on" in at.warning[0].value  # why a frozen random base fails
    at.number_input(key="epochs").set_value(1).run()
    at.checkbox(key="fine_tune").check().run()
    at.selectbox(key="fine_from").set_value("block4_conv1").run()
    at.number_input(key="fine_epochs").set_value(1).run()
    at.toggle(key="with_scratch").set_value(True).run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert not at.exception, at.exception
    transfer = job_queue().jobs[at.session_state["job_id"]]
    scratch = job_queue().jobs[at.session_state["scratch_job_id"]]
    assert (transfer.wait(240).state, scratch.wait(240).state) == ("done", "done")

    store = run_store()
    comparison = tlcore.scratch_comparison(store, scratch.run_id)  # found from either run
    assert comparison is not None and comparison.finished
    assert (comparison.transfer.id, comparison.scratch.id) == (transfer.run_id, scratch.run_id)
    assert comparison.transfer.group == comparison.scratch.group != ""
    assert comparison.transfer.spec.trainable_from == "block5_conv1"
    assert comparison.scratch.spec.weights is None and comparison.scratch.spec.trainable_from == "all"
    assert comparison.scratch.name.endswith("from scratch")
    assert len(comparison.transfer.history) == len(comparison.scratch.history) == 2  # same epochs
    assert list(comparison.transfer.history["phase"]) == ["train", "fine-tune"]
    assert comparison.transfer.result.validation_indices == comparison.scratch.result.validation_indices
    accuracies = (comparison.transfer.result.accuracy, comparison.scratch.result.accuracy)
    assert comparison.gap == pytest.approx(accuracies[0] - accuracies[1])
    summary = comparison.summary()
    assert f"Transfer: {accuracies[0]:.1%}" in summary and f"From scratch: {accuracies[1]:.1%}" in summary
    curves = comparison.curves()
    assert curves.groupby("model")["epoch"].max().to_dict() == {"scratch": 2, "transfer": 2}
    assert np.allclose(curves.query("model == 'scratch'")["val_accuracy"],
                       comparison.scratch.history["val_accuracy"])

    at.run()  # the page, both runs finished
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Transfer"] == f"{accuracies[0]:.1%}" and metrics["From scratch"] == f"{accuracies[1]:.1%}"
    assert metrics["Gap"] == f"{(accuracies[0] - accuracies[1]) * 100:+.1f} points"
    assert summary in [c.value for c in at.caption]

    runs = at.switch_page("../pages/runs.py").run()
    assert not runs.exception, runs.exception
    assert set(runs.multiselect[0].value) == {transfer.run_id, scratch.run_id}  # the newest pair first
    assert any(summary in m.value for m in runs.markdown)


def test_a_pair_is_refused_whole_when_the_line_has_room_for_one(tmp_path):
    dataset = tlcore.sample_dataset(per_class=6, size=32, seed=3)
    store = tlcore.RunStore(tmp_path)
    with pytest.raises(tlcore.ConfigError, match="Received: 2 new job"):
        tlcore.JobQueue(max_waiting=1).submit_with_scratch(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    assert store.list().empty  # neither run was created
