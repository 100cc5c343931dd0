"""A job trains on another machine (a second Ray node with its own empty data folder) and its run is the server's."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from two_nodes import REMOTE_RESOURCE, two_nodes

import tlcore

pytestmark = pytest.mark.slow  # starts a Ray cluster of two nodes in subprocesses

ROOT = Path(__file__).resolve().parents[3]

SERVER = textwrap.dedent("""
    import json, sys
    import tlcore
    from tlcore.training.worker import ray_module
    dataset = tlcore.sample_dataset(per_class=6, size=32, seed=2)
    store = tlcore.RunStore(sys.argv[1])
    queue = tlcore.JobQueue(resources={"REMOTE": 1})
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    jobs = []
    for seed in (1, 2):  # one after the other: the second finds the copy the first left
        snapshot = queue.submit(spec, dataset, tlcore.TrainConfig(epochs=2, batch_size=8, seed=seed), store).wait(300)
        jobs.append({"state": snapshot.state, "error": snapshot.error, "run": snapshot.run_id,
                     "transferred": snapshot.transferred, "node": snapshot.node})
    base = str(store.get(jobs[0]["run"]).model_path)  # develop-a-model: the first run's model is the base
    import dataclasses
    snapshot = queue.submit(dataclasses.replace(spec, base_model=base), dataset,
                            tlcore.TrainConfig(epochs=1, batch_size=8), store).wait(300)
    jobs.append({"state": snapshot.state, "error": snapshot.error, "run": snapshot.run_id,
                 "transferred": snapshot.transferred, "node": snapshot.node, "base_bytes": len(open(base, "rb").read())})
    ray = ray_module()
    remote = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("REMOTE")]
    print("RESULT", json.dumps({"jobs": jobs, "capacity": str(tlcore.capacity(queue)), "remote": remote,
                                "here": ray.get_runtime_context().get_node_id(),
                                "digest": dataset.digest, "bytes": sum(p.stat().st_size for p in dataset.files)}))
""").replace("REMOTE", REMOTE_RESOURCE)


def test_a_job_on_a_node_without_the_servers_disk_trains_there_and_its_run_is_in_the_servers_store(tmp_path):
    server_data = tmp_path / "server-data"
    with two_nodes() as cluster:
        env = {**os.environ, **cluster.env, "TL_RAY_ADDRESS": cluster.address, "TL_DATA_DIR": str(server_data),
               "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", SERVER, str(server_data / "runs")], env=env,
                              capture_output=True, text=True, timeout=900)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, done.stdout + done.stderr[-4000:]
        report = json.loads(lines[0][len("RESULT "):])
        remote_files = sorted(str(p.relative_to(cluster.remote_data)) for p in cluster.remote_data.rglob("*")
                              if p.is_file())
    first, second, developed = report["jobs"]
    assert developed["state"] == "done" and developed["node"] == cluster.remote_node, developed
    assert developed["transferred"] == developed["base_bytes"] > 10_000  # the base model's file, not the dataset
    assert any(f.startswith("model-copies/") and f.endswith(".keras") for f in remote_files)
    assert report["capacity"].startswith(f"Jobs train on the cluster at {cluster.address}: 1 machine(s), 1 CPUs, "
                                         "no GPU, "), report["capacity"]  # the node with tl_remote, not the head
    assert first["state"] == second["state"] == "done", report
    assert report["remote"] == [cluster.remote_node] and cluster.remote_node != report["here"]
    assert first["node"] == second["node"] == cluster.remote_node  # both trained on the other node
    assert first["transferred"] == report["bytes"] > 10_000  # the dataset's files, once
    assert second["transferred"] == 0  # the same dataset again: nothing travels
    # the other machine kept a copy by digest and its feature file, and wrote no run
    digest = report["digest"]
    assert f"datasets/{digest}/digest.txt" in remote_files
    assert sum(f.startswith(f"datasets/{digest}/") and f.endswith(".png") for f in remote_files) == 24
    assert any(f.startswith("features/") and f.endswith(".npy") for f in remote_files)
    assert not any(f.startswith("runs/") or f.endswith("model.keras") for f in remote_files)
    assert not (server_data / "features").exists()  # nothing was computed on the server
    # the runs are the server's, as if trained here: history, result, model
    store = tlcore.RunStore(server_data / "runs")
    for job in (first, second):
        record = store.get(job["run"])
        assert record.status == "done" and len(record.history) == 2 and record.result is not None
        assert record.result.class_names == tuple(record.dataset["classes"] if "classes" in record.dataset
                                                  else record.result.class_names)
        model = store.load_model(job["run"])
        assert model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 4)
    assert sorted(store.list()["id"]) == sorted([first["run"], second["run"], developed["run"]])
