"""TensorBoard logs of a run trained where the server's run folder cannot be seen come back whole."""

import dataclasses
import io
import zipfile

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tlcore
from tlcore.training import shipped_logs
from tlcore.training.shipped_logs import pack_logs, unpack_logs

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)


def _losses(folder):
    import tensorflow as tf

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_loss")}


@pytest.mark.slow
def test_a_worker_that_cannot_see_the_run_folder_hands_its_logs_back_and_the_server_puts_them_in_place(tmp_path):
    from tlcore.training.worker import TrainingWorker

    dataset = tlcore.sample_dataset(per_class=6, size=32, seed=3)
    store = tlcore.RunStore(tmp_path / "runs")
    config = tlcore.TrainConfig(epochs=2, batch_size=8, cache_features=False)
    run_id = store.create(dataclasses.replace(SPEC, num_classes=len(dataset.class_names)), config, dataset.summary())
    worker = TrainingWorker({}, 2**62, str(tmp_path / "death.json"))

    elsewhere = tmp_path / "another-machine" / run_id  # the server's folder, as a machine that cannot see it
    outcome = worker.run(tlcore.train, SPEC, dataset, config, str(elsewhere))
    assert not elsewhere.exists() and outcome.logs[:2] == b"PK"
    assert not (store.root / run_id / "tensorboard").exists()  # the worker wrote nothing of the run
    placed = unpack_logs(outcome.logs, store.root / run_id)
    assert placed == store.root / run_id / "tensorboard"
    np.testing.assert_allclose([_losses(placed / "train")[step] for step in (1, 2)], outcome.history["loss"],
                               rtol=1e-6)
    assert not [p for p in (store.root / run_id).iterdir() if p.name.startswith(".tensorboard-")]

    live = worker.run(tlcore.train, SPEC, dataset, config, str(store.root / run_id))  # a folder it sees
    assert live.logs == b""  # written in place as it trained
    assert sorted(_losses(store.root / run_id / "tensorboard" / "train")) == [1, 2]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("data, words", [
    (_zip({"train/ok": b"1", "../../escape": b"x"}), "relative paths"),
    (b"not a zip at all", "must come as a zip archive"),
    (b"PK" + bytes(2_000), "at most 1,000 bytes"),
])
def test_logs_that_break_a_rule_are_refused_in_words_and_nothing_is_written(tmp_path, monkeypatch, data, words):
    monkeypatch.setattr(shipped_logs, "MAX_LOG_BYTES", 1_000)
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    with pytest.raises(tlcore.TLError, match=words):
        unpack_logs(data, run_folder)
    assert list(run_folder.iterdir()) == [] and not (tmp_path / "escape").exists()


def test_packing_keeps_every_file_by_its_relative_name(tmp_path):
    (tmp_path / "logs" / "train").mkdir(parents=True)
    (tmp_path / "logs" / "train" / "events.1").write_bytes(b"abc")
    (tmp_path / "logs" / "validation").mkdir()
    (tmp_path / "logs" / "validation" / "projector_config.pbtxt").write_text("x")
    assert pack_logs(tmp_path / "missing") == b""
    run = tmp_path / "run"
    run.mkdir()
    placed = unpack_logs(pack_logs(tmp_path / "logs"), run)
    assert (placed / "train" / "events.1").read_bytes() == b"abc"
    assert (placed / "validation" / "projector_config.pbtxt").read_text() == "x"
