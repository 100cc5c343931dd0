import re

import keras
import numpy as np
import pytest

import tlcore


def spec(**changes):
    defaults = dict(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16, num_classes=3)
    return tlcore.TransferSpec(**{**defaults, **changes})


def test_shortest_call_builds_a_frozen_base_and_a_softmax_head():
    model = tlcore.build_transfer_model(spec())
    base = model.get_layer("vgg16")
    assert not base.trainable
    assert model.output.shape[1:] == (3,)
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalAveragePooling2D)
    assert model.get_layer("head_output").activation.__name__ == "softmax"
    assert tlcore.parameter_counts(model).trainable == (512 * 16 + 16) + (16 * 3 + 3)
    probs = model(np.zeros((2, 32, 32, 3), np.float32)).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pooling,layer,width", [("avg", keras.layers.GlobalAveragePooling2D, 512),
                                                  ("max", keras.layers.GlobalMaxPooling2D, 512),
                                                  ("flatten", keras.layers.Flatten, 4 * 512)])
def test_pooling_choices(pooling, layer, width):
    model = tlcore.build_transfer_model(spec(pooling=pooling, input_shape=(64, 64, 3)))
    assert isinstance(model.get_layer("head_pool"), layer)
    assert model.get_layer("head_pool").output.shape[-1] == width


def test_trainable_from_a_layer_and_everything():
    partial = tlcore.build_transfer_model(spec(trainable_from="block5_conv1")).get_layer("vgg16")
    flags = {l.name: l.trainable for l in partial.layers}
    assert not flags["block4_conv3"] and flags["block5_conv1"] and flags["block5_conv3"]
    whole = tlcore.build_transfer_model(spec(trainable_from=tlcore.ALL_LAYERS)).get_layer("vgg16")
    assert all(l.trainable for l in whole.layers)


@pytest.mark.slow
def test_base_trained_from_scratch_lets_batchnorm_learn():
    model = tlcore.build_transfer_model(spec(backbone="MobileNetV2", trainable_from=tlcore.ALL_LAYERS, weights=None))
    bn = next(l for l in model.get_layer("mobilenetv2_1.00_32").layers if isinstance(l, keras.layers.BatchNormalization))
    assert bn.trainable


def test_unknown_trainable_from_layer():
    expected = (r"trainable_from must be None, 'all' or a layer of VGG16's base \(e.g. 'block5_conv1'\)\. "
                r"Received: trainable_from='block9'")
    with pytest.raises(tlcore.ConfigError, match=expected):
        tlcore.check_transfer_spec(spec(trainable_from="block9"))  # checked before anything is built
    with pytest.raises(tlcore.ConfigError, match=expected):
        tlcore.build_transfer_model(spec(trainable_from="block9"))


@pytest.mark.parametrize("field, value, message", [
    ("hidden_units", "256", "Hidden units must be a whole number. Received: hidden_units='256'"),
    ("hidden_units", 2.5, "Hidden units must be a whole number. Received: hidden_units=2.5"),
    ("hidden_units", True, "Hidden units must be a whole number. Received: hidden_units=True"),
    ("num_classes", 2.5, "The number of classes must be a whole number. Received: num_classes=2.5"),
    ("pool_size", 1.5, "An average pooling window must be None or a whole number. Received: pool_size=1.5"),
    ("dropout", "0.2", "Dropout must be a number. Received: dropout='0.2'"),
    ("dropout", float("nan"), "Dropout must be a number. Received: dropout=nan"),
])
def test_a_spec_from_a_file_with_text_or_fractions_for_whole_numbers_is_refused_in_words(field, value, message):
    """A spec from ``transfer-lab train --spec`` JSON or a bundle: Keras and the range checks failed on these with
    TypeError or their own words."""
    with pytest.raises(tlcore.ConfigError, match=re.escape(message)):
        tlcore.check_transfer_spec(spec(**{field: value}))


@pytest.mark.slow
def test_pretrained_base_keeps_its_batchnorm_statistics_when_unfrozen(tmp_path):
    pretrained = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3))
    pretrained.save_weights(tmp_path / "pretrained.weights.h5")
    model = tlcore.build_transfer_model(spec(backbone="MobileNetV2", trainable_from=tlcore.ALL_LAYERS,
                                             weights=str(tmp_path / "pretrained.weights.h5")))
    bn = next(l for l in model.get_layer("mobilenetv2_1.00_32").layers if isinstance(l, keras.layers.BatchNormalization))
    before = bn.moving_mean.numpy().copy()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.train_on_batch(np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32") * 50, np.array([0, 1, 2, 0]))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_seed_48x48_head_with_a_4x4_pool_is_refused_with_the_smallest_input():
    with pytest.raises(
        tlcore.ShapeError,
        match=r"average pooling of 4x4 must fit .* VGG16 at 48x48 leaves 1x1x512\. The smallest input that works is 128x128",
    ):
        tlcore.build_transfer_model(spec(input_shape=(48, 48, 3), pool_size=4))
    model = tlcore.build_transfer_model(spec(input_shape=(128, 128, 3), pool_size=4, pooling="flatten"))
    assert model.get_layer("head_pool").output.shape[-1] == 512


@pytest.mark.parametrize("change,message", [
    (dict(pooling="mean"), "Pooling must be one of"),
    (dict(num_classes=1), "at least 2 classes"),
    (dict(dropout=1.0), "Dropout must be from 0"),
    (dict(hidden_units=-1), "Hidden units must be 0 or more"),
])
def test_bad_choices(change, message):
    with pytest.raises(tlcore.ConfigError, match=message):
        tlcore.build_transfer_model(spec(**change))


def test_input_too_small_is_explained_before_keras_fails():
    with pytest.raises(tlcore.ShapeError, match="at least 32x32 for VGG16"):
        tlcore.build_transfer_model(spec(input_shape=(16, 16, 3)))


@pytest.mark.slow
def test_trainable_from_a_layer_keras_names_itself_holds_in_the_next_build():
    choices = tlcore.trainable_from_choices("Xception")
    assert "conv2d" in choices  # the residual convolutions Keras names itself, as in a fresh process
    keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3))  # Keras counts on
    assert tlcore.trainable_from_choices("Xception") == choices
    model = tlcore.build_transfer_model(spec(backbone="Xception", input_shape=(71, 71, 3), trainable_from="conv2d_3"))
    flags = {l.name: l.trainable for l in model.get_layer("xception").layers}
    assert flags["conv2d_3"] and not flags["conv2d_2"]
