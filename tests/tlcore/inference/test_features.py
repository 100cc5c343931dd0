import keras
import numpy as np
import pytest
from support import image_bytes

import tlcore


@pytest.fixture(scope="module")
def vgg16_fc2():
    return tlcore.feature_extractor("VGG16", weights=None)


@pytest.mark.slow
def test_vgg16_without_its_output_layer_gives_4096_values(vgg16_fc2):
    assert vgg16_fc2.output.shape[1:] == (4096,)
    assert vgg16_fc2.layers[-1].name == "fc2"
    images = [image_bytes((60, 40), seed=i) for i in range(3)]
    seen = []
    features = tlcore.extract_features(vgg16_fc2, images, backbone="VGG16", batch_size=2,
                                       progress=lambda d, t: seen.append((d, t)))
    assert features.shape == (3, 4096) and features.dtype == np.float32
    assert seen == [(2, 3), (3, 3)]
    assert not np.allclose(features[0], features[1])
    single = tlcore.extract_features(vgg16_fc2, images[1:2], backbone="VGG16")
    np.testing.assert_allclose(single[0], features[1], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_chosen_layer_is_flattened():
    extractor = tlcore.feature_extractor("MobileNetV2", weights=None, layer="out_relu")
    features = tlcore.extract_features(extractor, [image_bytes()], backbone="MobileNetV2")
    assert features.shape == (1, 7 * 7 * 1280)


@pytest.mark.slow
def test_default_penultimate_layer_for_each_family():
    assert tlcore.feature_extractor("MobileNetV2", weights=None).output.shape[1:] == (1280,)
    assert tlcore.feature_extractor("ResNet50", weights=None).output.shape[1:] == (2048,)


@pytest.mark.slow
def test_unknown_layer():
    with pytest.raises(tlcore.ConfigError, match="Feature layer must be a layer of VGG16.*Received: layer='fc9'"):
        tlcore.feature_extractor("VGG16", weights=None, layer="fc9")


def test_project_2d_separates_two_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (10, 50))
    b = rng.normal(8, 1, (10, 50))
    points = tlcore.project_2d(np.vstack([a, b]))
    assert points.shape == (20, 2)
    assert np.sign(points[:10, 0]).tolist().count(np.sign(points[0, 0])) == 10
    assert np.all(np.sign(points[10:, 0]) == -np.sign(points[0, 0]))
    assert tlcore.project_2d(np.ones((1, 5))).shape == (1, 2)


@pytest.mark.slow
def test_a_no_top_weights_file_serves_a_cut_inside_the_base_and_is_refused_for_fc2(tmp_path):
    base = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(path)
    extractor = tlcore.feature_extractor("VGG16", weights=str(path), layer="block5_pool")
    assert extractor.output.shape[1:] == (7, 7, 512)
    np.testing.assert_array_equal(extractor.get_layer("block1_conv1").get_weights()[0],
                                  base.get_layer("block1_conv1").get_weights()[0])
    with pytest.raises(tlcore.WeightsError, match="needs the full network's weights"):
        tlcore.feature_extractor("VGG16", weights=str(path))  # fc2 is in the top


def test_a_layer_inside_the_base_is_cut_from_the_full_imagenet_file(keras_home, monkeypatch):
    """Features at `out_relu` asked for ImageNet's separate no-top file: a second download online (VGG16:
    58 MB more), a refusal offline with the full file, which holds those weights too, cached."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    status = tlcore.weights_status("MobileNetV2")
    assert str(status.path).startswith(str(keras_home.parent))  # this test's own, empty cache
    status.path.parent.mkdir(parents=True, exist_ok=True)
    full = tlcore.load_backbone("MobileNetV2", weights=None, seed=5)
    with h5py.File(status.path, "w") as handle:  # the full network's file only, as Keras caches it
        legacy_h5_format.save_weights_to_hdf5_group(handle, full)
    import gc
    import weakref

    from tlcore.inference import features

    built, load = [], features.load_backbone
    monkeypatch.setattr(features, "load_backbone",
                        lambda *a, **k: (m := load(*a, **k), built.append(weakref.ref(m.layers[-1])))[0])
    extractor = tlcore.feature_extractor("MobileNetV2", weights="imagenet", layer="out_relu")
    gc.collect()
    # the full network's last layer (its 1,000-class top) is let go; the base's last layer lives in the extractor
    assert [ref() is None for ref in built] == [True, False]
    picture = np.random.default_rng(1).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    expected = keras.Model(full.input, full.get_layer("out_relu").output)(picture)
    np.testing.assert_allclose(extractor(picture), expected, rtol=1e-5, atol=1e-5)
    assert [p.name for p in status.path.parent.iterdir()] == [status.path.name]  # no other file was fetched
