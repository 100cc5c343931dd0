"""Run bundles: a run (or a pair) leaves one server as a zip and arrives whole on another."""

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import tlcore
from tlcore.deploy.bundle import MANIFEST, export_bundle, import_run


@pytest.fixture
def stores(tmp_path, monkeypatch, small_run):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    dataset, result = small_run
    here, there = tlcore.RunStore(tmp_path / "here" / "runs"), tlcore.RunStore(tmp_path / "there" / "runs")
    ids = []
    for role, owner in (("transfer", "ann"), ("scratch", "ann")):
        run_id = here.create(result.spec, result.config, dataset.summary(), name=f"pair {role}", owner=owner,
                             group="g1", role=role)
        here.finish(run_id, result)
        ids.append(run_id)
    return here, there, ids


@pytest.mark.slow
def test_a_pair_arrives_with_its_names_owner_history_result_and_model(stores, small_run):
    here, there, ids = stores
    path = export_bundle(here, ids)
    names = zipfile.ZipFile(path).namelist()
    assert MANIFEST in names and {f"{ids[0]}/{m}" for m in ("model.keras", "MODEL_CARD.md", "history.csv")} <= set(names)
    dataset_json = json.loads(zipfile.ZipFile(path).read(f"{ids[0]}/dataset.json"))
    assert "root" not in dataset_json and "files" not in dataset_json  # no server paths leave
    assert dataset_json["digest"] == small_run[0].digest

    assert import_run(path, there) == ids
    for run_id in ids:
        mine, theirs = here.get(run_id), there.get(run_id)
        assert (theirs.name, theirs.owner, theirs.group, theirs.role, theirs.status) == \
               (mine.name, mine.owner, mine.group, mine.role, "done")
        assert theirs.spec == mine.spec and theirs.config == mine.config and theirs.result == mine.result
        pd.testing.assert_frame_equal(theirs.history, mine.history)
        assert theirs.image_path(0) is None  # the images stayed on their server
    listed = there.list().set_index("id")
    assert listed.loc[ids[0], "name"] == "pair transfer" and listed.loc[ids[0], "owner"] == "ann"
    assert listed.loc[ids[0], "best_val_accuracy"] == pytest.approx(here.get(ids[0]).history["val_accuracy"].max())
    assert listed.loc[ids[0], "accuracy"] == pytest.approx(here.get(ids[0]).result.accuracy)
    assert [r.id for r in there.group_runs("g1")] == ids
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(there.load_model(ids[0]).predict(x, verbose=0),
                               small_run[1].model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    inner = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(path).read(f"{ids[0]}/model.keras")))
    with h5py.File(io.BytesIO(inner.read("model.weights.h5"))) as weights:
        assert "layers" in weights and "optimizer" not in weights  # the model travels without optimizer state


@pytest.mark.slow
def test_a_bundle_imported_twice_is_refused_and_the_first_copy_stays(stores):
    here, there, ids = stores
    path = export_bundle(here, ids[:1])
    import_run(path, there)
    with pytest.raises(tlcore.BundleError, match="already.*Received: "):
        import_run(path, there)
    assert list(there.list()["id"]) == ids[:1]


@pytest.mark.slow
def test_an_import_racing_another_of_the_same_run_is_refused_in_words_and_the_first_stays(stores, monkeypatch):
    here, there, ids = stores
    path = export_bundle(here, ids[:1])
    import_run(path, there)
    monkeypatch.setattr(there, "has", lambda run_id: False)  # checked before the other session's import landed
    with pytest.raises(tlcore.BundleError, match=r"must not be in this server's run store already\. "
                                                 r"Received: \['.*'\] \(imported at the same moment elsewhere\?\)"):
        import_run(path, there)
    assert list(there.list()["id"]) == ids[:1] and there.get(ids[0]).model_path.is_file()


@pytest.mark.slow
def test_a_kept_bundle_serves_only_the_same_runs(stores, small_run):
    """Kept under the first id and the count alone, a bundle of [A, C] after one of [A, B] was the [A, B] file."""
    here, _, ids = stores
    dataset, result = small_run
    third = here.create(result.spec, result.config, dataset.summary(), name="third", owner="bo")
    here.finish(third, result)
    first, second = export_bundle(here, ids), export_bundle(here, [ids[0], third])
    assert first != second and export_bundle(here, ids) == first
    for path, runs in ((first, ids), (second, [ids[0], third])):
        assert json.loads(zipfile.ZipFile(path).read(MANIFEST))["runs"] == runs
    assert tlcore.bundle_file_name([ids[0], third]) == f"transfer-lab-{ids[0]}-and-1.zip"  # what a download is called


def test_an_unfinished_run_is_not_bundled(tmp_path, small_run):
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(result.spec, result.config, dataset.summary())
    with pytest.raises(tlcore.BundleError, match="must have finished.*Received: run .* is running"):
        export_bundle(store, [run_id])


@pytest.mark.slow
def test_server_paths_in_a_spec_leave_as_names(tmp_path, monkeypatch, small_run):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    dataset, result = small_run
    store = tlcore.RunStore(tmp_path / "runs")
    weights = tmp_path / "secret" / "folder" / "mine.weights.h5"
    base = store.root / "20260101-000000-abcdef" / "model.keras"
    spec = dataclasses.replace(result.spec, weights=str(weights), base_model=str(base))
    run_id = store.create(spec, result.config, dataset.summary())
    store.finish(run_id, result)
    saved = json.loads(zipfile.ZipFile(export_bundle(store, [run_id])).read(f"{run_id}/config.json"))
    assert saved["spec"]["weights"] == "mine.weights.h5"
    assert saved["spec"]["base_model"] == "20260101-000000-abcdef/model.keras"
    assert str(tmp_path) not in json.dumps(saved)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a data folder given as a relative path (TL_DATA_DIR=../data)
    relative = tlcore.RunStore(Path("..") / "runs")
    spec = dataclasses.replace(result.spec, base_model=str(Path("..") / "runs" / "20260101-000000-abcdef" / "model.keras"))
    other = relative.create(spec, result.config, dataset.summary())
    relative.finish(other, result)
    saved = json.loads(zipfile.ZipFile(export_bundle(relative, [other])).read(f"{other}/config.json"))
    assert saved["spec"]["base_model"] == "20260101-000000-abcdef/model.keras"  # as an import accepts it
