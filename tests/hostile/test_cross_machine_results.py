"""What crosses between machines is checked before it is kept: a dataset's description sent to a worker, the
checkpoint Ray Train's workers leave for their driver, and the model file a finished worker hands the server.

Found: a description whose labels were ``True``/``False`` (with the honest digest) was kept as a finished copy whose
files no dataset reads, under the real dataset's digest; a label ``1.0``, a class name ``1`` or a digest ``12345``
failed with a Python error. A checkpoint's array declaring 8 TiB was allocated as it came, a 190 KB deflated one
unpacked to 200 MB, arrays of the wrong shapes and a ``stopped`` of ``"no"`` were taken. A worker's ``.keras`` of 3
classes for a 2-class run, or of another input size, or bytes that are no model, was stored as the run's model (Predict
then refused or mislabelled it), and a result naming other classes was kept beside it.
"""

import contextlib
import errno
import io
import json
import os
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import tiny_keras_file

import tlcore
from tlcore.core.atomic import StorageError
from tlcore.core.errors import DatasetError, HistoryError, WorkerError
from tlcore.data.datasets import ImageDataset, content_digest
from tlcore.data.replica import Manifest, Receiver
from tlcore.training import checkpoint_reads, data_parallel, jobs
from tlcore.training.config import HISTORY_COLUMNS

FILES = [b"\x89PNG-one", b"\x89PNG-two"]


def _manifest(**changed) -> Manifest:
    values = dict(digest=content_digest(("a", "b"), [(0, FILES[0]), (1, FILES[1])]), name="toy",
                  class_names=("a", "b"), labels=(0, 1), suffixes=(".png", ".png"), sizes=(8, 8), pixels=10)
    return Manifest(**{**values, **changed})


def _receive(described, files=FILES) -> ImageDataset:
    receiver = Receiver(described)
    receiver.begin()
    receiver.write(files)
    return receiver.finish()


def test_an_honest_description_is_received(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    assert len(_receive(_manifest()).files) == 2


@pytest.mark.parametrize("changed,received", [
    (dict(labels=(False, True)), "Received: False in labels"),  # the honest digest: a copy no dataset reads
    (dict(labels=(0.0, 1.0)), "Received: 0.0 in labels"),
    (dict(labels="01"), "Received: labels as a str"),
    (dict(labels=(None, 1)), "Received: None in labels"),
    (dict(class_names=(1, 2)), "Received: 1 in class_names"),
    (dict(class_names="ab"), "Received: class_names as a str"),
    (dict(sizes=(8.0, 8.0)), "Received: 8.0 in sizes"),
    (dict(sizes=(-1, 17)), "Received: -1 in sizes"),
    (dict(pixels="10"), "Received: pixels='10'"),
    (dict(pixels=-5), "Received: pixels=-5"),
    (dict(name=None), "Received: name=None"),
])
def test_a_description_of_other_kinds_is_refused_in_words_and_nothing_is_kept(tmp_path, monkeypatch, changed,
                                                                               received):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"^A dataset's description must hold lists of class names, labels, "
                                           r"extensions and sizes, .*" + received.replace("(", r"\(")):
        _receive(_manifest(**changed))
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").iterdir())


@pytest.mark.parametrize("described,words", [
    (_manifest(digest=12345), "A dataset's digest must be 64 hexadecimal digits. Received: 12345"),
    (None, "Received: a NoneType, not a Manifest"),
])
def test_a_description_that_is_no_manifest_is_refused_in_words(tmp_path, monkeypatch, described, words):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=words.replace(".", r"\.")):
        Receiver(described)


def test_a_part_that_is_not_bytes_is_refused_in_words_and_nothing_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"^File 1 of the dataset copy must come as bytes\. Received: a str$"):
        _receive(_manifest(), ["x" * 8, FILES[1]])
    assert not any((tmp_path / "datasets").iterdir())


# A run across workers: the checkpoint its workers leave for the driver.

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=4,
                           num_classes=2)
CONFIG = tlcore.TrainConfig(epochs=2, workers=2, batch_size=2)
ROW = {"epoch": 1, "phase": "train", "loss": 0.7, "accuracy": 0.5, "val_loss": float("nan"),
       "val_accuracy": float("nan"), "seconds": 1.0, "complete": True}
EXPECTED = [((3, 2), np.dtype("float32")), ((2,), np.dtype("float32"))]


def _npz(*arrays, compress=False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, *arrays)
    return buffer.getvalue()


def _declaring(header: dict) -> bytes:
    """Two members, the first declaring ``header`` over 24 bytes, the second the honest (2,) float32."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        first = io.BytesIO()
        np.lib.format.write_array_header_1_0(first, header)
        archive.writestr("arr_0.npy", first.getvalue() + bytes(24))
        second = io.BytesIO()
        np.save(second, np.zeros(2, np.float32))
        archive.writestr("arr_1.npy", second.getvalue())
    return out.getvalue()


HONEST = _npz(np.ones((3, 2), np.float32), np.zeros(2, np.float32))


def _checkpoint(folder, weights=HONEST, history=None, parts=None):
    """A finished Ray Train result whose checkpoint folder holds what the workers wrote."""
    if weights is not None:
        (folder / "weights.npz").write_bytes(weights)
    (folder / "history.json").write_text(json.dumps(history or {"rows": [ROW], "stopped": False}))
    for name, part in (parts or {f"rank-{rank}.json": {"steps": 3, "images": 6} for rank in range(2)}).items():
        (folder / name).write_text(json.dumps(part))
    checkpoint = types.SimpleNamespace(as_directory=lambda: contextlib.nullcontext(str(folder)))
    return types.SimpleNamespace(checkpoint=checkpoint)


def test_weight_shapes_are_those_of_the_model_the_workers_build():
    from tlcore.models.build import _assemble

    assert checkpoint_reads.weight_shapes(SPEC) == [(w.shape, w.dtype) for w in _assemble(SPEC).get_weights()]


def test_an_honest_checkpoint_is_read(tmp_path):
    got = data_parallel._collected(_checkpoint(tmp_path), EXPECTED, CONFIG)
    assert [w.shape for w in got.weights] == [(3, 2), (2,)] and got.steps == {0: 3, 1: 3} and not got.stopped
    assert list(got.history.columns) == HISTORY_COLUMNS and len(got.history) == 1


@pytest.mark.parametrize("weights,received", [
    (_declaring({"descr": "<f4", "fortran_order": False, "shape": (2**40,)}),
     r"arr_0\.npy of shape \(1099511627776,\) float32 where its weight is \(3, 2\) float32"),
    (_declaring({"descr": "|O", "fortran_order": False, "shape": (3, 2)}), r"arr_0\.npy of shape \(3, 2\) object"),
    (_npz(np.ones((3, 5), np.float32), np.zeros(2, np.float32)), r"arr_0\.npy of shape \(3, 5\) float32"),
    (_npz(np.ones((3, 2)), np.zeros(2, np.float32)), r"arr_0\.npy of shape \(3, 2\) float64"),
    (_npz(np.ones((3, 2), np.float32)), r"1 arrays \(arr_0\.npy\.\.\.\) for its model's 2 weights"),
    (_npz(np.zeros(5_000_000, np.float32), np.zeros(2, np.float32), compress=True),
     r"[\d,]+ bytes, more than the 12,320 its model's 2 weights take"),  # 20 MB deflated to 20 KB
    (b"not a zip", r"a weights\.npz that cannot be read"),
    (None, r"no weights\.npz"),
])
def test_weights_that_are_not_the_models_are_refused_before_they_are_read(tmp_path, weights, received):
    with pytest.raises(WorkerError, match=r"^A run's trained weights must be its model's 2 arrays, each of its "
                                          r"weight's shape and dtype\. Received: " + received):
        data_parallel._collected(_checkpoint(tmp_path, weights=weights), EXPECTED, CONFIG)


@pytest.mark.parametrize("history,parts,error,words", [
    ({"rows": [ROW], "stopped": "no"}, None, WorkerError, "history.json must hold its rows, a list of epochs, and "
                                                          "stopped, true or false. Received: "),
    ([1, 2], None, WorkerError, "history.json must hold its rows"),
    ({"rows": [ROW] * 3, "stopped": False}, None, HistoryError, "A run's history may hold at most 2 epochs. "
                                                                "Received: 3 rows in the checkpoint"),
    ({"rows": [{**ROW, "accuracy": "high"}], "stopped": False}, None, HistoryError,
     "A run's history column 'accuracy' must hold numbers. Received: ['high']"),
    (None, {"rank-x.json": {"steps": 1, "images": 1}, "rank-1.json": {"steps": 1, "images": 1}}, WorkerError,
     "A run's checkpoint must hold one part for each of its 2 workers"),
    (None, {"rank-0.json": {"steps": "many", "images": -4}, "rank-1.json": {"steps": 1, "images": 1}}, WorkerError,
     "A worker's part must give its steps and images as whole numbers 0 or more. Received: "),
    (None, {"rank-0.json": {"images": 1}, "rank-1.json": {"steps": True, "images": 1}}, WorkerError,
     "A worker's part must give its steps and images as whole numbers 0 or more. Received: {'images': 1}"),
    (None, {"rank-0.json": {"steps": 1, "images": 1, "pad": "x" * 10_000}, "rank-1.json": {"steps": 1, "images": 1}},
     WorkerError, "rank-0.json may hold at most 4,096 bytes. Received: 10,036 bytes"),
])
def test_a_history_or_part_not_as_workers_write_it_is_refused_in_words(tmp_path, history, parts, error, words):
    with pytest.raises(error) as refused:
        data_parallel._collected(_checkpoint(tmp_path, history=history, parts=parts), EXPECTED, CONFIG)
    assert str(refused.value).startswith(words), str(refused.value)


def test_a_history_nested_past_pythons_stack_is_refused_in_words(tmp_path):
    """3,000 nested arrays fit the history's 6,144 bytes and raised RecursionError, not a refusal."""
    result = _checkpoint(tmp_path)
    (tmp_path / "history.json").write_text("[" * 3000 + "]" * 3000)
    with pytest.raises(WorkerError, match=r"^history\.json must be JSON\. Received: other bytes"):
        data_parallel._collected(result, EXPECTED, CONFIG)


# The model file a finished worker hands the server.

@pytest.fixture
def job(tmp_path):
    """A queued job's server side (no Ray): a 2-class run of 32x32 images."""
    (tmp_path / "images").mkdir()
    dataset = ImageDataset(tmp_path / "images", ("a", "b"), (), (), name="toy", digest="0" * 64)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None)
    queue = jobs.JobQueue(max_running=1, resources={})
    return jobs.TrainingJob(queue, spec, dataset, tlcore.TrainConfig(epochs=2), tlcore.RunStore(tmp_path / "runs"),
                            trainer=lambda *a, **k: None)


def _run_files(job) -> list[str]:
    return sorted(path.name for path in (job.store.root / job.run_id).iterdir())


def test_the_model_its_run_asked_for_is_kept_as_the_runs(job, tmp_path):
    before = _run_files(job)
    model = tiny_keras_file(tmp_path)
    job._keep_model(model)
    assert _run_files(job) == sorted([*before, "model.keras"])  # checked in a folder of its own, gone after
    assert job.store.model_path(job.run_id).read_bytes() == model
    assert job.store.model_path(job.run_id).stat().st_mode & 0o777 == 0o600  # as a model saved here is


def test_a_full_disk_while_a_workers_model_is_written_is_said_in_words_and_leaves_nothing(job, tmp_path, monkeypatch):
    def full(path, data):
        Path(path).write_bytes(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jobs, "write_synced", full)
    before = _run_files(job)
    with pytest.raises(StorageError, match=r"^Saving model\.keras needs free disk space in .*\. Received: No space "
                                           r"left on device; the previous version is kept\.$"):
        job._keep_model(tiny_keras_file(tmp_path))
    assert _run_files(job) == before


@pytest.mark.parametrize("side,classes,received", [
    (32, 3, "input (32, 32, 3) and outputs (3,)"),
    (64, 2, "input (64, 64, 3) and outputs (2,)"),
])
def test_a_model_of_other_classes_or_input_is_refused_in_words(job, tmp_path, side, classes, received):
    before = _run_files(job)
    with pytest.raises(WorkerError, match=r"^A worker's model must be the one its run asked for: input \(32, 32, 3\) "
                                          r"and 2 class scores\. Received: " + received.replace("(", r"\(")
                                          .replace(")", r"\)") + " in the worker's report of run "):
        job._keep_model(tiny_keras_file(tmp_path, side, classes))
    assert _run_files(job) == before  # nothing of the refused model is left


@pytest.mark.parametrize("model,words", [
    (b"not a model", "A model file must be a .keras archive with a config.json. Received: 'model.keras' (the model "
                     "file in the worker's report of run "),
    ("a text", "A worker's model file must come as bytes. Received: a str in the worker's report of run "),
])
def test_a_model_file_that_is_no_model_is_refused_in_words(job, model, words):
    with pytest.raises(WorkerError) as refused:
        job._keep_model(model)
    assert str(refused.value).startswith(words), str(refused.value)


def test_a_result_naming_other_classes_is_refused_in_words(job):
    job._check_result_classes(("a", "b"))
    with pytest.raises(WorkerError, match=r"^A worker's result must name the run's classes, \['a', 'b'\], in that "
                                          r"order\. Received: \['b', 'a'\] in the worker's report of run "):
        job._check_result_classes(("b", "a"))

