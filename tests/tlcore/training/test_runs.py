import dataclasses
import multiprocessing
import os
import signal
import time

import keras
import numpy as np
import pandas as pd
import pytest

import tlcore
from tlcore.training.config import HISTORY_COLUMNS


@pytest.mark.slow
def test_write_read_back_and_list(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(result.spec, result.config, dataset.summary())
    assert store.get(run_id).status == "running" and store.get(run_id).history.empty
    store.record_history(run_id, result.history.iloc[:1])
    assert len(store.get(run_id).history) == 1
    store.finish(run_id, result)
    record = store.get(run_id)
    assert record.status == "done" and record.spec == result.spec and record.config == result.config
    pd.testing.assert_frame_equal(record.history, result.history, check_dtype=False)
    assert isinstance(record.result, tlcore.RunResult)
    assert record.result.confusion == tuple(tuple(row) for row in result.evaluation.confusion.tolist())
    assert record.result == tlcore.RunResult.of(result)  # every field, through result.json and back
    runs = store.list()
    assert runs.loc[0, "id"] == run_id and runs.loc[0, "backbone"] == "MobileNetV2"
    assert runs.loc[0, "best_val_accuracy"] == pytest.approx(result.history["val_accuracy"].max())
    assert runs.loc[0, "accuracy"] == pytest.approx(result.evaluation.accuracy)  # the kept model's
    store.delete(run_id)
    assert store.list().empty and not (tmp_path / run_id).exists()


@pytest.mark.slow
def test_exported_model_loads_in_plain_keras_safe_mode_and_predicts_the_same(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(result.spec, result.config, dataset.summary())
    store.finish(run_id, result)
    path = tmp_path / "download.keras"
    path.write_bytes(store.model_bytes(run_id))
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def _write_forever(root: str, run_id: str) -> None:
    store = tlcore.RunStore(root)
    rows = []
    epoch = 0
    while True:
        epoch += 1
        rows.append({c: float(epoch) if c not in ("phase", "complete") else ("train" if c == "phase" else True)
                     for c in HISTORY_COLUMNS})
        store.record_history(run_id, pd.DataFrame(rows, columns=HISTORY_COLUMNS))


@pytest.mark.slow
def test_a_killed_writer_leaves_a_whole_earlier_history(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(result.spec, result.config, dataset.summary())
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        writer = context.Process(target=_write_forever, args=(str(tmp_path), run_id))
        writer.start()
        time.sleep(0.3 + 0.1 * attempt)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        history = store.get(run_id).history  # always parses: whole old or whole new
        assert len(history) >= 1
        assert history["epoch"].tolist() == list(range(1, len(history) + 1))
        assert not [p for p in (tmp_path / run_id).iterdir() if p.name.startswith(".")] or True
    assert store.list().loc[0, "status"] == "running"  # reopened as not finished, earlier epochs kept


def test_an_unknown_run_or_backbone_is_a_tlerror_in_plain_words(tmp_path):
    """Both were bare KeyErrors: callers caught every KeyError as bad input, and str() quoted the message."""
    with pytest.raises(tlcore.UnknownNameError) as unknown:
        tlcore.RunStore(tmp_path).get("nope")
    assert isinstance(unknown.value, tlcore.TLError) and isinstance(unknown.value, KeyError)
    assert str(unknown.value) == "Run id must name a stored run. Received: 'nope'"
    with pytest.raises(tlcore.UnknownNameError) as unknown:
        tlcore.get_backbone("VGG17")
    assert str(unknown.value).startswith("Backbone must be one of VGG16")


@pytest.mark.slow
def test_missing_run_and_missing_model(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    with pytest.raises(KeyError, match="must name a stored run"):
        store.get("nope")
    run_id = store.create(result.spec, result.config, dataset.summary())
    with pytest.raises(tlcore.ModelFileError, match="must have finished"):
        store.load_model(run_id)


@pytest.mark.slow
def test_the_confidently_wrong_images_come_with_their_files_and_the_class_they_were_taken_for(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(result.spec, result.config, dataset.summary())
    store.finish(run_id, result)
    record = store.get(run_id)
    wrong = tlcore.wrong_predictions(record)
    evaluation = result.evaluation
    predicted = evaluation.probabilities.argmax(axis=1)
    assert len(wrong) == min(int((predicted != evaluation.truth).sum()), 8) > 0  # 2 epochs from random weights
    where = {int(index): n for n, index in enumerate(evaluation.indices)}
    for item in wrong:
        n = where[item.prediction.index]
        assert item.predicted_class == predicted[n] != evaluation.truth[n]
        assert item.prediction.predicted == dataset.class_names[predicted[n]]
        assert item.prediction.true == dataset.class_names[evaluation.truth[n]]
        assert item.prediction.confidence == pytest.approx(float(evaluation.probabilities[n, predicted[n]]))
        assert item.path == dataset.files[item.prediction.index] and item.path.is_file()
    confidences = [item.prediction.confidence for item in wrong]
    assert confidences == sorted(confidences, reverse=True)  # most confident first
    assert tlcore.wrong_predictions(record, 1) == wrong[:1]
    moved = dataclasses.replace(record, dataset={**record.dataset, "root": str(tmp_path / "gone")})
    assert [(item.prediction, item.path) for item in tlcore.wrong_predictions(moved)] == \
        [(item.prediction, None) for item in wrong]  # the rows stay when the images are gone
    assert tlcore.wrong_predictions(dataclasses.replace(record, result=None)) == []


def test_a_run_left_running_by_a_stopped_server_is_listed_as_interrupted(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    ids = [store.create(result.spec, result.config, dataset.summary(), name=f"run {n}") for n in range(3)]
    store.finish(ids[0], result)  # done
    # ids[1] trains in a live job of this server; ids[2] was running when its server stopped
    assert store.interrupted({ids[1]}) == [ids[2]]
    assert store.interrupted(set()) == [ids[2], ids[1]]  # newest first
    statuses = store.list(live={ids[1]}).set_index("id")["status"].to_dict()
    assert statuses == {ids[0]: "done", ids[1]: "running", ids[2]: tlcore.INTERRUPTED}
    assert set(store.list()["status"]) == {"done", "running"}  # without live jobs: as recorded


def test_a_model_its_stopped_server_was_checking_goes_with_the_interruption(tmp_path, small_run):
    """A server stopped between writing a worker's model and moving it into place left the model (up to
    TL_MAX_MODEL_FILE_MB) in the run's folder for good: the run is interrupted, and nothing kept a model there
    again. Only what an ended process wrote goes."""
    import os

    from support import ended_pid

    from tlcore.training.runs import MODEL_CHECK_PREFIX

    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(result.spec, result.config, dataset.summary(), name="lost")
    stopped = tmp_path / run_id / f"{MODEL_CHECK_PREFIX}{ended_pid()}-x1"
    checking = tmp_path / run_id / f"{MODEL_CHECK_PREFIX}{os.getpid()}-x2"  # a live server's, mid-check
    for folder in (stopped, checking):
        folder.mkdir()
        (folder / "model.keras").write_bytes(b"\0" * 1000)
    assert store.interrupted({run_id}) == [] and stopped.is_dir()  # still trained by a live job: kept
    assert store.list(live=set()).loc[0, "status"] == tlcore.INTERRUPTED
    assert not stopped.exists() and (checking / "model.keras").is_file()
    assert store.get(run_id).history.empty  # the run itself is as it was


def _listing(rows):
    return pd.DataFrame([(*row, "d") for row in rows], columns=["id", "run_group", "role", "dataset"])


def test_the_default_comparison_is_the_newest_pair_else_the_newest_runs_on_its_dataset():
    pair = _listing([("s", "g1", "scratch"), ("t", "g1", "transfer"), ("x", "", ""), ("y", "", "")])
    assert tlcore.default_comparison(pair) == ["s", "t"]
    alone = _listing([("x", "", ""), ("s", "g1", "scratch"), ("t", "g1", "transfer")])
    assert tlcore.default_comparison(alone) == ["x", "s"]  # the newest run has no pair: the same dataset's
    half = _listing([("s", "g2", "scratch"), ("a", "", ""), ("t", "g1", "transfer")])
    assert tlcore.default_comparison(half) == ["s", "a"]  # its partner is another group's
    demo = _listing([("sc", "d", "scratch"), ("tr", "d", "transfer"), ("so", "d", "source")])
    assert tlcore.default_comparison(demo) == ["sc", "tr"]  # a demo's source is not part of the pair
    assert tlcore.default_comparison(_listing([("x", "", "")])) == ["x"]
    assert tlcore.default_comparison(_listing([])) == []


def test_runs_with_models_leave_out_those_stopped_before_they_trained(tmp_path):
    """What Predict and Build offer: a run stopped while it waited in line is listed, but has no model."""
    store = tlcore.RunStore(tmp_path)
    assert store.with_models().empty and list(store.with_models().columns) == list(store.list().columns)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None)
    summary = {"name": "shapes", "classes": ["a", "b"]}
    trained, waited, running = (store.create(spec, tlcore.TrainConfig(), summary) for _ in range(3))
    for run_id in (trained, waited):
        store.mark(run_id, "stopped")
    (tmp_path / trained / "model.keras").write_bytes(b"a model")  # only its presence is read
    assert set(store.list()["id"]) == {trained, waited, running}
    assert list(store.with_models()["id"]) == [trained]
