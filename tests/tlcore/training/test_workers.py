"""Training in Ray workers: the server holds no training tensors and survives a worker's death."""

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray import cloudpickle

import tlcore
from tlcore.training.config import BatchProgress

pytestmark = pytest.mark.slow  # trains in Ray workers

ROOT = Path(__file__).resolve().parents[3]
SPEC = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=8)


@pytest.fixture(scope="module")
def dataset():
    return tlcore.sample_dataset(per_class=6, size=32, seed=5)


def greedy(spec, dataset, config, *, on_batch, on_epoch, stop):
    """A job that allocates far past the machine's memory, 256 MB at a time, touching every page."""
    on_batch(BatchProgress("train", 1, 3, 2, 7))
    blocks = []
    for _ in range(4 * 24 * 2):  # 48 GB, twice the machine, if nothing stops it
        blocks.append(np.ones(2**25))
    raise AssertionError("the worker was never stopped")


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import this test module


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_ray_worker_of_the_lab_keeps_its_temporary_files_in_a_folder_of_its_own(ray_address):
    """Ray starts every worker with tlcore's setup hook: what a worker killed at its job's end leaves in
    its temporary folder (TensorFlow's autograph sources) goes when a later worker starts."""
    import ray

    from tlcore.core.orphans import WORKER_TEMP_PREFIX

    @ray.remote(num_cpus=0)
    def temporary_folder() -> tuple[int, str]:
        return os.getpid(), tempfile.gettempdir()

    pid, folder = ray.get(temporary_folder.remote(), timeout=120)
    assert Path(folder).name.startswith(f"{WORKER_TEMP_PREFIX}{pid}-") and Path(folder).is_dir()
    assert Path(folder).parent == Path(tempfile.gettempdir())


def test_a_worker_that_runs_out_of_memory_fails_its_run_and_the_server_goes_on(tmp_path, monkeypatch, dataset):
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "2")
    store = tlcore.RunStore(tmp_path)
    before = resident_bytes()
    job = tlcore.JobQueue().submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store, trainer=greedy)
    snapshot = job.wait(180)
    assert snapshot.state == "failed"
    assert "ran out of memory" in snapshot.error and "2.0 GB (TL_JOB_MEMORY_GB)" in snapshot.error
    assert "epoch 1 of 3, batch 2 of 7" in snapshot.error
    assert store.list().set_index("id").loc[job.run_id, "status"] == "failed"
    assert resident_bytes() - before < 100 * 2**20  # the 2 GB were the worker's, never this process's
    # and the server still answers: a prediction in this process, and a new job in a new worker
    model = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3),
                                 pooling="avg")
    assert tlcore.compiled_forward(model)(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 1280)
    again = tlcore.JobQueue().submit(SPEC, dataset, tlcore.TrainConfig(epochs=1), store)
    assert again.wait(180).state == "done"


def test_deleting_a_run_that_is_training_ends_its_worker_first(tmp_path, dataset):
    queue = tlcore.JobQueue()
    store = tlcore.RunStore(tmp_path)
    job = queue.submit(SPEC, dataset, tlcore.TrainConfig(epochs=500, batch_size=4), store)
    deadline = time.monotonic() + 120
    while job.snapshot().progress is None:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    queue.delete_run(job.run_id, store)
    assert job.finished and job.snapshot().state == "stopped"
    assert job.run_id not in set(store.list()["id"]) and not (tmp_path / job.run_id).exists()


def test_a_worker_sends_new_epochs_only_and_hands_back_the_result_and_model_writing_no_run_file(tmp_path, dataset):
    """The worker's side, in this process (no Ray): the server polls ``progress(since)`` and writes the record."""
    from tlcore.training.worker import TrainingWorker

    worker = TrainingWorker({}, 2**62, str(tmp_path / "death.json"))  # no memory limit that could end pytest
    received, checked_by_queue = [], []

    def polling_train(spec, dataset, config, *, on_batch, on_epoch, stop, checked):
        """``tlcore.train``, with the server's poll after every epoch."""
        checked_by_queue.append(checked)

        def epoch(history):
            on_epoch(history)
            received.append(worker.progress(sum(len(rows) for rows in received))[1])

        return tlcore.train(spec, dataset, config, on_batch=on_batch, on_epoch=epoch, stop=stop, checked=checked)

    store = tlcore.RunStore(tmp_path / "runs")
    config = tlcore.TrainConfig(epochs=3, batch_size=8)
    run_id = store.create(dataclasses.replace(SPEC, num_classes=len(dataset.class_names)), config, dataset.summary())
    outcome = worker.run(polling_train, SPEC, dataset, config, str(store.root / run_id))
    assert checked_by_queue == [True]  # the queue checked the spec: the worker does not again
    assert [len(rows) for rows in received] == [1, 1, 1]  # each poll: only the epoch the server had not seen
    pd.testing.assert_frame_equal(pd.concat(received, ignore_index=True), outcome.history)
    assert len(worker.progress(0)[1]) == 3 and worker.progress(3)[1].empty
    assert outcome.state == "done" and outcome.result.class_names == dataset.class_names
    assert len(outcome.result.validation_indices) == sum(outcome.result.confusion[i][j] for i in range(4) for j in range(4))
    folder = store.root / run_id
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "dataset.json"]  # the server writes
    assert outcome.model[:2] == b"PK" and len(outcome.model) > 10_000  # the .keras file (a zip), as bytes
    assert store.get(run_id).status == "running" and store.get(run_id).history.empty  # the record is the server's
    (folder / "model.keras").write_bytes(outcome.model)
    store.record_result(run_id, outcome.history, outcome.result)
    record = store.get(run_id)
    assert record.status == "done" and record.result == outcome.result
    pd.testing.assert_frame_equal(record.history, outcome.history, check_dtype=False)
    assert store.load_model(run_id).output.shape[-1] == 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def separate_head():
    """A Ray head of its own (``ray start --head`` on 127.0.0.1, in a temporary folder)."""
    folder = Path(tempfile.mkdtemp(prefix="tlray-"))  # short: Ray's socket paths must stay short
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         f"--temp-dir={folder}", "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    os.killpg(head.pid, 15)
    try:
        head.wait(5)
    except subprocess.TimeoutExpired:  # Ray's own shutdown is slow; the folder is thrown away anyway
        os.killpg(head.pid, 9)
        head.wait(30)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_job_runs_on_a_separate_ray_cluster_given_by_tl_ray_address(separate_head, tmp_path):
    script = textwrap.dedent(f"""
        import tlcore
        dataset = tlcore.sample_dataset(per_class=4, size=32, seed=1)
        store = tlcore.RunStore({str(tmp_path / "runs")!r})
        job = tlcore.JobQueue().submit(
            tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=8),
            dataset, tlcore.TrainConfig(epochs=2, batch_size=4), store)
        snapshot = job.wait(240)
        print("STATE", snapshot.state, snapshot.error)
        print("EPOCHS", len(store.get(job.run_id).history))
        import ray  # only now: tlcore imported it first, with what Ray reads at import set (loopback, the token)
        print("CLUSTER", ray.get_runtime_context().gcs_address)
    """)
    env = {**os.environ, "TL_RAY_ADDRESS": separate_head, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=400)
    assert "STATE done None" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "EPOCHS 2" in done.stdout
    assert f"CLUSTER {separate_head}" in done.stdout
