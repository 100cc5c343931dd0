"""A job across workers that could not train as asked is refused in words before anything starts."""

import dataclasses
import json
import re

import pytest

import tlcore

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)


def refusal(queue, dataset, store, **config) -> str:
    with pytest.raises(tlcore.ConfigError) as caught:
        queue.submit(SPEC, dataset, tlcore.TrainConfig(**config), store)
    return str(caught.value)


def test_more_workers_than_cpus_too_few_images_and_settings_it_cannot_honour_are_refused_in_words(tmp_path):
    queue, store = tlcore.JobQueue(max_running=1, max_waiting=4), tlcore.RunStore(tmp_path / "runs")
    cpus = tlcore.capacity(queue).cpus
    assert cpus >= 1
    dataset = tlcore.sample_dataset(per_class=8, size=32, seed=6)
    words = refusal(queue, dataset, store, workers=int(cpus) + 1, batch_size=2)
    assert words == (f"Each worker of a run needs a CPU of its own, and the machines jobs train on have {cpus:g} "
                     f"CPUs in all. Received: workers={int(cpus) + 1}")
    small = tlcore.sample_dataset(per_class=2, size=32, seed=6)  # 4 classes x 2: 4 training images
    words = refusal(queue, small, store, workers=2, batch_size=8)
    assert words.startswith("Each of 2 workers needs at least one batch of 8 training images. Received: 4")
    words = refusal(queue, dataset, store, workers=2, batch_size=4, augment=True, early_stopping=2)
    assert re.search(r"first phase only.*Received: workers=2 with augmentation and early stopping", words)
    words = refusal(queue, dataset, store, workers=2, batch_size=4, fine_tune_from="all", fine_tune_epochs=1)
    assert "with a fine-tuning phase" in words
    assert refusal(queue, dataset, store, workers=65).startswith("Workers must be 1 to 64")
    assert store.list().empty and queue.load() == (0, 0)  # nothing was queued or recorded


def test_the_limits_and_the_most_workers_are_data():
    assert tlcore.unsupported_across_workers(tlcore.TrainConfig()) == []
    assert tlcore.unsupported_across_workers(tlcore.TrainConfig(augment=True, fine_tune_from="all",
                                                                fine_tune_epochs=2)) == ["augmentation",
                                                                                         "a fine-tuning phase"]
    assert tlcore.most_workers(2.0) == 2 and tlcore.most_workers(None) == tlcore.MAX_WORKERS == 64
    assert tlcore.most_workers(500.0) == 64 and tlcore.most_workers(0.5) == 1


def test_each_workers_steps_travel_in_result_json_and_a_one_process_run_writes_no_such_key():
    one = tlcore.RunResult.from_json({"class_names": ["a", "b"], "accuracy": 1.0, "loss": 0.1})
    assert one.worker_steps == () and "worker_steps" not in one.to_json()
    across = dataclasses.replace(one, worker_steps=(6, 6))
    assert across.to_json()["worker_steps"] == [6, 6]
    assert tlcore.RunResult.from_json(json.loads(json.dumps(across.to_json()))) == across
