import inspect

import keras
import numpy as np
import pytest

import tlcore
from tlcore.models.zoo import get_backbone

NAMES = list(tlcore.BACKBONES)


def test_registry_has_the_eight_required_backbones():
    assert {"VGG16", "VGG19", "ResNet50", "MobileNetV2", "EfficientNetB0",
            "InceptionV3", "Xception", "DenseNet121"} <= set(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_backbone_builds_at_its_minimum_size(name):
    spec = tlcore.BACKBONES[name]
    size = spec.min_size
    model = tlcore.load_backbone(name, weights=None, include_top=False, input_shape=(size, size, 3))
    out = model(np.zeros((1, size, size, 3), np.float32))
    assert out.shape[1:3] == (1, 1) or min(out.shape[1:3]) >= 1
    assert tuple(out.shape[1:]) == tlcore.feature_map_shape(name, (size, size))
    last_conv = model.get_layer(spec.last_conv_layer).output.shape
    assert len(last_conv) == 4 and last_conv[-1] == out.shape[-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_feature_layer_is_the_penultimate_layer(name):
    spec = tlcore.BACKBONES[name]
    full = spec.constructor(weights=None)
    assert full.layers[-1].output.shape[-1] == 1000
    if spec.feature_layer:
        index = [l.name for l in full.layers].index(spec.feature_layer)
        assert index >= len(full.layers) - 3  # the head's pooling/dropout, then predictions
    assert full.input.shape[1] == spec.default_size


@pytest.mark.parametrize("name", NAMES)
def test_weights_files_are_the_ones_keras_downloads(name):
    spec = tlcore.BACKBONES[name]
    source = inspect.getsource(inspect.getmodule(spec.constructor))
    sized = [file for _, top, notop in spec.sized_weights for file in (top, notop)]
    for file in (spec.weights_top, spec.weights_notop, *sized):
        assert file.url.endswith(file.file_name)
        # Keras builds some names with f-strings; its checksum, or the name's stem, is in its source.
        assert (file.md5 or file.file_name.split("_1.0_")[0]) in source


def test_preprocessing_differs_by_family():
    pixels = np.full((1, 4, 4, 3), 255.0, np.float32)
    vgg = get_backbone("VGG16").preprocess(pixels.copy())
    mobilenet = get_backbone("MobileNetV2").preprocess(pixels.copy())
    efficientnet = get_backbone("EfficientNetB0").preprocess(pixels.copy())
    densenet = get_backbone("DenseNet121").preprocess(pixels.copy())
    np.testing.assert_allclose(vgg[0, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68], rtol=1e-5)
    np.testing.assert_allclose(mobilenet, 1.0)
    np.testing.assert_allclose(efficientnet, 255.0)
    np.testing.assert_allclose(densenet[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], rtol=1e-4)


def test_unknown_backbone_lists_the_names():
    with pytest.raises(KeyError, match="Backbone must be one of VGG16.*Received: 'VGG17'"):
        get_backbone("VGG17")


@pytest.mark.slow
def test_adding_a_row_is_all_it_takes(monkeypatch):
    import dataclasses
    from types import MappingProxyType

    import tlcore.models.zoo as zoo

    row = dataclasses.replace(
        zoo.BACKBONES["MobileNetV2"], name="TinyMobileNet",
        application=lambda **kw: keras.applications.MobileNetV2(alpha=0.35, **kw),
    )
    monkeypatch.setattr(zoo, "BACKBONES", MappingProxyType({**zoo.BACKBONES, row.name: row}))
    model = tlcore.load_backbone("TinyMobileNet", weights=None, include_top=False, input_shape=(32, 32, 3))
    assert model.output.shape[1:] == (1, 1, 1280)


def test_mobilenet_v2_has_a_weights_file_per_input_size():
    spec = tlcore.BACKBONES["MobileNetV2"]
    assert spec.imagenet_top_sizes == (96, 128, 160, 192, 224)
    assert spec.weights_file(True, (128, 128, 3)).file_name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128.h5"
    assert spec.weights_file(False, (96, 96, 3)).file_name.endswith("_1.0_96_no_top.h5")
    assert spec.weights_file(False, (100, 100, 3)) == spec.weights_file(False) == spec.weights_notop
    assert tlcore.BACKBONES["VGG16"].imagenet_top_sizes == (224,)


@pytest.mark.slow
def test_layer_names_are_the_same_in_every_build():
    from tlcore.models.zoo import build_architecture

    first = [l.name for l in build_architecture("InceptionV3", include_top=False, input_shape=(75, 75, 3)).layers]
    keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3))  # Keras counts on
    second = [l.name for l in build_architecture("InceptionV3", include_top=False, input_shape=(75, 75, 3)).layers]
    assert first == second and first[1] == "conv2d"


@pytest.mark.slow
def test_efficientnet_for_imagenet_weights_has_keras_s_extra_rescaling():
    from tlcore.models.zoo import build_architecture

    plain = build_architecture("EfficientNetB0", include_top=False, input_shape=(32, 32, 3))
    imagenet = build_architecture("EfficientNetB0", imagenet=True, include_top=False, input_shape=(32, 32, 3))
    assert [l.name for l in imagenet.layers[:4]] == ["input_layer", "rescaling", "normalization", "rescaling_1"]
    assert len(imagenet.layers) == len(plain.layers) + 1
    assert imagenet.count_params() == plain.count_params()
