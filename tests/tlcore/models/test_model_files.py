import io
import json
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
from PIL import Image

import tlcore


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model = tlcore.build_transfer_model(tlcore.TransferSpec(
        backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8, num_classes=3))
    path = folder / "transfer.keras"
    model.save(path)
    return model, path


@pytest.mark.slow
def test_a_transfer_model_loads_and_predicts_the_same(saved):
    model, path = saved
    loaded = tlcore.load_model_file(path)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)


def test_lambda_model_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(tlcore.ModelFileError, match="no Lambda layers.*Received: a Lambda layer"):
        tlcore.load_model_file(tmp_path / "lambda.keras")


@pytest.mark.slow
def test_a_function_from_outside_keras_never_runs(saved, tmp_path, monkeypatch):
    """A crafted config names a non-Keras function; the canary it would write never appears."""
    canary = tmp_path / "canary.txt"
    (tmp_path / "canary_module.py").write_text(
        f"from pathlib import Path\nPath({str(canary)!r}).write_text('ran')\n"
        "def make_canary(x):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _, path = saved
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    text = json.dumps(config).replace(
        '"activation": "softmax"',
        '"activation": {"module": "canary_module", "class_name": "function", "config": "make_canary", '
        '"registered_name": "function"}',
    )
    assert "canary_module" in text
    members["config.json"] = text.encode()
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(crafted, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(tlcore.ModelFileError, match="Received: the custom object 'function'|from 'canary_module'"):
        tlcore.load_model_file(crafted)
    assert not canary.exists() and "canary_module" not in sys.modules


def test_custom_registered_object_is_refused():
    config = {"module": None, "class_name": "MyLayer", "config": {}, "registered_name": "mypackage>MyLayer"}
    with pytest.raises(tlcore.ModelFileError, match="custom object 'mypackage>MyLayer'"):
        tlcore.check_model_config({"layers": [config]})


def _keras_layer_calls(model: keras.Model) -> tuple[int, int]:
    """(the calls ``check_model_config`` counts for ``model``'s config, the ``Layer.__call__`` calls Keras makes
    building it from that config with shapes only)."""
    from tlcore.models.model_files import _layer_calls
    from tlcore.models.scopes import shapes_only

    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    counted, made = _layer_calls(config)[0], [0]
    call = keras.layers.Layer.__call__

    def counting(self, *args, **kwargs):
        made[0] += 1
        return call(self, *args, **kwargs)

    keras.layers.Layer.__call__ = counting
    try:
        with shapes_only():
            keras.saving.deserialize_keras_object(config, safe_mode=True)
    finally:
        keras.layers.Layer.__call__ = call
    return counted, made[0]


def test_the_layer_calls_counted_are_the_calls_keras_makes():
    """Keras 3.15 builds a Sequential again each time from_config adds a layer: quadratic (503 layers took 35 s
    of CPU here); a functional model calls a layer once per node of its graph."""
    stack = keras.Sequential([keras.Input((4,)), *(keras.layers.Dense(4) for _ in range(30))])
    assert _keras_layer_calls(stack) == (465, 465)  # 1 + 2 + ... + 30
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Dense(3)
    once = shared(inputs)
    assert _keras_layer_calls(keras.Model(inputs, keras.layers.Add()([once, shared(once)]))) == (3, 3)
    # a model inside: Keras calls it as one layer, but works out its output through each of its layers
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3)(inputs)))
    wrapped = keras.Sequential([base, keras.layers.Dense(4), keras.layers.Dense(2)])
    wrapped.build((None, 8, 8, 3))
    counted, made = _keras_layer_calls(wrapped)
    assert (counted, made) == (11, 8)  # base built (2), then added layers 1, 2, 3 ask base's 2 layers each time


def test_a_model_too_costly_to_build_is_refused_before_keras_builds_any(tmp_path, monkeypatch):
    """A 9 MB config of 16,000 layers cost 13 s of the server's CPU before its refusal, a Sequential of 503
    layers 35 s: now the calls are counted first."""
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4),
                      keras.layers.Dense(2, activation="softmax")]).save(tmp_path / "six.keras")  # 1 + 2 + 3 calls
    monkeypatch.setenv("TL_MAX_MODEL_LAYERS", "6")
    assert len(tlcore.load_model_file(tmp_path / "six.keras").layers) == 4  # loaded as functional: input + 3
    monkeypatch.setenv("TL_MAX_MODEL_LAYERS", "5")
    built = []
    monkeypatch.setattr(keras.saving, "deserialize_keras_object", lambda *a, **k: built.append(a))
    with pytest.raises(tlcore.ModelFileError) as refused:
        tlcore.load_model_file(tmp_path / "six.keras")
    assert str(refused.value) == (
        "A model file may take at most 5 layer calls to build on this server (TL_MAX_MODEL_LAYERS: each layer "
        "once for each call in the model's graph). Received: 6 in its config.json. Keras builds a Sequential model "
        "again each time it adds a layer while loading it: saved as a functional model (keras.Model(inputs, "
        "outputs)), its layers count once.")
    assert built == []
    assert tlcore.load_settings({}).max_model_layers == 6_000


@pytest.mark.parametrize("depth", [101, 900])
def test_a_config_nested_too_deep_is_refused_in_words(tmp_path, depth):
    """Refused in words before Keras sees it (Keras failed on these with "'list' object is not a mapping"); the
    walk keeps its own stack, so how deep the caller's is does not matter."""
    crafted = tmp_path / "deep.keras"
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("config.json", "[" * (depth - 1) + "{}" + "]" * (depth - 1))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(tlcore.ModelFileError, match=r"^A model file's config\.json may nest at most 100 levels deep\. "
                                                    r"Received: one nested deeper than that$"):
        tlcore.load_model_file(crafted)
    tlcore.check_model_config(json.loads("[" * 99 + "{}" + "]" * 99))  # 100 deep: allowed


def test_legacy_h5_and_non_archives_are_refused(tmp_path):
    legacy = tmp_path / "old.h5"
    with h5py.File(legacy, "w") as handle:
        handle.attrs["model_config"] = "{}"
    with pytest.raises(tlcore.ModelFileError, match="legacy HDF5"):
        tlcore.load_model_file(legacy)
    text = tmp_path / "model.keras"
    text.write_text("not a model")
    with pytest.raises(tlcore.ModelFileError, match="must be a .keras archive"):
        tlcore.load_model_file(text)


@pytest.mark.slow
def test_develop_a_model_reuses_a_saved_base(saved):
    model, path = saved
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), base_model=str(path),
                               hidden_units=4, num_classes=5)
    target = tlcore.build_transfer_model(spec)
    assert target.output.shape[-1] == 5
    source_base, _ = tlcore.base_and_head(model)
    new_base, _ = tlcore.base_and_head(target)
    for a, b in zip(source_base.get_weights(), new_base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not new_base.trainable
    with pytest.raises(tlcore.ShapeError, match="keeps the input size it was trained at: 32x32"):
        tlcore.build_transfer_model(tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(64, 64, 3),
                                                        base_model=str(path)))


@pytest.mark.slow
def test_a_sequential_model_file_predicts_and_explains_like_the_model_saved(tmp_path):
    """A Sequential read back has no ``input``; it is served as a functional model over the same layers."""
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path / "sequential.keras"
    model.save(path)
    loaded = tlcore.load_model_file(path)
    assert tlcore.model_input_size(loaded) == (32, 32)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, "PNG")
    table = tlcore.predict_top_k(loaded, encoded.getvalue(), backbone="VGG16", k=3, labels=["a", "b", "c"])
    expected = model.predict(tlcore.get_backbone("VGG16").preprocess(image[None].astype("float32")), verbose=0)[0]
    assert np.allclose(table.sort_values("class_id")["probability"], expected, atol=1e-5)
    heat = tlcore.grad_cam(loaded, encoded.getvalue(), int(table["class_id"][0]), backbone="VGG16")
    assert heat.shape == (32, 32) and 0 <= heat.min() and heat.max() <= 1


@pytest.mark.slow
def test_an_uploaded_model_is_stored_by_content_and_loads_from_the_store(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    model, path = saved
    stored = tlcore.store_model_upload(path.read_bytes(), "My Model.keras", owner="ann")
    assert stored.parent == tmp_path / "data" / "uploads" and stored.suffix == ".keras"
    assert "My Model" not in str(stored)  # the visitor's name is recorded, never a path
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(tlcore.load_model_file(stored)(x), model(x), rtol=1e-5, atol=1e-6)
    assert tlcore.list_uploads()[["name", "kind", "owner"]].values.tolist() == [["My Model.keras", "model", "ann"]]


@pytest.mark.parametrize("filename,suffix,kind", [
    ("net.keras", ".keras", "model"), ("NET.KERAS", ".keras", "model"), ("w.weights.h5", ".weights.h5", "weights"),
    ("vgg16_notop.h5", ".h5", "weights"), ("a/b/../w.H5", ".h5", "weights"),
])
def test_an_upload_keeps_the_ending_keras_reads(filename, suffix, kind):
    assert tlcore.upload_kind(filename) == (suffix, kind)


@pytest.mark.parametrize("filename,data,message", [
    ("model.pkl", b"x", r"must be named \*\.keras, \*\.weights\.h5 or \*\.h5\. Received: 'model\.pkl'"),
    ("model.keras.exe", b"x", r"Received: 'model\.keras\.exe'"),
    ("", b"x", r"Received: ''"),
    ("empty.keras", b"", r"An uploaded model file must not be empty\. Received: 'empty\.keras', 0 bytes"),
])
def test_an_upload_of_another_kind_or_empty_is_refused_and_nothing_is_written(filename, data, message, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(tlcore.ModelFileError, match=message):
        tlcore.store_model_upload(data, filename)
    assert not (tmp_path / "data").exists()
