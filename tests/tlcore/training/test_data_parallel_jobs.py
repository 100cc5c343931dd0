"""A queued job with workers=2 trains across 2 Ray Train workers and becomes an ordinary run; Stop and delete work."""

import time

import numpy as np
import pytest
from support import every_cpu_held, pending_groups

import tlcore
from tlcore.training.train import TrainingData, evaluate_images

pytestmark = pytest.mark.slow  # starts Ray Train workers

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8,
                           dropout=0.0)


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def dataset():
    return tlcore.sample_dataset(per_class=8, size=32, seed=6)


def test_a_queued_job_on_two_workers_is_an_ordinary_run_in_the_store(ray_address, dataset, tmp_path):
    queue, store = tlcore.JobQueue(max_running=1, max_waiting=2), tlcore.RunStore(tmp_path / "runs")
    config = tlcore.TrainConfig(epochs=2, batch_size=4, workers=2)
    job = queue.submit(SPEC, dataset, config, store)
    seen = []
    wait_for(lambda: seen.append(job.snapshot()) or job.finished, timeout=600)
    snapshot = job.snapshot()
    assert snapshot.state == "done", snapshot.error
    batches = [s.progress for s in seen if s.progress is not None]
    assert batches and all(p.epochs == 2 and p.batches == 3 for p in batches)  # 24 training images / (2 x 4)

    record = store.get(job.run_id)
    assert record.status == "done" and record.config.workers == 2
    assert list(record.history["epoch"]) == [1, 2] and record.history["loss"].notna().all()
    assert record.history["complete"].all()
    assert record.history[["val_loss", "val_accuracy"]].notna().all().all()  # the curves have validation lines
    result = record.result
    assert result.worker_steps == (6, 6)  # both workers took part: 3 steps an epoch each
    _, val_idx = dataset.split(config.validation_fraction, seed=config.seed)
    assert list(result.validation_indices) == list(val_idx)
    assert sum(map(sum, result.confusion)) == len(val_idx) and not result.feature_cache and not result.stopped
    model = store.load_model(job.run_id)  # the server wrote it: the weights the workers trained, evaluated again here
    evaluation = evaluate_images(model, TrainingData(dataset, SPEC.backbone, (32, 32)), val_idx, dataset.class_names)
    assert evaluation.accuracy == pytest.approx(result.accuracy) and evaluation.loss == pytest.approx(result.loss)
    assert np.array_equal(evaluation.confusion, np.asarray(result.confusion))
    assert (record.folder / "tensorboard").is_dir()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(record.folder / "tensorboard" / "validation"), size_guidance={"tensors": 0})
    events.Reload()  # the epochs' curves, which the workers do not write, from the history they sent back
    assert [e.step for e in events.Tensors("epoch_loss")] == [1, 2]


def test_stop_ends_both_workers_after_the_same_step_and_keeps_the_model_and_delete_frees_the_cpus(
        ray_address, dataset, tmp_path):
    import ray

    queue, store = tlcore.JobQueue(max_running=1, max_waiting=2), tlcore.RunStore(tmp_path / "runs")
    cpus = ray.cluster_resources()["CPU"]
    stopped = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=500, batch_size=4, workers=2), store)
    wait_for(lambda: len(stopped.snapshot().history) >= 1 or stopped.finished, timeout=600)
    assert stopped.snapshot().state == "running", stopped.snapshot().error
    stopped.stop()
    snapshot = stopped.wait(300)
    assert snapshot.state == "stopped", snapshot.error
    record = store.get(stopped.run_id)
    assert record.status == "stopped" and record.result.stopped and record.model_path.is_file()
    first, second = record.result.worker_steps
    assert first == second > 3 and len(record.history) < 500  # after the same step, long before the end

    killed = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=500, batch_size=4, workers=2), store)
    wait_for(lambda: killed.snapshot().progress is not None or killed.finished, timeout=600)
    assert killed.snapshot().state == "running", killed.snapshot().error
    assert ray.available_resources().get("CPU", 0) <= cpus - 2  # its two workers hold a CPU each
    queue.delete_run(killed.run_id, store)
    assert killed.finished and not store.has(killed.run_id)
    wait_for(lambda: ray.available_resources().get("CPU", 0) == cpus, timeout=120)  # the workers went with it


def test_a_run_deleted_while_its_workers_wait_for_cpus_leaves_no_reservation_behind(ray_address, dataset, tmp_path):
    """Every CPU is held (another job or a sweep): Ray Train's placement group for the two workers waits.
    Deleting the run then removes that waiting group too, so it does not take the CPUs once they free up."""
    import ray

    queue, store = tlcore.JobQueue(max_running=1, max_waiting=2), tlcore.RunStore(tmp_path / "runs")
    with every_cpu_held() as cpus:
        waiting = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1, batch_size=4, workers=2), store)
        wait_for(lambda: pending_groups() or waiting.finished, timeout=300)
        assert not waiting.finished, waiting.snapshot().error
        queue.delete_run(waiting.run_id, store)
        assert waiting.finished and not store.has(waiting.run_id)
        wait_for(lambda: not pending_groups(), timeout=60)
    wait_for(lambda: ray.available_resources().get("CPU", 0) == cpus, timeout=60)


def test_stop_while_its_workers_wait_for_cpus_ends_the_run_at_once_with_nothing_trained(ray_address, dataset, tmp_path):
    """As a one-worker job stopped before its CPU was free: stopped at once, no epoch, no model, no group left.
    Before, Stop only reached workers that had started: the run stayed "stopping" as long as the CPUs were held,
    then trained an epoch."""
    import ray

    queue, store = tlcore.JobQueue(max_running=1, max_waiting=2), tlcore.RunStore(tmp_path / "runs")
    with every_cpu_held() as cpus:
        waiting = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=1, batch_size=4, workers=2), store)
        wait_for(lambda: pending_groups() or waiting.finished, timeout=300)
        assert not waiting.finished, waiting.snapshot().error
        waiting.stop()
        snapshot = waiting.wait(60)
        assert snapshot.state == "stopped" and snapshot.history.empty and snapshot.error is None, snapshot
        assert not pending_groups()  # its waiting group went with it, while the CPUs are still held
    record = store.get(waiting.run_id)
    assert record.status == "stopped" and not record.model_path.is_file()
    wait_for(lambda: ray.available_resources().get("CPU", 0) == cpus, timeout=60)


def test_a_worker_that_cannot_read_the_images_fails_the_run_in_words(ray_address, tmp_path):
    queue, store = tlcore.JobQueue(max_running=1, max_waiting=2), tlcore.RunStore(tmp_path / "runs")
    gone = tlcore.sample_dataset(per_class=8, size=32, seed=7)
    for path in gone.files:  # its record stays; the images go (a worker's machine that does not see them)
        path.unlink()
    job = queue.submit(SPEC, gone, tlcore.TrainConfig(epochs=1, batch_size=4, workers=2), store)
    snapshot = job.wait(600)
    assert snapshot.state == "failed"
    assert snapshot.error.startswith("A run across workers reads its images where they are stored: every worker's "
                                     "machine must see the dataset's folder"), snapshot.error
    assert "Traceback" not in snapshot.error and store.get(job.run_id).status == "failed"
