"""A job trained in a Ray worker writes its TensorBoard logs into its run's folder."""

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tlcore


@pytest.mark.slow
def test_a_queued_run_logs_its_epochs_into_its_folder(tmp_path, monkeypatch, ray_address):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    store = tlcore.RunStore(tmp_path / "runs")
    dataset = tlcore.sample_dataset(per_class=6, size=32, seed=4)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=4)
    job = tlcore.JobQueue().submit(spec, dataset, tlcore.TrainConfig(epochs=2, batch_size=4), store)
    assert job.wait(300).state == "done"
    history = store.get(job.run_id).history
    events = EventAccumulator(str(tmp_path / "runs" / job.run_id / "tensorboard" / "validation"),
                              size_guidance={"tensors": 0})
    events.Reload()
    logged = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_accuracy")}
    assert sorted(logged) == [1, 2]
    np.testing.assert_allclose([logged[1], logged[2]], history["val_accuracy"], rtol=1e-6)
    assert "confusion_matrix" in events.Tags()["tensors"]
