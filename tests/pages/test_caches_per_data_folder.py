"""What the pages keep for the whole server and what is stored in the data folder is kept per data folder
(TL_DATA_DIR): a store or dataset cached for one folder is never handed out for another."""

import tlcore


def test_the_pages_run_store_is_the_one_of_the_data_folder_in_force(tmp_path, monkeypatch):
    from ui.training import run_store

    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "one"))
    first = run_store()
    assert run_store() is first and first.root == tmp_path / "one" / "runs"  # shared, not opened again
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "two"))
    assert run_store().root == tmp_path / "two" / "runs"


def test_the_sample_dataset_is_the_one_stored_in_the_data_folder_in_force(tmp_path, monkeypatch):
    from ui.datasets import sample_dataset

    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "one"))
    first = sample_dataset()
    assert sample_dataset() is first and first.root.is_relative_to(tmp_path / "one")
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "two"))
    second = sample_dataset()
    assert second.root.is_relative_to(tmp_path / "two") and second.digest == first.digest
    assert tlcore.list_datasets()["id"].tolist() == [second.root.name]


def test_a_runs_cached_model_is_the_one_of_its_model_file_in_force(tmp_path, monkeypatch):
    """A run deleted and imported again under its id (a bundle keeps run ids) brings another model file: the
    pages load that one, not the model cached under the id."""
    from support import tiny_keras_file

    from tlcore.core.atomic import atomic_write_bytes
    from ui.models import model_stamp, run_model

    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    store = tlcore.RunStore(tmp_path / "data" / "runs")
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None)
    run_id = store.create(spec, tlcore.TrainConfig(), {"name": "d"})
    assert model_stamp(run_id) is None
    atomic_write_bytes(store.model_path(run_id), tiny_keras_file(tmp_path, classes=2))
    first = run_model(run_id)
    assert run_model(run_id) is first and first.output.shape[-1] == 2  # cached
    stamp = model_stamp(run_id)
    atomic_write_bytes(store.model_path(run_id), tiny_keras_file(tmp_path, classes=3))
    assert model_stamp(run_id) != stamp and run_model(run_id).output.shape[-1] == 3
