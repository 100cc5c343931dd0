"""Grad-CAM: the heat lies where the evidence is, for plain, nested (run) and uploaded models; clear errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from streamlit.testing.v1 import AppTest
from support import APP, image_bytes, open_page

import tlcore

SIDE = 40
CORNER = slice(0, SIDE // 2)  # the top-left quadrant, where the bright square is


def squares(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dark noise; label 1 images have an 8x8 white square somewhere in the top-left quadrant."""
    x = rng.integers(0, 90, (count, SIDE, SIDE, 3)).astype(np.float32)
    y = np.arange(count) % 2
    for i in np.flatnonzero(y):
        row, col = rng.integers(1, SIDE // 2 - 9, 2)
        x[i, row:row + 8, col:col + 8] = 255
    return x, y


@pytest.mark.slow
def test_the_heat_of_a_bright_square_detector_lies_in_the_squares_corner():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x, y = squares(192, rng)
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv"),
        keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    held_out, truth = squares(12, rng)
    assert (model.predict(held_out, verbose=0).argmax(axis=1) == truth).mean() >= 0.9  # it learned the square

    assert tlcore.last_conv_layer(model) == "last_conv"  # found: no registry row for this model
    for image in held_out[truth == 1]:
        heat = tlcore.grad_cam(model, image, 1)  # an array of 0..255, no preprocessing
        assert heat.shape == (SIDE, SIDE) and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
        assert heat[CORNER, CORNER].sum() / heat.sum() > 0.5  # most of the heat is in the square's quadrant
        peak = np.unravel_index(heat.argmax(), heat.shape)
        assert peak[0] < SIDE // 2 and peak[1] < SIDE // 2
    overlay = tlcore.heat_overlay(held_out[truth == 1][0], heat)
    assert overlay.size == (SIDE, SIDE) and overlay.mode == "RGB"
    hot = np.asarray(overlay, dtype=int)[peak]
    assert hot[0] > hot[2] + 40  # the hottest place is drawn red, not blue


@pytest.fixture(scope="module")
def run_id() -> str:
    """A VGG16 run trained here (untrained base, 48x48), stored in the app's run store."""
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    dataset = tlcore.sample_dataset(per_class=6, size=48, seed=5)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(48, 48, 3), weights=None, hidden_units=8)
    result = tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=1, batch_size=8, validation_fraction=0.5))
    run = store.create(result.spec, result.config, dataset.summary(), name="grad-cam run")
    store.finish(run, result)
    return run


def reference_cam(model: keras.Model, x: np.ndarray, layer: str, class_index: int) -> np.ndarray:
    """Grad-CAM written out by hand for a transfer model: the base cut at ``layer``, the head's logits."""
    base, head = tlcore.base_and_head(model)
    cut = keras.Model(base.input, [base.get_layer(layer).output, base.output])
    with tf.GradientTape() as tape:
        feature_map, features = cut(x, training=False)
        tape.watch(feature_map)
        for part in head[:-1]:
            features = part(features, training=False)
        logits = tf.linalg.matmul(features, head[-1].kernel) + head[-1].bias  # before the softmax
        score = logits[:, class_index] - tf.reduce_mean(logits, axis=1)  # less what every class shares
    weights = tf.reduce_mean(tape.gradient(score, feature_map), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[0, ..., 0].numpy()
    return cam / cam.max() if cam.max() > 0 else cam


@pytest.mark.slow
def test_a_trained_runs_model_gets_a_map_from_its_nested_base(run_id):
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    model = store.load_model(run_id)  # as the app loads it: a .keras file, the base nested inside
    assert tlcore.last_conv_layer(model, "VGG16") == "block5_conv3"  # the registry's row
    assert tlcore.last_conv_layer(model) == "block5_conv3"  # found inside the base (block5_pool is 1x1)
    assert tlcore.cam_map_size(model) == (3, 3)
    picture = image_bytes((64, 64), seed=3)
    x = tlcore.inference.predict.prepare_input(picture, model, backbone="VGG16")
    before = model(x, training=False).numpy()
    for class_index in (0, 3):
        heat = tlcore.grad_cam(model, picture, class_index, backbone="VGG16")
        assert heat.shape == (48, 48) and heat.dtype == np.float32 and 0 <= heat.min() <= heat.max() <= 1
        np.testing.assert_allclose(heat, reference_cam(model, x, "block5_conv3", class_index), atol=1e-4)
    assert heat.max() == pytest.approx(1.0)
    assert np.array_equal(model(x, training=False).numpy(), before)  # the model is not changed
    assert len(model.layers) == 7 and len(model.outputs) == 1


def test_bad_class_index_layer_and_models_without_a_spatial_layer_are_explained():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(name="pool"),
                              keras.layers.Dense(3, activation="softmax")])
    picture = image_bytes((32, 32))
    with pytest.raises(tlcore.ConfigError, match=r"Class index must be between 0 and 2\. Received: class_index=3"):
        tlcore.grad_cam(model, picture, 3)
    with pytest.raises(tlcore.ConfigError, match="Received: class_index=-1"):
        tlcore.grad_cam(model, picture, -1)
    with pytest.raises(tlcore.ConfigError, match="Received: class_index=True"):
        tlcore.grad_cam(model, picture, True)
    with pytest.raises(tlcore.ConfigError,
                       match=r"layer must be a layer of .* \(e\.g\. 'conv'\)\. Received: layer='nope'"):
        tlcore.grad_cam(model, picture, 0, layer="nope")
    with pytest.raises(tlcore.ConfigError, match=r"spatial \(4-D\) output.*Received: layer='pool' with output "
                                                 r"shape \(None, 4\)"):
        tlcore.grad_cam(model, picture, 0, layer="pool")
    dense = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(tlcore.ConfigError, match="needs a convolutional layer .* Received: model .* which has none"):
        tlcore.grad_cam(dense, picture, 0)
    with pytest.raises(tlcore.ImageError, match="Received: shape"):
        tlcore.grad_cam(model, np.zeros((4, 32, 32, 3)), 0)
    assert tlcore.grad_cam(model, picture, 2, layer="conv").shape == (32, 32)  # and a good call works


@pytest.mark.slow
def test_predict_shows_the_heatmap_of_a_chosen_class_for_an_uploaded_model(tmp_path):
    keras.utils.set_random_seed(2)
    model = tlcore.build_transfer_model(tlcore.TransferSpec(
        backbone="MobileNetV2", input_shape=(64, 64, 3), weights=None, hidden_units=4, num_classes=3))
    model.save(tmp_path / "mine.keras")
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_model="uploaded",
                   model_classes="red, green, blue")
    at.file_uploader(key="model_file").set_value(  # the sample image is classified
        ("mine.keras", (tmp_path / "mine.keras").read_bytes(), "application/octet-stream")).run()
    assert not at.exception and not at.error
    assert "Where the network looks" in [h.value for h in at.subheader]
    table = at.table[0].value
    assert set(table["label"]) == {"red", "green", "blue"}
    picker = next(box for box in at.selectbox if box.label == "Heatmap for")  # its key names the top-5
    rows = zip(table["rank"], table["label"], table["probability"])
    assert picker.options == [f"{rank}. {label} ({p:.1%})" for rank, label, p in rows]
    assert picker.value == int(table["class_id"].iloc[0])  # the top-1 first
    heatmap = at.image[-1]
    assert heatmap.captions == [f"Heat for {table['label'].iloc[0]} over what the network sees"]
    explained = " ".join(c.value for c in at.caption)
    assert "layer `out_relu`, a 2x2 map stretched over the 64x64 input" in explained  # the registry's layer

    picker.set_value(int(table["class_id"].iloc[2])).run()
    assert not at.exception
    assert at.image[-1].captions == [f"Heat for {table['label'].iloc[2]} over what the network sees"]
    assert at.image[-1].value != heatmap.value  # another class, another picture


@pytest.mark.slow
def test_the_run_page_shows_the_wrong_images_heatmaps_on_demand(run_id):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("../pages/runs.py").run()
    at.selectbox(key="opened_run").set_value(run_id).run()
    wrong = tlcore.RunStore(tlcore.load_settings().data_dir / "runs").get(run_id).result.confidently_wrong
    assert wrong  # an untrained base after one epoch gets some wrong
    shown = len(at.image)
    at.toggle(key=f"cam-{run_id}").set_value(True).run()
    assert not at.exception
    assert len(at.image) == shown + min(len(wrong), 8)  # one heatmap under each wrong image
    assert any("read at layer `block5_conv3`, a 3x3 map" in c.value for c in at.caption)


def test_the_score_is_read_before_the_softmax_whether_a_layer_or_an_activation():
    keras.utils.set_random_seed(3)
    conv, dense = keras.layers.Conv2D(6, 3, name="conv"), keras.layers.Dense(3, name="scores")
    layers = [keras.Input((32, 32, 3)), conv, keras.layers.GlobalAveragePooling2D(), dense]
    with_layer = keras.Sequential([*layers, keras.layers.Softmax()])
    as_activation = keras.Sequential([*layers[:-1], keras.layers.Dense(3, activation="softmax")])
    as_activation.layers[-1].set_weights(dense.get_weights())
    activation_layer = keras.Sequential([  # Keras's advice for mixed precision: the softmax as its own layer
        keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3),
        keras.layers.Activation("softmax")])
    activation_layer.set_weights(with_layer.get_weights())
    picture = image_bytes((32, 32), seed=9)
    for class_index in range(3):
        heat = tlcore.grad_cam(with_layer, picture, class_index)
        np.testing.assert_allclose(heat, tlcore.grad_cam(as_activation, picture, class_index), atol=1e-5)
        np.testing.assert_allclose(heat, tlcore.grad_cam(activation_layer, picture, class_index), atol=1e-5)
    assert heat.max() == pytest.approx(1.0)


def test_a_confident_softmax_activation_layer_still_has_heat():
    """Read after an ``Activation("softmax")``, a confident class's score had no gradient left: an empty map."""
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv", kernel_initializer="ones"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="scores"),
                              keras.layers.Activation("softmax")])
    model.get_layer("scores").set_weights([np.tile([[50.0, -50.0, -50.0]], (4, 1)), np.zeros(3)])
    picture = Image.new("RGB", (32, 32), "white")  # every convolution sees 27 ones: class a at 100%
    assert tlcore.predict_top_k(model, picture, backbone="MobileNetV2", k=1, labels=["a", "b", "c"])[
        "probability"].iloc[0] == pytest.approx(1.0)
    heat = tlcore.grad_cam(model, picture, 0)
    assert heat.max() == pytest.approx(1.0) and (heat > 0).mean() > 0.5
