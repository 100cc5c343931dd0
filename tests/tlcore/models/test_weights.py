import dataclasses
import hashlib
import http.server
import threading
import urllib.error

import h5py
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import tlcore
from tlcore.models import imagenet_files
from tlcore.models import weights as weights_module
from tlcore.models.zoo import WeightsFile


def test_status_reports_missing_then_cached_without_downloading(keras_home, monkeypatch):
    monkeypatch.setattr(imagenet_files.urllib.request, "urlopen", pytest.fail)
    status = tlcore.weights_status("VGG16")
    assert not status.cached
    assert status.path == keras_home / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    assert "about 528 MB" in status.describe() and status.file.url in status.describe()
    keras_home.mkdir(parents=True)
    status.path.write_bytes(b"x")
    assert tlcore.weights_status("VGG16").cached
    assert not tlcore.weights_status("VGG16", include_top=False).cached


@pytest.mark.slow
def test_missing_weights_offline_name_file_folder_and_url(keras_home, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(imagenet_files.urllib.request, "urlopen", offline)
    with pytest.raises(tlcore.WeightsError) as info:
        tlcore.load_backbone("MobileNetV2", include_top=False, input_shape=(32, 32, 3))
    message = str(info.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in message
    assert str(keras_home) in message
    assert "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" in message
    assert not list(keras_home.iterdir())  # no partial file left behind


@pytest.mark.slow
def test_cached_imagenet_file_is_loaded_from_the_keras_cache(keras_home):
    source = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3))
    keras_home.mkdir(parents=True)
    status = tlcore.weights_status("MobileNetV2", include_top=False)
    with h5py.File(status.path, "w") as handle:  # the legacy layout of Keras's real ImageNet files
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    loaded = tlcore.load_backbone("MobileNetV2", include_top=False, input_shape=(32, 32, 3))
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_local_weights_file_round_trip(tmp_path):
    source = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "mine.weights.h5"
    source.save_weights(path)
    fresh = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(32, 32, 3))
    assert not np.array_equal(fresh.get_weights()[0], source.get_weights()[0])
    loaded = tlcore.load_backbone("VGG16", weights=path, include_top=False, input_shape=(32, 32, 3))
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_weights_of_another_architecture_are_refused(tmp_path):
    other = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(tlcore.WeightsError, match="must fit vgg16.*Received: weights of another"):
        tlcore.load_backbone("VGG16", weights=path, include_top=False, input_shape=(32, 32, 3))


def test_weights_file_name_and_existence_are_checked(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"0")
    with pytest.raises(tlcore.WeightsError, match=r"must end in .weights.h5 or .h5. Received: 'w.bin'"):
        tlcore.load_backbone("VGG16", weights=tmp_path / "w.bin", include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(tlcore.WeightsError, match="must exist"):
        tlcore.load_backbone("VGG16", weights=tmp_path / "no.h5", include_top=False, input_shape=(32, 32, 3))


@pytest.fixture
def weights_server(tmp_path):
    payload = np.random.default_rng(0).bytes(3 << 20)
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "w.h5").write_bytes(payload)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=tmp_path / "served", **kw)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/w.h5", payload
    server.shutdown()


@pytest.mark.slow
def test_download_reports_progress_checks_md5_and_caches(keras_home, weights_server):
    url, payload = weights_server
    spec = dataclasses.replace(
        tlcore.BACKBONES["VGG16"],
        weights_notop=WeightsFile("served.h5", url, hashlib.md5(payload).hexdigest(), 3),
    )
    seen = []
    path = tlcore.download_weights(spec, include_top=False, progress=lambda d, t: seen.append((d, t)))
    assert path == keras_home / "served.h5" and path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload)) and len(seen) >= 3
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.slow
def test_download_with_wrong_checksum_leaves_nothing(keras_home, weights_server):
    url, _ = weights_server
    spec = dataclasses.replace(
        tlcore.BACKBONES["VGG16"], weights_notop=WeightsFile("bad.h5", url, "0" * 32, 3)
    )
    with pytest.raises(tlcore.WeightsError, match="must match Keras's checksum"):
        tlcore.download_weights(spec, include_top=False)
    assert not list(keras_home.iterdir())


# ------------------------------------------------------------ files with and without the top

def write_legacy(model, path):
    """The legacy layout of Keras's real ImageNet files (what Keras caches)."""
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


@pytest.fixture(scope="module")
def mobilenet_files(tmp_path_factory):
    """A full MobileNetV2 and one without its top, each saved in both layouts."""
    folder = tmp_path_factory.mktemp("weights")
    full = tlcore.load_backbone("MobileNetV2", weights=None, include_top=True, input_shape=(96, 96, 3))
    base = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(48, 48, 3))
    files = {"full": full, "no top": base}
    paths = {}
    for kind, model in files.items():
        stem = kind.replace(" ", "")
        paths[kind, "legacy"] = write_legacy(model, folder / f"{stem}.h5")
        model.save_weights(folder / f"{stem}.weights.h5")
        paths[kind, "keras3"] = folder / f"{stem}.weights.h5"
    return files, paths


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["legacy", "keras3"])
@pytest.mark.parametrize("kind", ["no top", "full"])
def test_a_base_takes_a_no_top_file_or_a_full_one(mobilenet_files, kind, layout):
    models, paths = mobilenet_files
    assert tlcore.models.weights.weights_file_kind("MobileNetV2", paths[kind, layout]) == kind
    loaded = tlcore.load_backbone("MobileNetV2", weights=paths[kind, layout], include_top=False,
                                  input_shape=(64, 64, 3), pooling="avg")
    expected = models[kind].get_weights()  # from a full file: the base's weights, the top's skipped
    assert len(loaded.get_weights()) < len(expected) if kind == "full" else True
    for got, want in zip(loaded.get_weights(), expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["legacy", "keras3"])
def test_predict_needs_the_full_file(mobilenet_files, layout):
    _, paths = mobilenet_files
    with pytest.raises(
        tlcore.WeightsError,
        match=r"Predict needs the full network's weights \(with its ImageNet top\); this file has no top: "
              r"'notop(\.weights)?\.h5' holds the weights of MobileNetV2 without its classifier.*"
              r"Received: a weights file without the top",
    ) as info:
        tlcore.load_backbone("MobileNetV2", weights=paths["no top", layout], include_top=True)
    assert isinstance(info.value, weights_module.NoTopWeightsError)
    full = tlcore.load_backbone("MobileNetV2", weights=paths["full", layout], include_top=True)
    assert full.output.shape[1:] == (1000,)


@pytest.mark.slow
def test_a_full_legacy_file_is_read_in_layer_order_whatever_its_layer_names(tmp_path):
    import keras

    keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3))
    other_names = keras.applications.Xception(weights=None, include_top=True, input_shape=(71, 71, 3))
    assert "conv2d" not in [l.name for l in other_names.layers]  # e.g. "conv2d_4": Keras counted on
    path = write_legacy(other_names, tmp_path / "xception_full.h5")
    base = tlcore.load_backbone("Xception", weights=path, include_top=False, input_shape=(71, 71, 3))
    assert "conv2d" in [l.name for l in base.layers]
    for got, want in zip(base.get_weights(), other_names.get_weights()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_a_file_of_neither_kind_is_refused_with_both_named(mobilenet_files):
    _, paths = mobilenet_files
    with pytest.raises(tlcore.WeightsError, match=r"must be VGG16's, with or without its top. Received: weights "
                                                  r"of another architecture or size: dataset 'Conv1"):
        weights_module.weights_file_kind("VGG16", paths["full", "legacy"])


@pytest.mark.slow
def test_mobilenet_v2_loads_the_imagenet_file_of_its_input_size(keras_home):
    keras_home.mkdir(parents=True)
    made = tlcore.load_backbone("MobileNetV2", weights=None, include_top=True, input_shape=(128, 128, 3))
    status = tlcore.weights_status("MobileNetV2", input_shape=(128, 128, 3))
    assert status.path.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128.h5"
    write_legacy(made, status.path)
    assert not tlcore.weights_status("MobileNetV2").cached  # the 224 file is another one
    loaded = tlcore.load_backbone("MobileNetV2", input_shape=(128, 128, 3))
    np.testing.assert_array_equal(loaded.get_weights()[0], made.get_weights()[0])
    assert loaded.name == "mobilenetv2_1.00_128"


@pytest.mark.slow
def test_a_group_keras_never_reads_is_skipped_only_in_the_layout_keras_reads_so(mobilenet_files, tmp_path):
    """An unlisted ``optimizer_weights`` group is never read from a legacy ``.h5``; the same bytes named
    ``.weights.h5`` are read by Keras 3, which never reads a group by that name either, but every
    dataset outside ``optimizer`` is checked there."""
    import shutil

    from tlcore.models.weights_probe import weights_file_problem

    models, paths = mobilenet_files
    legacy = tmp_path / "full.h5"
    shutil.copy(paths["full", "legacy"], legacy)
    with h5py.File(legacy, "a") as handle:
        handle.create_dataset("optimizer_weights/huge", shape=(400_000_000,), dtype="f4")  # nothing stored
    assert weights_file_problem(legacy, models["full"]) is None  # not in layer_names: Keras never reads it
    loaded = tlcore.load_backbone("MobileNetV2", weights=legacy, include_top=True, input_shape=(96, 96, 3))
    np.testing.assert_array_equal(loaded.get_weights()[-2], models["full"].get_weights()[-2])
    renamed = tmp_path / "full.weights.h5"
    shutil.copy(legacy, renamed)
    assert "dataset 'optimizer_weights/huge' declares shape (400000000,)" in weights_file_problem(
        renamed, models["full"])
    with open(legacy, "rb") as handle:  # a file object is a .keras member: the Keras 3 layout, unless told
        assert weights_file_problem(handle, models["full"]) is not None
        assert weights_file_problem(handle, models["full"], legacy=True) is None
