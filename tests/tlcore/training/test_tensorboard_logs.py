"""Every run's TensorBoard logs, read back with TensorBoard's own reader."""

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import projector

import tlcore
from tlcore.training.tensorboard import THUMBNAIL, confusion_image


def _scalars(folder, tag):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    return events, {e.step: float(np.asarray(tf_value(e))) for e in events.Tensors(tag)}


def tf_value(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    dataset = tlcore.sample_dataset(per_class=8, size=32, seed=1)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    config = tlcore.TrainConfig(epochs=2, batch_size=8, learning_rate=2e-3, fine_tune_from="all",
                                fine_tune_epochs=1, fine_tune_learning_rate=1e-4, cache_features=False)
    result = tlcore.train(spec, dataset, config, log_dir=root / "tensorboard")
    return root / "tensorboard", dataset, result


@pytest.mark.slow
def test_epoch_scalars_equal_the_history_over_both_phases(logged):
    folder, _, result = logged
    history = result.history
    assert list(history["phase"]) == ["train", "train", "fine-tune"]
    steps = list(range(1, len(history) + 1))
    for column in ("loss", "accuracy"):
        _, train = _scalars(folder / "train", f"epoch_{column}")
        _, validation = _scalars(folder / "validation", f"epoch_{column}")
        assert sorted(train) == steps and sorted(validation) == steps
        np.testing.assert_allclose([train[s] for s in steps], history[column], rtol=1e-6)
        np.testing.assert_allclose([validation[s] for s in steps], history[f"val_{column}"], rtol=1e-6)
    _, rates = _scalars(folder / "train", "epoch_learning_rate")
    np.testing.assert_allclose([rates[s] for s in steps], [2e-3, 2e-3, 1e-4], rtol=1e-6)
    events, _ = _scalars(folder / "validation", "epoch_loss")
    # no second series stepped by the optimizer's count, which restarted with fine-tuning (two values at a step)
    assert not [tag for tag in events.Tags()["tensors"] if tag.endswith("_vs_iterations")]


def test_a_history_written_after_the_fact_reads_back_as_epoch_scalars(tmp_path):
    """A run across workers: its workers write no logs, so the driver writes the history's scalars."""
    import pandas as pd

    from tlcore.training.tensorboard import write_history_scalars

    history = pd.DataFrame({"epoch": [1, 2, 3], "phase": "train", "loss": [1.2, 0.9, 0.7],
                            "accuracy": [0.4, 0.6, 0.7], "val_loss": [1.3, 1.0, np.nan],
                            "val_accuracy": [0.3, 0.5, np.nan], "seconds": 1.0, "complete": True})
    write_history_scalars(tmp_path, history, 2e-3)
    _, loss = _scalars(tmp_path / "train", "epoch_loss")
    _, rate = _scalars(tmp_path / "train", "epoch_learning_rate")
    _, val_accuracy = _scalars(tmp_path / "validation", "epoch_accuracy")
    assert loss == pytest.approx({1: 1.2, 2: 0.9, 3: 0.7}) and rate == pytest.approx({1: 2e-3, 2: 2e-3, 3: 2e-3})
    assert val_accuracy == pytest.approx({1: 0.3, 2: 0.5})  # the epoch not measured is left out


@pytest.mark.slow
def test_confusion_image_graph_and_projector_are_written(logged):
    folder, dataset, result = logged
    events = EventAccumulator(str(folder / "validation"), size_guidance={"tensors": 0})
    events.Reload()
    [image] = events.Tensors("confusion_matrix")
    assert image.step == len(result.history)
    import tensorflow as tf

    width, height, encoded = tf.make_ndarray(image.tensor_proto)
    drawn = np.asarray(tf.io.decode_png(encoded))
    expected = confusion_image(result.evaluation.confusion, result.class_names)
    assert (int(width), int(height)) == (expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(drawn, expected)

    train = EventAccumulator(str(folder / "train"), size_guidance={"tensors": 0})
    train.Reload()
    assert "keras" in train.Tags()["tensors"]  # the model's config: the Graphs tab's conceptual graph
    model_json = tf.make_ndarray(train.Tensors("keras")[0].tensor_proto).item().decode()
    assert result.model.name in model_json and "head_output" in model_json

    config = text_format.Parse((folder / "validation" / "projector_config.pbtxt").read_text(),
                               projector.ProjectorConfig())
    [embedding] = config.embeddings
    vectors = np.loadtxt(folder / "validation" / embedding.tensor_path, delimiter="\t", ndmin=2)
    evaluation = result.evaluation
    assert vectors.shape == (len(evaluation.indices), 8)  # hidden_units: the classifier layer's input
    head = result.model.get_layer("head_output")
    kernel, bias = (np.asarray(w) for w in head.get_weights())
    logits = vectors @ kernel + bias
    np.testing.assert_array_equal(logits.argmax(axis=1), evaluation.probabilities.argmax(axis=1))
    rows = (folder / "validation" / embedding.metadata_path).read_text().splitlines()
    assert rows[0] == "label\tpredicted"
    assert [r.split("\t")[0] for r in rows[1:]] == [dataset.class_names[i] for i in evaluation.truth]
    sprite = Image.open(folder / "validation" / embedding.sprite.image_path)
    side = int(np.ceil(np.sqrt(len(vectors))))
    assert sprite.size == (side * THUMBNAIL, side * THUMBNAIL)
    assert list(embedding.sprite.single_image_dim) == [THUMBNAIL, THUMBNAIL]


def test_confusion_image_shades_by_share_of_the_row():
    image = confusion_image(np.array([[3, 0], [1, 1]]), ["cat", "dog"])
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert image.shape[0] == 24 + 2 * 48 + 8


def test_wide_vectors_show_fewer_images_within_the_projector_budget(tmp_path, monkeypatch):
    from tlcore.training import tensorboard

    monkeypatch.setattr(tensorboard, "PROJECTOR_VALUES", 300)
    vectors = np.arange(10 * 100, dtype=np.float32).reshape(10, 100)
    folder = tensorboard.write_projector(tmp_path, vectors, list("abcdefghij"), list("abcdefghij"), [None] * 10)
    written = np.loadtxt(folder / "embedding.tsv", delimiter="\t", ndmin=2)
    np.testing.assert_array_equal(written, vectors[:3])
    assert (folder / "metadata.tsv").read_text().splitlines()[1:] == ["a\ta", "b\tb", "c\tc"]
    assert Image.open(folder / "sprite.png").size == (2 * THUMBNAIL, 2 * THUMBNAIL)


@pytest.mark.slow
def test_tensorboard_itself_serves_the_curves_image_and_projector(logged):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    folder, _, result = logged
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(folder.parent),
               "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def get(path):
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                        return json.loads(response.read())
                except OSError:
                    assert time.monotonic() < deadline and server.poll() is None, "tensorboard did not answer"
                    time.sleep(1)

        runs = get("/data/plugin/projector/runs")
        assert runs == ["tensorboard/validation"]
        [embedding] = get("/data/plugin/projector/info?run=tensorboard/validation")["embeddings"]
        assert embedding["tensorShape"] == [len(result.evaluation.indices), 8]
        tags = get("/data/plugin/scalars/tags")
        assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(tags["tensorboard/train"])
        assert "confusion_matrix" in get("/data/plugin/images/tags")["tensorboard/validation"]
    finally:
        server.terminate()
        server.wait(30)
