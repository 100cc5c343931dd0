import hashlib
import time

import numpy as np
import pytest

import tlcore
from conftest import image_bytes


@pytest.fixture(scope="module")
def dataset():
    return tlcore.sample_dataset(per_class=8, size=32, seed=2)


SPEC = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=8)


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_one_job_at_a_time_others_wait_with_their_position(tmp_path, dataset):
    queue = tlcore.JobQueue(max_running=1)
    store = tlcore.RunStore(tmp_path)
    first = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1000, batch_size=4), store)  # stopped below
    second = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    third = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    wait_for(lambda: first.snapshot().state == "running" and first.snapshot().progress is not None)
    assert (second.snapshot().state, second.snapshot().position) == ("queued", 1)
    assert (third.snapshot().state, third.snapshot().position) == ("queued", 2)
    third.stop()  # leaves the line without training
    assert third.wait(30).state == "stopped"
    first.stop()
    done = first.wait(60)
    assert done.state == "stopped" and store.get(first.run_id).model_path.is_file()
    assert 0 < len(done.history) < 1000
    assert second.wait(60).state == "done"
    runs = store.list().set_index("id")
    assert runs.loc[first.run_id, "status"] == "stopped" and runs.loc[second.run_id, "status"] == "done"
    assert runs.loc[third.run_id, "status"] == "stopped"  # left the line: stopped, never "interrupted"
    assert store.get(second.run_id).model_path.is_file()


def test_history_is_saved_as_it_happens_and_eta_is_reported(tmp_path, dataset):
    queue = tlcore.JobQueue()
    store = tlcore.RunStore(tmp_path)
    job = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=30, batch_size=4), store)
    wait_for(lambda: len(job.snapshot().history) >= 2)
    snapshot = job.snapshot()
    assert snapshot.remaining is not None and snapshot.remaining > 0 and snapshot.elapsed > 0
    assert len(store.get(job.run_id).history) >= 2  # on disk before training ends
    job.stop()
    job.wait(60)


def test_a_spec_that_cannot_work_is_refused_when_submitted(tmp_path, dataset):
    store = tlcore.RunStore(tmp_path)
    with pytest.raises(tlcore.ShapeError, match="at least 32x32"):
        tlcore.JobQueue().submit(tlcore.TransferSpec(backbone="VGG16", input_shape=(16, 16, 3), weights=None),
                                 dataset, tlcore.TrainConfig(epochs=1), store)
    assert store.list().empty


def test_a_failing_job_reports_plainly(tmp_path):
    vanishing = tlcore.load_dataset({"a": [image_bytes(seed=1), image_bytes(seed=2)],
                                     "b": [image_bytes(seed=3), image_bytes(seed=4)]})
    for path in vanishing.files:
        path.unlink()  # the images go missing after the job was queued
    store = tlcore.RunStore(tmp_path)
    job = tlcore.JobQueue().submit(SPEC, vanishing, tlcore.TrainConfig(epochs=1, cache_features=False), store)
    snapshot = job.wait(120)
    assert snapshot.state == "failed"
    assert snapshot.error.startswith("Training failed unexpectedly (") and "server log" in snapshot.error
    assert "Traceback" not in snapshot.error and str(vanishing.root) not in snapshot.error
    assert store.list().loc[0, "status"] == "failed"


def test_the_line_has_a_limit(tmp_path, dataset):
    queue = tlcore.JobQueue(max_running=1, max_waiting=1)
    store = tlcore.RunStore(tmp_path)
    first = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1000, batch_size=4), store)  # stopped below
    wait_for(lambda: first.snapshot().state == "running")
    second = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    with pytest.raises(tlcore.ConfigError, match="At most 1 training jobs may wait"):
        queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    second.stop()
    first.stop()
    first.wait(60)
    second.wait(60)


def test_shared_base_weights_are_untouched_by_someone_elses_fine_tuning(tmp_path, dataset):
    shared = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "base.weights.h5"
    shared.save_weights(path)

    def digest(model):
        return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()

    before = digest(shared)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=str(path),
                               trainable_from="all", hidden_units=8)
    job = tlcore.JobQueue().submit(spec, dataset, tlcore.TrainConfig(epochs=1), tlcore.RunStore(tmp_path / "runs"))
    assert job.wait(120).state == "done"
    trained = tlcore.RunStore(tmp_path / "runs").load_model(job.run_id)
    assert digest(shared) == before
    assert not np.array_equal(trained.get_layer("vgg16").get_weights()[0], shared.get_weights()[0])


def test_old_finished_jobs_are_let_go_but_their_runs_stay(tmp_path, dataset):
    queue = tlcore.JobQueue()
    queue.KEEP_FINISHED = 1
    store = tlcore.RunStore(tmp_path)
    done = [queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store) for _ in range(3)]
    for job in done:
        job.wait(120)
    latest = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    assert set(queue.jobs) == {done[-1].id, latest.id}
    latest.wait(120)
    assert len(store.list()) == 4


def test_a_job_over_the_memory_budget_is_refused_before_any_worker_starts(tmp_path, dataset, monkeypatch):
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "4")
    store = tlcore.RunStore(tmp_path)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(224, 224, 3), weights=None, trainable_from="all")
    with pytest.raises(tlcore.BudgetError, match=r"at most 4 GB of memory on this server \(TL_JOB_MEMORY_GB\)"):
        tlcore.JobQueue().submit(spec, dataset, tlcore.TrainConfig(batch_size=64), store)
    assert store.list().empty


def test_a_dataset_a_job_reads_cannot_be_deleted_until_the_job_ends(tmp_path):
    uploaded = tlcore.load_dataset({"a": [image_bytes(seed=11), image_bytes(seed=12)],
                                    "b": [image_bytes(seed=13), image_bytes(seed=14)]})
    queue = tlcore.JobQueue()
    job = queue.submit(SPEC, uploaded, tlcore.TrainConfig(epochs=300, batch_size=2), tlcore.RunStore(tmp_path))
    assert uploaded.root.name in queue.datasets_in_use()
    with pytest.raises(tlcore.DatasetError, match="queued or running training job reads cannot be deleted"):
        tlcore.delete_dataset(uploaded.root.name, in_use=queue.datasets_in_use())
    assert uploaded.root.is_dir()
    job.stop()
    job.wait(120)
    assert queue.datasets_in_use() == set()
    assert tlcore.delete_dataset(uploaded.root.name, in_use=queue.datasets_in_use()) > 0
