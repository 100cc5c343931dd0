"""Where a job will train and why it waits, in data and in one line (no Ray is started to look)."""

import os
import sys

import pytest

import tlcore
from tlcore.training.capacity import Capacity, Machine, free_memory

GB = 1_000_000_000


def test_before_ray_is_joined_jobs_train_on_this_machine_with_its_cpus_and_free_memory(monkeypatch):
    monkeypatch.delenv("TL_RAY_ADDRESS", raising=False)
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            pytest.skip("this process joined Ray: covered by the cluster test")
    seen = tlcore.capacity(tlcore.JobQueue(max_running=2))
    assert seen.cluster == "" and not seen.joined and len(seen.machines) == 1
    assert seen.machines[0].cpus == os.cpu_count() and seen.machines[0].gpus == 0
    assert abs(seen.machines[0].memory - free_memory()) < 2 * GB and seen.machines[0].memory > 0
    assert seen.max_running == 2 and seen.running == seen.waiting == 0
    assert str(seen).startswith(f"Jobs train on this machine ({os.cpu_count()} CPUs, no GPU, ")
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()  # looking started nothing


def test_a_cluster_not_joined_yet_is_named_by_its_address(monkeypatch):
    monkeypatch.setenv("TL_RAY_ADDRESS", "10.0.0.5:6379")
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        pytest.skip("this process joined Ray")
    seen = tlcore.capacity()
    assert seen.cluster == "10.0.0.5:6379" and seen.machines == ()
    assert "on the Ray cluster at 10.0.0.5:6379" in str(seen)


def test_the_reasons_a_job_waits_are_said_in_words():
    four_gpus = tuple(Machine(f"10.0.0.{i}", 16, 1, 60 * GB) for i in range(2, 6))
    free = Capacity("10.0.0.1:6379", True, four_gpus, running=1, max_running=4, free_cpus=63, job_memory=12 * GB)
    assert free.waits_because is None
    assert str(free) == ("Jobs train on the cluster at 10.0.0.1:6379: 4 machine(s), 64 CPUs, 4 GPUs, 240.0 GB "
                         "memory. A new job starts at once.")
    full = Capacity("", False, (Machine("", 2, 0, 20 * GB),), running=1, waiting=3, max_running=1,
                    job_memory=12 * GB)
    assert full.waits_because == ("no free worker: 1 job(s) train now, the most this server trains at once "
                                  "(TL_MAX_TRAINING_JOBS=1), and 3 wait in line")
    busy = Capacity("10.0.0.1:6379", True, four_gpus, running=1, max_running=8, free_cpus=0.5, job_memory=GB)
    assert busy.waits_because == "no free worker: every CPU of the cluster is busy"
    short = Capacity("", False, (Machine("", 2, 0, 3 * GB),), job_memory=12 * GB)
    assert short.waits_because == ("memory: a job may use up to 12.0 GB (TL_JOB_MEMORY_GB) and the most any "
                                   "machine has free is 3.0 GB")
    assert str(Capacity("x:1", True, ())).startswith("Jobs train nowhere: no machine has what jobs ask for")


def test_the_custom_resources_jobs_ask_for_are_a_setting(monkeypatch):
    monkeypatch.setenv("TL_JOB_RESOURCES", "gpu_box=1, fast_disk=0.5")
    assert tlcore.JobQueue().resources == {"gpu_box": 1.0, "fast_disk": 0.5}
    assert tlcore.JobQueue(resources={}).resources == {}  # given: the setting is not read
    monkeypatch.setenv("TL_JOB_RESOURCES", "gpu_box")
    with pytest.raises(tlcore.ConfigError, match=r"TL_JOB_RESOURCES must be name=amount .* Received: 'gpu_box'"):
        tlcore.JobQueue()
