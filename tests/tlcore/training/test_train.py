import threading

import keras
import numpy as np
import pytest

import tlcore
from tlcore.training.train import TrainingData, evaluate_images, frozen_split


@pytest.fixture(scope="module")
def shapes():
    return tlcore.sample_dataset(per_class=24, size=32, seed=0)


def vgg(**changes):
    values = dict(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16, dropout=0.0)
    return tlcore.TransferSpec(**{**values, **changes})


@pytest.mark.slow
def test_loss_goes_down_on_the_sample_dataset(shapes):
    """Everything that decides the result is pinned by the seed, whatever ran before in this process.

    (The cause of a failure seen only on fresh runs: a cached helper model used for
    shape checks drew initializer seeds the first time it was built, so a model's
    starting weights depended on which tests had run before. Measured over seeds
    0-2, this run ends at 0.59-0.68 of its first loss.)
    """
    epochs = []
    spec = vgg(trainable_from="all", hidden_units=64)
    result = tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=6, batch_size=16, learning_rate=1e-4, seed=1),
                          on_epoch=epochs.append)
    loss = result.history["loss"].tolist()
    assert len(loss) == 6 and loss[-1] < 0.8 * loss[0]
    assert [len(h) for h in epochs] == [1, 2, 3, 4, 5, 6]
    assert result.spec.num_classes == 4 and result.model.output.shape[-1] == 4
    assert set(result.history.columns) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.slow
def test_stop_after_the_first_epoch_keeps_one_epoch(shapes):
    stop = threading.Event()
    batches = []

    def on_epoch(history):
        stop.set()

    result = tlcore.train(vgg(), shapes, tlcore.TrainConfig(epochs=5, batch_size=16),
                          on_batch=batches.append, on_epoch=on_epoch, stop=stop)
    assert result.stopped and len(result.history) == 1 and result.history["complete"].all()
    assert batches[-1].epoch == 1 and batches[-1].batch == batches[-1].batches
    assert result.evaluation.confusion.sum() == 20  # 4 classes x 5 held out, still evaluated


@pytest.mark.slow
def test_stop_mid_epoch_stops_at_the_next_batch(shapes):
    stop = threading.Event()
    seen = []

    def on_batch(progress):
        seen.append(progress)
        if progress.epoch == 2 and progress.batch == 2:
            stop.set()

    result = tlcore.train(vgg(), shapes, tlcore.TrainConfig(epochs=5, batch_size=8), on_batch=on_batch, stop=stop)
    assert seen[-1].epoch == 2 and seen[-1].batch == 2
    assert result.stopped and result.history["complete"].tolist() == [True, False]


@pytest.mark.slow
def test_feature_cache_trains_exactly_the_same_model():
    """Same data, seed and spec: the cached path gives the same weights as plain model.fit.

    (A third of the module's dataset is enough: two epochs of four shuffled batches each.)
    """
    shapes = tlcore.sample_dataset(per_class=8, size=32, seed=0)
    spec = vgg(trainable_from="block5_conv1")
    config = tlcore.TrainConfig(epochs=2, batch_size=8)
    cached = tlcore.train(spec, shapes, config)
    plain = tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=2, batch_size=8, cache_features=False))
    assert cached.feature_cache and not plain.feature_cache
    np.testing.assert_allclose(cached.history["loss"], plain.history["loss"], rtol=1e-4)
    for a, b in zip(cached.model.get_weights(), plain.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert abs(cached.evaluation.accuracy - plain.evaluation.accuracy) <= 0.05


@pytest.mark.slow
def test_frozen_split_shares_variables_and_refuses_a_skip_connection():
    model = tlcore.build_transfer_model(vgg(trainable_from="block5_conv1"))
    prefix, rest = frozen_split(model)
    assert prefix.output.shape[1:] == (2, 2, 512)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(rest(prefix(x)), model(x), rtol=1e-5, atol=1e-6)
    assert {id(v) for v in rest.trainable_weights} <= {id(v) for v in model.trainable_weights}
    resnet = tlcore.build_transfer_model(tlcore.TransferSpec(
        backbone="ResNet50", input_shape=(32, 32, 3), weights=None, trainable_from="conv5_block1_2_conv"))
    assert frozen_split(resnet) is None
    assert frozen_split(tlcore.build_transfer_model(vgg(trainable_from="all"))) is None


@pytest.mark.slow
def test_augmentation_turns_the_cache_off(shapes):
    result = tlcore.train(vgg(), shapes, tlcore.TrainConfig(epochs=1, augment=True))
    assert not result.feature_cache and len(result.history) == 1


@pytest.mark.slow
def test_second_phase_unfreezes_and_continues(shapes):
    result = tlcore.train(vgg(), shapes, tlcore.TrainConfig(epochs=1, fine_tune_from="block5_conv1",
                                                            fine_tune_epochs=1, fine_tune_learning_rate=1e-5))
    assert result.history["phase"].tolist() == ["train", "fine-tune"]
    base = result.model.get_layer("vgg16")
    assert base.get_layer("block5_conv1").trainable and not base.get_layer("block4_conv3").trainable


def test_evaluation_confusion_precision_recall():
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[10.0, -10.0], [-10.0, 10.0]]), np.zeros(2)])
    x = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype="float32")
    y = np.array([0, 0, 1, 1])
    evaluation = tlcore.evaluate(model, x, y, np.arange(4), ("a", "b"))
    assert evaluation.confusion.tolist() == [[2, 0], [1, 1]]
    np.testing.assert_allclose(evaluation.precision, [2 / 3, 1.0])
    np.testing.assert_allclose(evaluation.recall, [1.0, 0.5])
    assert evaluation.accuracy == 0.75
    wrong = evaluation.confidently_wrong()
    assert wrong[["index", "true", "predicted"]].values.tolist() == [[3, "b", "a"]]


@pytest.mark.parametrize("change,message", [
    (dict(epochs=0), "Epochs must be at least 1"),
    (dict(optimizer="adamw2"), "Optimizer must be one of"),
    (dict(learning_rate=0), "Learning rate must be between 0 and 1"),
])
def test_bad_config(shapes, change, message):
    with pytest.raises(tlcore.ConfigError, match=message):
        tlcore.train(vgg(), shapes, tlcore.TrainConfig(**change))


def test_batch_progress_fraction():
    from tlcore.training.config import BatchProgress

    assert BatchProgress("train", 1, 4, 5, 10).fraction == 5 / 40
    assert BatchProgress("train", 4, 4, 10, 10).fraction == 1.0


@pytest.mark.slow
def test_a_network_trained_from_scratch_validates_on_statistics_of_what_it_learned():
    """MobileNetV2 from random weights, everything trainable: validation must reflect what was learned.

    Before, the moving batch-norm statistics (momentum 0.999) could not catch up in a few
    dozen steps: 92% training accuracy and 25% (chance) validation accuracy on 4 classes.
    """
    shapes = tlcore.sample_dataset(per_class=32, size=48, seed=6)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(48, 48, 3), weights=None,
                               trainable_from="all", hidden_units=32, dropout=0.0)
    result = tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=8, batch_size=16, seed=0))
    assert result.recalibrated_batchnorm == 52  # every batch-norm layer of MobileNetV2
    bn = result.model.get_layer("mobilenetv2_1.00_48").get_layer("bn_Conv1")
    assert bn.momentum == pytest.approx(0.05 ** (1 / 7))  # 102 training images, 7 batches of 16 an epoch
    # each epoch validates on statistics of that epoch's weights: with momentum 0.9, 25% (chance) at every epoch
    assert result.history["val_accuracy"].max() >= 0.4, result.history["val_accuracy"].tolist()
    # measured: without recomputed statistics, 25% on both (chance); with them, 93% and 50%
    train_idx, _ = shapes.split(0.2, seed=0)
    on_training_images = evaluate_images(result.model, TrainingData(shapes, "MobileNetV2", (48, 48)), train_idx,
                                         shapes.class_names)
    assert on_training_images.accuracy >= 0.8 * result.history["accuracy"].iloc[-1]
    assert result.evaluation.accuracy >= 0.4  # above chance (0.25) on images it never saw


def test_a_notebook_run_over_the_job_memory_budget_is_refused_before_anything_is_built(shapes, monkeypatch):
    import tlcore.training.train as loop

    built = []
    monkeypatch.setattr(loop, "_assemble", lambda *args, **kwargs: built.append(args))
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "0.5")
    with pytest.raises(tlcore.BudgetError,
                       match=r"at most 0.5 GB of memory on this server \(TL_JOB_MEMORY_GB\). Received: about"):
        tlcore.train(vgg(), shapes, tlcore.TrainConfig(epochs=1))
    assert built == []
    with pytest.raises(tlcore.ShapeError, match="at least 32x32"):  # the spec too, before the budget
        tlcore.train(vgg(input_shape=(16, 16, 3)), shapes, tlcore.TrainConfig(epochs=1))
    assert built == []


@pytest.mark.slow
def test_a_spec_the_job_queue_checked_is_not_checked_again(monkeypatch):
    import tlcore.training.run_checks as checks

    calls = {"spec": 0, "memory": 0}

    def counted(name, check):
        def call(*args, **kwargs):
            calls[name] += 1
            return check(*args, **kwargs)
        return call

    monkeypatch.setattr(checks, "check_transfer_spec", counted("spec", checks.check_transfer_spec))
    monkeypatch.setattr(checks, "check_job_memory", counted("memory", checks.check_job_memory))
    small = tlcore.sample_dataset(per_class=4, size=32, seed=3)
    config = tlcore.TrainConfig(epochs=1, batch_size=8)
    assert len(tlcore.train(vgg(), small, config).history) == 1
    assert calls == {"spec": 1, "memory": 1}
    assert len(tlcore.train(vgg(), small, config, checked=True).history) == 1
    assert calls == {"spec": 1, "memory": 1}  # the queue's check stands: none here


def test_augmentation_draws_flips_rotations_and_zooms_independently():
    """One seed for the three layers drew the same numbers: every flipped image turned one way, every other the
    other way (0 of 35 flipped images turned anticlockwise, 29 of 29 unflipped ones did), and zoomed as it turned."""
    import tensorflow as tf

    from tlcore.training.train import _augmenter

    flip, rotation, zoom = _augmenter(0).layers
    images = tf.zeros((256, 8, 8, 3))
    flipped = np.asarray(flip.get_random_transformation(images, training=True)["flips"]).reshape(-1).astype(bool)
    angles = np.asarray(rotation.get_random_transformation(images, training=True)["angle"]).reshape(-1)
    zooms = np.asarray(zoom.get_random_transformation(images, training=True)["height_zoom"]).reshape(-1)
    assert 0.3 < flipped.mean() < 0.7
    assert 0.25 < (angles[flipped] > 0).mean() < 0.75 and 0.25 < (angles[~flipped] > 0).mean() < 0.75
    assert abs(np.corrcoef(angles, zooms)[0, 1]) < 0.3
