"""The Runs page moves runs between servers: a bundle imported on an empty server opens as the run it was."""

import pytest
from support import open_page, zip_of

import tlcore

pytestmark = pytest.mark.slow  # trains a run and opens pages in AppTest


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "here"))
    dataset = tlcore.sample_dataset(per_class=6, size=32, seed=3)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=4)
    result = tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=1, batch_size=8))
    store = tlcore.RunStore(tmp_path / "here" / "runs")
    run_id = store.create(result.spec, result.config, dataset.summary(), name="shipped run", owner="ann")
    store.finish(run_id, result)
    data = tlcore.export_bundle(store, [run_id]).read_bytes()
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "there"))  # the other server
    return run_id, data


def test_a_bundle_imported_on_an_empty_server_opens_with_its_name_and_history(bundle):
    run_id, data = bundle
    at = open_page("../pages/runs.py", backbone="MobileNetV2")
    assert "No runs yet" in at.info[0].value
    at.file_uploader[0].set_value(("run.zip", data, "application/zip")).run()
    next(b for b in at.button if b.label == "Import the bundle's runs").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["name"]) == ["shipped run"]
    assert at.query_params["run"] == [run_id] or at.query_params["run"] == run_id
    assert any(run_id in s.value for s in at.success)
    assert any("tensorboard --logdir" in c.value and "--host 127.0.0.1" in c.value for c in at.code)
    # a second click on the same upload (a double click) opens the same runs, not "already here"
    next(b for b in at.button if b.label == "Import the bundle's runs").click().run()
    assert not at.exception and not at.error
    assert any(run_id in s.value for s in at.success) and list(at.dataframe[0].value["name"]) == ["shipped run"]
    next(b for b in at.button if b.label == "Classify with the imported model").click().run()
    assert not at.exception
    assert at.session_state["predict_model"] == run_id  # Predict opens with the imported run's model
    assert at.title[0].value == "Classify an image" and at.selectbox(key="predict_model").value == run_id


def test_a_crafted_bundle_is_refused_in_words(bundle, tmp_path):
    at = open_page("../pages/runs.py", backbone="MobileNetV2")
    at.file_uploader[0].set_value(("run.zip", zip_of({"../escape": b"x"}), "application/zip")).run()
    next(b for b in at.button if b.label == "Import the bundle's runs").click().run()
    assert not at.exception
    assert "Archive member names must be relative paths inside the archive" in at.error[0].value
    runs = tmp_path / "there" / "runs"
    assert tlcore.RunStore(runs).list().empty
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith("index.sqlite")) == []
