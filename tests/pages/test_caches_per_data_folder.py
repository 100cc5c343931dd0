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
