"""Uploaded models and weights on screen: kept within TL_MAX_DATA_GB, listed in the stored-data panel,
deleted by who uploaded them (or an admin) after a confirmation."""

import re

import numpy as np
import pytest
from support import open_page

import tlcore
from tlcore.core.storage import folder_size

pytestmark = pytest.mark.slow  # every test opens pages (AppTest)

FILE = "My weights file"


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))  # the panel's caches are keyed by the folder
    return tmp_path / "data"


def some_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _render_usage():
    from ui.storage import render_data_usage

    render_data_usage()


def usage_panel(visitor: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_render_usage, default_timeout=60)
    if visitor:
        at.session_state["_access_visitor"] = visitor  # ui.access.VISITOR: who this browser session is
    return at.run()


def test_a_weights_upload_without_room_is_refused_in_the_sidebar_and_nothing_is_kept(monkeypatch, data_dir):
    monkeypatch.setenv("TL_MAX_DATA_GB", str(1_000 / 1e9))  # 1 KB
    at = open_page("../pages/home.py", weights=FILE)
    at.sidebar.file_uploader(key="weights_file").set_value(
        ("vgg16.weights.h5", some_bytes(4_000), "application/octet-stream")).run()
    assert not at.exception
    errors = " ".join(error.value for error in at.sidebar.error)
    assert "The file was not kept." in errors and "(TL_MAX_DATA_GB)" in errors
    assert re.search(r"Received: an uploaded weights file \('vgg16.weights.h5'\) of about 4.\d KB while "
                     r"(0 bytes|[\d.]+ KB) are in use", errors)  # Home may have made the run store's index
    assert "weights_path" not in at.session_state and folder_size(data_dir / "uploads") == 0


def test_a_weights_upload_is_kept_once_as_the_visitors_and_listed(data_dir):
    at = open_page("../pages/home.py", weights=FILE)
    at.sidebar.file_uploader(key="weights_file").set_value(
        ("mine.h5", some_bytes(4_000, seed=1), "application/octet-stream")).run()
    assert not at.exception and not at.sidebar.error
    stored = at.session_state["weights_path"]
    assert stored.startswith(str(data_dir / "uploads"))
    at.run()  # every run of the page hands the same bytes again: stored once
    assert at.session_state["weights_path"] == stored
    table = tlcore.list_uploads()
    assert table[["name", "kind", "bytes"]].values.tolist() == [["mine.h5", "weights", 4_000]]
    assert table["owner"][0] == at.session_state["_access_visitor"]


def test_the_panel_lists_uploads_and_deletes_one_after_confirming(data_dir):
    path = tlcore.store_model_upload(some_bytes(6_000, seed=2), "classifier.keras", owner="session ann")
    at = usage_panel()
    assert not at.exception
    text = at.get("progress")[0].proto.text
    assert f"uploaded models and weights {tlcore.format_size(folder_size(data_dir / 'uploads'))}" in text
    assert "No stored datasets yet" in at.caption[0].value  # datasets first, as before
    uploads = at.dataframe[0].value
    assert uploads[["name", "kind", "size", "id"]].values.tolist() == [["classifier.keras", "model", "6.0 KB", path.name]]
    assert at.button(key="delete_upload").disabled  # confirm first
    at.checkbox(key=f"confirm-upload-{path.name}").check().run()
    at.button(key="delete_upload").click().run()
    assert not at.exception and not path.exists() and tlcore.list_uploads().empty
    assert "Deleted classifier.keras" in at.success[0].value and "freed" in at.success[0].value
    assert any("No uploaded models or weights" in caption.value for caption in at.caption)


def test_deleting_the_weights_file_in_this_sessions_upload_box_empties_the_box_and_frees_the_room(data_dir):
    """Before, the sidebar's box still held the file and stored it again on the very next run."""
    at = open_page("../pages/runs.py", weights=FILE)
    at.sidebar.file_uploader(key="weights_file").set_value(
        ("mine.h5", some_bytes(4_000, seed=3), "application/octet-stream")).run()
    [upload_id] = tlcore.list_uploads()["id"]
    at.checkbox(key=f"confirm-upload-{upload_id}").check().run()
    at.button(key="delete_upload").click().run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Deleted mine.h5") for s in at.success)
    assert tlcore.list_uploads().empty and folder_size(data_dir / "uploads") == 0  # not stored again
    assert "weights_path" not in at.session_state
    assert not at.sidebar.file_uploader[0].value  # a new, empty box
    at.run()
    assert tlcore.list_uploads().empty


def test_with_access_on_only_the_uploader_or_an_admin_may_delete(monkeypatch, data_dir):
    monkeypatch.setenv("TL_PASSWORD", "secret")
    path = tlcore.store_model_upload(some_bytes(3_000, seed=3), "ann.keras", owner="session ann")
    other = usage_panel(visitor="session bob")
    assert not other.exception and not any(button.key == "delete_upload" for button in other.button)
    assert "Only who uploaded a file, or an admin (TL_ADMINS), can delete it." in [c.value for c in other.caption]
    assert other.dataframe[0].value["owner"].tolist() == ["a visitor who gave no name"]  # a session, not a name
    monkeypatch.setenv("TL_ADMINS", "session bob")
    assert usage_panel(visitor="session bob").button(key="delete_upload").disabled  # an admin may, confirmed first
    monkeypatch.delenv("TL_ADMINS")
    owner = usage_panel(visitor="session ann")
    assert not owner.exception and owner.dataframe[0].value["owner"].tolist() == ["you"]
    owner.checkbox(key=f"confirm-upload-{path.name}").check().run()
    owner.button(key="delete_upload").click().run()
    assert not path.exists()


def test_a_read_only_demo_lists_uploads_but_deletes_none(monkeypatch, data_dir):
    monkeypatch.setenv("TL_READ_ONLY", "1")
    path = tlcore.store_model_upload(some_bytes(3_000, seed=4), "kept.keras")
    at = usage_panel()
    assert not at.exception and at.dataframe[0].value["id"].tolist() == [path.name]
    assert not any(button.key == "delete_upload" for button in at.button)


def test_the_train_page_explains_a_sample_dataset_without_room_and_stores_nothing(monkeypatch, data_dir):
    monkeypatch.setenv("TL_MAX_DATA_GB", str(40_000 / 1e9))  # 40 KB: the run store's index and a few of its 256 images
    at = open_page("../pages/train.py")
    assert not at.exception
    assert len(at.error) == 1 and re.fullmatch(
        r"\*\*The sample dataset cannot be stored\.\*\* The data folder may hold at most 40\.0 KB \(TL_MAX_DATA_GB\)\. "
        r"Received: a dataset \(built-in sample shapes, 64 a class at 64 px\) that reached [\d.]+ KB while writing, "
        r"with (0 bytes|[\d.]+ KB) in use, "
        r"so it was not kept; delete runs or datasets to make room\.", at.error[0].value)
    assert folder_size(data_dir / "datasets") == 0 and tlcore.list_datasets().empty
