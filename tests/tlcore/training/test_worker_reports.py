"""What a training worker reports is checked before the run store keeps it: its history (columns, values, no more
epochs than planned, never fewer than stored) and its result (``RunResult.mismatch``). A worker that reported an
empty history replaced the stored epochs with a file the Runs page could not read, for every visitor; 200,000 rows
for a 2-epoch run were kept; an infinite accuracy ranked first. The Ray side is played here by a fake, so the
server's side (``TrainingJob._train``) runs unchanged without starting Ray."""

import functools
import io
import re
import tempfile
import types
import zipfile

import numpy as np
import pandas as pd
import pytest
from support import tiny_keras_file

import tlcore
from tlcore.data.datasets import ImageDataset
from tlcore.inference.verdicts import PrecisionCheck
from tlcore.training import jobs
from tlcore.training.config import HISTORY_COLUMNS, BatchProgress
from tlcore.training.results import RunResult
from tlcore.training.worker import WorkerOutcome


@functools.cache
def _model() -> bytes:
    """A worker's model file for the runs here: 32x32 images, the two classes (the server checks it is that)."""
    return tiny_keras_file(tempfile.mkdtemp())


class _TaskError(Exception):
    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


class _Ref:
    def __init__(self, answer, waits=0):
        self.answer, self.waits = answer, waits

    def value(self):
        try:
            return self.answer()
        except Exception as exc:  # as Ray does: the worker's exception travels as the cause
            raise _TaskError(exc) from exc


class _FakeRay:
    exceptions = types.SimpleNamespace(RayError=type("RayError", (Exception,), {}), RayTaskError=_TaskError,
                                       OutOfDiskError=type("OutOfDiskError", (Exception,), {}),
                                       OutOfMemoryError=type("OutOfMemoryError", (Exception,), {}))

    def wait(self, refs, timeout=None):
        ready = [ref for ref in refs if ref.waits <= 0]
        for ref in refs:
            ref.waits -= 1
        return ready, [ref for ref in refs if ref not in ready]

    def get(self, ref, timeout=None):
        return ref.value()

    def kill(self, actor, **kwargs):
        pass

    def cluster_resources(self):
        return {}


def _history(epochs: int = 2) -> pd.DataFrame:
    return pd.DataFrame([{"epoch": i + 1, "phase": "train", "loss": 0.7, "accuracy": 0.5, "val_loss": 0.7,
                          "val_accuracy": 0.5, "seconds": 1.0, "complete": True} for i in range(epochs)],
                        columns=HISTORY_COLUMNS)


def _result(**changed) -> RunResult:
    values = dict(class_names=("a", "b"), accuracy=0.5, loss=0.7, confusion=((1, 1), (1, 1)), precision=(0.5, 0.5),
                  recall=(0.5, 0.5), seconds=1.0)
    return RunResult(**{**values, **changed})


def _job(tmp_path, monkeypatch, progress_rows: pd.DataFrame, outcome: WorkerOutcome, *, progress=None, peak=100,
         during_run=None):
    job = None

    class Worker:
        def where(self):
            return "node-1"

        def has_dataset(self, dataset):
            return True

        def progress(self, since=0):
            return progress, progress_rows.iloc[since:].reset_index(drop=True), peak

        def run(self, trainer, spec, dataset, config, run_folder):
            if during_run is not None:
                during_run(job)
            return outcome

        def stop(self):
            pass

    class Handle:
        def __init__(self):
            self.worker = Worker()

        def __getattr__(self, name):
            method = getattr(self.worker, name)
            return types.SimpleNamespace(remote=lambda *a, **k: _Ref(lambda: method(*a, **k), 3 if name == "run" else 0))

    actor = types.SimpleNamespace(options=lambda **kwargs: actor, remote=lambda *args: Handle())
    monkeypatch.setattr(jobs, "connect", lambda: "fake")
    monkeypatch.setattr(jobs, "ray_module", lambda: _FakeRay())
    monkeypatch.setattr(jobs, "training_worker", lambda: actor)
    store = tlcore.RunStore(tmp_path / "runs")
    (tmp_path / "images").mkdir()
    dataset = ImageDataset(tmp_path / "images", ("a", "b"), (), (), name="toy", digest="0" * 64)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None)
    queue = jobs.JobQueue(max_running=1, resources={})
    job = jobs.TrainingJob(queue, spec, dataset, tlcore.TrainConfig(epochs=2), store, trainer=lambda *a, **k: None)
    job._train(store.root / job.run_id / "worker-death.json")
    return job, store


def test_an_honest_report_is_stored(tmp_path, monkeypatch):
    job, store = _job(tmp_path, monkeypatch, _history(2), WorkerOutcome(_history(2), _result(), _model(), b""))
    assert job.snapshot().state == "done"
    record = store.get(job.run_id)
    assert len(record.history) == 2 and record.history["complete"].tolist() == [True, True]
    assert store.model_path(job.run_id).read_bytes() == _model()


def _bad(column: str, value) -> pd.DataFrame:
    history = _history(2).astype(object)
    history.loc[1, column] = value
    return history


@pytest.mark.parametrize("final,words", [
    (pd.DataFrame(), r"A run's history must have the columns \['epoch', 'phase', .*Received: \[\] in the worker's "
                     r"report of run"),
    (_history(3), r"A run's history may hold at most 2 epochs\. Received: 3 rows"),
    (_bad("val_accuracy", "high"), r"A run's history column 'val_accuracy' must hold numbers\. Received: \[0\.5, 'high'\]"),
    (_bad("val_accuracy", np.inf), r"A run's history accuracies must be from 0 to 1 \(or empty\)\. Received: \[inf\]"),
    (_bad("loss", -1e300), r"A run's history loss must be 0 or more and finite \(or empty\)\. Received: \[-1e\+300\]"),
    (_history(1), r"A run's history only grows\. Received: 1 epochs after 2"),
])
def test_a_bad_final_history_fails_the_run_in_words_and_keeps_the_stored_epochs(tmp_path, monkeypatch, final, words):
    job, store = _job(tmp_path, monkeypatch, _history(2), WorkerOutcome(final, _result(), _model(), b""))
    snapshot = job.snapshot()
    assert snapshot.state == "failed"
    assert re.search(words, snapshot.error), snapshot.error
    record = store.get(job.run_id)  # the Runs page reads it
    assert len(record.history) == 2 and record.history["val_accuracy"].tolist() == [0.5, 0.5]
    assert not store.model_path(job.run_id).exists()  # nothing of the refused outcome is kept


def test_bad_rows_while_training_fail_the_run_before_they_are_stored(tmp_path, monkeypatch):
    rows = _history(1).iloc[np.zeros(200_000, dtype=np.int64)].reset_index(drop=True)  # one row 200,000 times
    job, store = _job(tmp_path, monkeypatch, rows, WorkerOutcome(_history(2), _result(), _model(), b""))
    assert job.snapshot().state == "failed"
    assert "A run's history may hold at most 2 epochs. Received: 200,000 rows" in job.snapshot().error
    assert len(store.get(job.run_id).history) == 0


@pytest.mark.parametrize("result,words", [
    (_result(accuracy=float("inf")), "an accuracy of inf, not from 0 to 1"),
    (_result(confusion=((1,),)), "a confusion matrix of 1 rows of [1]"),
    (_result(precision_check=PrecisionCheck(8, "all", 0.0, 1.0, 1.0)), "not all numbers"),
    (_result(seconds=-5.0), "-5.0 seconds of training"),
])
def test_a_result_that_does_not_fit_its_classes_fails_the_run_in_words(tmp_path, monkeypatch, result, words):
    job, store = _job(tmp_path, monkeypatch, _history(2), WorkerOutcome(_history(2), result, _model(), b""))
    snapshot = job.snapshot()
    assert snapshot.state == "failed" and "A worker's result must fit the run's classes. Received: " in snapshot.error
    assert words in snapshot.error
    assert len(store.get(job.run_id).history) == 2


def test_a_log_pack_whose_names_clash_leaves_the_run_done(tmp_path, monkeypatch):
    """A pack with members ``a`` and ``a/b`` passed the archive checks and then raised FileExistsError, which
    turned a finished run into a failed one."""
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("tensorboard/a", b"x")
        archive.writestr("tensorboard/a/b", b"y")
    job, store = _job(tmp_path, monkeypatch, _history(2),
                      WorkerOutcome(_history(2), _result(), _model(), packed.getvalue()))
    assert job.snapshot().state == "done"
    assert len(store.get(job.run_id).history) == 2


@pytest.mark.parametrize("progress,peak", [
    (BatchProgress("train", 1, 2, 1, 0), 100),  # no batches: the snapshot divided by zero
    (BatchProgress("train", 1, 0, 1, 5), 100),  # no epochs
    (BatchProgress("train", -3, 2, 1, 5), 100),  # a negative share, which st.progress refuses
    (BatchProgress("train", 1.5, 2, "one", 5), "lots"),  # not counts; a peak that is no number
])
def test_progress_that_does_not_add_up_never_breaks_a_snapshot(tmp_path, monkeypatch, progress, peak):
    """Every snapshot of the job (the Train page's, a demo's start on Home) read a worker's progress as it came."""
    seen = []

    def snapshot_while_training(job):
        snapshot = job.snapshot()
        seen.append((snapshot.progress.fraction if snapshot.progress else None, snapshot.peak_memory))

    job, store = _job(tmp_path, monkeypatch, _history(2), WorkerOutcome(_history(2), _result(), _model(), b""),
                      progress=progress, peak=peak, during_run=snapshot_while_training)
    assert job.snapshot().state == "done"
    fraction, memory = seen[-1]
    assert fraction is None or 0.0 <= fraction <= 1.0
    assert memory == (100 if peak == 100 else 0)


def test_a_model_file_over_the_budget_is_not_written(tmp_path, monkeypatch):
    """A worker's model bytes were written whatever their size: 40 MB under an 8 MB TL_MAX_MODEL_FILE_MB."""
    monkeypatch.setenv("TL_MAX_MODEL_FILE_MB", "1")
    job, store = _job(tmp_path, monkeypatch, _history(2), WorkerOutcome(_history(2), _result(), bytes(2 * 2**20), b""))
    snapshot = job.snapshot()
    assert snapshot.state == "failed"
    assert snapshot.error.startswith("A worker's model file may be at most 1 MB (TL_MAX_MODEL_FILE_MB). "
                                     "Received: 2.0 MB in the worker's report of run"), snapshot.error
    assert not store.model_path(job.run_id).exists() and len(store.get(job.run_id).history) == 2


def test_a_model_file_without_room_in_the_data_folder_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TL_MAX_DATA_GB", "0.001")  # about 1 MB
    job, store = _job(tmp_path, monkeypatch, _history(2), WorkerOutcome(_history(2), _result(), bytes(2 * 2**20), b""))
    assert job.snapshot().state == "failed"
    assert "model" in job.snapshot().error and "TL_MAX_DATA_GB" in job.snapshot().error, job.snapshot().error
    assert not store.model_path(job.run_id).exists()
