"""Inference precision: the TL_PRECISION setting, the bfloat16 copy's accuracy, the calibration and its cache."""

import dataclasses
import gc
import json
import threading
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlcore
from tlcore.data.pipeline import image_batches
from tlcore.inference import calibration as tc
from tlcore.inference import precision as tp
from tlcore.inference import precision_setting
from tlcore.inference import verdicts as tv
from tlcore.inference.bfloat16 import bfloat16_clone
from tlcore.inference.forward import _COMPILED, compiled_forward
from tlcore.training.feature_cache import FeatureCache, cache_key
from tlcore.training.train import frozen_split

TOP1_AGREEMENT = 0.95
"""Held-out images whose top-1 class must be the same in bfloat16 (measured here: 1.0)."""
MAX_PROBABILITY_ERROR = 0.02
"""Largest allowed |p_bfloat16 - p_float32| of any class (measured here: about 0.005)."""
MIN_FEATURE_COSINE = 0.99
"""Lowest allowed cosine similarity of a feature vector with its float32 twin (measured: above 0.9999)."""


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A data folder of its own (so verdicts start empty), TL_PRECISION=auto, and a CPU that reports bfloat16
    units, so ``auto`` measures on every machine: TensorFlow computes bfloat16 on any CPU (without the units,
    slowly), so the measurement is real and its verdict follows the rule. A test of a CPU without them says so."""
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TL_PRECISION", "auto")
    monkeypatch.setattr(tp, "bfloat16_units", lambda: True)
    monkeypatch.setattr(precision_setting, "bfloat16_units", lambda: True)
    tv._KNOWN.clear()
    yield tmp_path / "data" / "precision"
    tv._KNOWN.clear()


@pytest.fixture
def timed(monkeypatch):
    """Counts real calibrations (each one times both precisions)."""
    calls = []
    original = tp.calibrate

    def counting(model, **kwargs):
        calls.append(kwargs)
        return original(model, **kwargs)

    monkeypatch.setattr(tp, "calibrate", counting)
    return calls


@pytest.fixture(scope="module")
def trained():
    """VGG16 at 32 px, trained for a few steps on the built-in sample, and held-out images."""
    train = tlcore.sample_dataset(per_class=8, size=32, seed=0)
    held_out = tlcore.sample_dataset(per_class=8, size=32, seed=1)  # other images, same classes
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, trainable_from="all",
                               hidden_units=32, dropout=0.0)
    result = tlcore.train(spec, train, tlcore.TrainConfig(epochs=3, batch_size=16, learning_rate=1e-4,
                                                          cache_features=False))
    preprocess = tlcore.get_backbone("VGG16").preprocess
    batches = [x.numpy() for x, _ in image_batches(held_out, np.arange(len(held_out)), (32, 32),
                                                   preprocess=preprocess, batch_size=16)]
    return result.model, batches, held_out


def test_the_setting_parses_and_refuses_other_values(monkeypatch):
    assert tlcore.Settings().precision == "auto"
    assert tlcore.load_settings({"TL_PRECISION": "bfloat16"}).precision == "bfloat16"
    monkeypatch.setenv("TL_PRECISION", " Float32 ")
    assert tp.precision_setting() == "float32"
    monkeypatch.setenv("TL_PRECISION", "half")
    with pytest.raises(tlcore.ConfigError,
                       match=r"Setting TL_PRECISION must be one of auto, float32, bfloat16\. Received: 'half'"):
        tp.precision_setting()
    with pytest.raises(tlcore.ConfigError, match=r"precision must be one of auto, float32, bfloat16\. "
                                                 r"Received: 'fp16'"):
        tlcore.choose_precision(keras.Sequential([keras.Input((8, 8, 3))]), backbone="VGG16", precision="fp16")
    with pytest.raises(tlcore.ConfigError, match="A forward pass runs in one of float32, bfloat16"):
        compiled_forward(keras.Sequential([keras.Input((8, 8, 3))]), precision="auto")


@pytest.mark.slow
def test_the_copy_computes_in_bfloat16_and_leaves_the_model_alone(trained):
    model, batches, _ = trained
    before = [w.copy() for w in model.get_weights()]
    copy = bfloat16_clone(model)
    base = copy.get_layer("vgg16")
    assert base.get_layer("block1_conv1").dtype_policy.name == "bfloat16"
    assert copy.get_layer("head_pool").dtype_policy.name == "mixed_bfloat16"
    assert copy.layers[-1].dtype_policy.name == "float32"  # the softmax normalises in float32
    assert {layer.dtype_policy.name for layer in model.get_layer("vgg16").layers} == {"float32"}
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    out = compiled_forward(model, precision="bfloat16")(batches[0])
    assert out.dtype == np.float32 and out.shape == (16, 4)


@pytest.mark.slow
def test_a_trained_model_agrees_with_float32_on_held_out_images(trained):
    model, batches, held_out = trained
    check = tlcore.compare_precisions(model, batches)
    print(f"trained VGG16 32 px, {check.images} held-out images: top-1 agreement {check.top1_agreement:.3f}, "
          f"max probability error {check.max_abs_error:.4f}, min cosine {check.min_cosine:.6f}")
    assert check.images == len(held_out)
    assert check.top1_agreement >= TOP1_AGREEMENT
    assert check.max_abs_error <= MAX_PROBABILITY_ERROR


@pytest.mark.slow
def test_feature_vectors_agree_with_float32(trained):
    model, _, held_out = trained
    extractor = keras.Model(model.input, model.get_layer("head_pool").output)
    images = [str(path) for path in held_out.files]
    float32 = tlcore.extract_features(extractor, images, backbone="VGG16", precision="float32")
    bfloat16 = tlcore.extract_features(extractor, images, backbone="VGG16", precision="bfloat16")
    cosine = (float32 * bfloat16).sum(1) / (np.linalg.norm(float32, axis=1) * np.linalg.norm(bfloat16, axis=1))
    print(f"feature cosine similarity: min {cosine.min():.6f}, mean {cosine.mean():.6f}")
    assert bfloat16.shape == float32.shape == (len(images), 512) and bfloat16.dtype == np.float32
    assert cosine.min() > MIN_FEATURE_COSINE
    assert not np.array_equal(float32, bfloat16)  # really computed in another precision


@pytest.mark.slow
def test_forced_float32_is_bit_identical_to_the_plain_forward_pass(trained, store, monkeypatch):
    model, batches, held_out = trained
    plain = tf.function(lambda batch: model(batch, training=False))  # the path before precisions existed
    expected = plain(tf.constant(batches[0])).numpy()
    monkeypatch.setenv("TL_PRECISION", "bfloat16")
    with tlcore.forced_precision("float32"):
        np.testing.assert_array_equal(tlcore.inference_forward(model, backbone="VGG16")(batches[0]), expected)
        choice = tlcore.choose_precision(model, backbone="VGG16")
    assert (choice.precision, choice.reason) == ("float32", "forced for this session")
    np.testing.assert_array_equal(compiled_forward(model)(batches[0]), expected)  # training's evaluation: float32
    monkeypatch.setenv("TL_PRECISION", "float32")
    np.testing.assert_array_equal(tlcore.inference_forward(model, backbone="VGG16", batch=16)(batches[0]), expected)
    assert not list(store.glob("*.json"))  # nothing was measured


@pytest.mark.slow
def test_predict_runs_in_the_chosen_precision(trained, store, monkeypatch):
    model, _, held_out = trained
    image = str(held_out.files[0])
    labels = list(held_out.class_names)
    monkeypatch.setenv("TL_PRECISION", "float32")
    float32 = tlcore.predict_top_k(model, image, backbone="VGG16", labels=labels)
    monkeypatch.setenv("TL_PRECISION", "bfloat16")
    bfloat16 = tlcore.predict_top_k(model, image, backbone="VGG16", labels=labels)
    with tlcore.forced_precision("float32"):
        forced = tlcore.predict_top_k(model, image, backbone="VGG16", labels=labels)
    assert forced.equals(float32) and not bfloat16.equals(float32)
    assert bfloat16["label"][0] == float32["label"][0]
    assert np.abs(bfloat16.set_index("class_id")["probability"]
                  - float32.set_index("class_id")["probability"]).max() <= MAX_PROBABILITY_ERROR


def test_a_forced_precision_stays_in_its_own_context(store):
    seen = {}
    with tlcore.forced_precision("float32"):
        thread = threading.Thread(target=lambda: seen.update(other=tp.requested_precision()))
        thread.start()
        thread.join()
        seen["here"] = tp.requested_precision()
    assert seen == {"here": ("float32", "forced for this session"), "other": ("auto", "TL_PRECISION")}


@pytest.mark.slow
def test_the_calibration_is_kept_per_machine_and_reused(trained, store, timed):
    model, _, _ = trained
    first = tlcore.choose_precision(model, backbone="VGG16")
    assert first.reason == "measured" and len(timed) == 1
    calibration = first.calibration
    print(f"VGG16 32 px, one image: float32 {calibration.float32_ms:.2f} ms, bfloat16 "
          f"{calibration.bfloat16_ms:.2f} ms ({calibration.speedup:.2f}x), cosine {calibration.cosine:.6f}: "
          f"{first.describe()}")
    assert calibration.float32_ms > 0 and calibration.bfloat16_ms > 0 and calibration.cosine > MIN_FEATURE_COSINE
    assert tlcore.choose_precision(model, backbone="VGG16") == first and len(timed) == 1
    tv._KNOWN.clear()  # a new process: read from the file, not timed again
    assert tlcore.choose_precision(model, backbone="VGG16") == first and len(timed) == 1
    kept = json.loads((store / f"{tc.machine_id()}.json").read_text())
    assert kept["machine"] == tc.machine() and list(kept["calibrations"]) == [calibration.key]
    batch = tlcore.choose_precision(model, backbone="VGG16", batch=16)  # batch work has a verdict of its own
    assert len(timed) == 2 and batch.calibration.batch == tc.CALIBRATION_BATCH
    assert tlcore.choose_precision(model, backbone="VGG16", batch=64) == batch and len(timed) == 2
    described = tp.describe_backbone("VGG16")
    assert "for one image" in described and "for batches" in described
    tc.forget_calibrations()
    tlcore.choose_precision(model, backbone="VGG16")
    assert len(timed) == 3


@pytest.mark.slow
def test_auto_never_picks_a_precision_measured_slower(trained, store, timed, monkeypatch):
    def verdict(float32_ms, bfloat16_ms, cosine=0.9999):
        return tlcore.Calibration("VGG16", (32, 32), 1, "x", float32_ms, bfloat16_ms, cosine, 0.0).precision

    assert verdict(100, 50) == "bfloat16"
    assert verdict(100, 120) == "float32"  # slower
    assert verdict(100, 95) == "float32"  # within the margin (MIN_SPEEDUP)
    assert verdict(100, 50, cosine=0.9) == "float32"  # faster but in disagreement
    faster_by_the_clock_only = tlcore.Calibration("VGG16", (32, 32), 8, "x", 100, 50, 0.9999, 0.0, 100, 105)
    assert faster_by_the_clock_only.precision == "float32"  # a busy machine's clock, not the work
    model, _, _ = trained
    for batch in (1, 16):  # the real measurement: its verdict follows the rule, and a loser keeps no copy
        choice = tlcore.choose_precision(model, backbone="VGG16", batch=batch)
        c = choice.calibration
        faster = c.speedup >= tc.MIN_SPEEDUP and c.cpu_speedup >= tc.MIN_SPEEDUP
        assert choice.precision == ("bfloat16" if faster else "float32")
        assert ("bfloat16" in _COMPILED[model]) == (choice.precision == "bfloat16")
    monkeypatch.setattr(tp, "bfloat16_units", lambda: False)
    tc.forget_calibrations()
    choice = tlcore.choose_precision(model, backbone="VGG16")
    assert choice.describe() == "float32 (this CPU has no bfloat16 units)" and len(timed) == 2


def test_a_copy_that_disagrees_is_not_used_however_fast(store):
    """A network whose arithmetic bfloat16 cannot carry: 1e5 * x - 99999 * x is x in float32, 0 in bfloat16."""
    inputs = keras.Input((16, 16, 3))
    copies = keras.layers.Conv2D(2, 1, use_bias=False)
    cancel = keras.layers.Conv2D(1, 1, use_bias=False)
    model = keras.Model(inputs, cancel(copies(inputs)))
    copies.set_weights([np.array([[[[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]]], np.float32)])
    cancel.set_weights([np.array([[[[1e5], [-99999.0]]]], np.float32)])
    choice = tlcore.choose_precision(model, backbone="VGG16", batch=4)
    assert choice.precision == "float32" and choice.calibration.cosine < tc.MIN_COSINE
    assert choice.describe().startswith("float32 (bfloat16 disagreed: cosine")


def test_a_calibration_keeps_every_pass_within_the_activation_budget(store, monkeypatch):
    """A model of 0.19 MB an image under a 1 MB budget: 5 images a pass, never the 8 a calibration has."""
    from tlcore.inference import forward as tf_forward
    from tlcore.models.cost import measure_model

    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "1")
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.ZeroPadding2D(60)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    fits = 2**20 // measure_model(model).activation_bytes
    assert fits == 5 and tc.calibration_fits(model) == 5
    sizes = []
    original = tf_forward._pass
    monkeypatch.setattr(tf_forward, "_pass", lambda forward, batch: sizes.append(len(batch)) or original(forward, batch))
    choice = tlcore.choose_precision(model, backbone="VGG16", batch=16)
    assert choice.reason == "measured" and choice.calibration.batch == fits  # timed as the work will run
    assert sizes[:4] == [5, 3, 5, 3] and set(sizes[4:]) == {5}  # agreement on 8 in passes of 5, then timings
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "0")  # not one image fits: nothing runs, float32
    sizes.clear()
    tc.forget_calibrations()
    choice = tlcore.choose_precision(model, backbone="VGG16")
    assert choice.describe() == "float32 (too large to calibrate within TL_MAX_ACTIVATION_MB)" and not sizes
    with pytest.raises(tlcore.BudgetError, match=r"A calibration pass may take at most 0 MB of activations on this "
                                                 r"server \(TL_MAX_ACTIVATION_MB\)\. "
                                                 r"Received: a model needing 0\.2 MB for one image"):
        tc.calibrate(model, backbone="VGG16")
    assert not sizes


@pytest.mark.slow
def test_the_feature_cache_keys_and_keeps_each_precision_apart(tmp_path, store, monkeypatch):
    shapes = tlcore.sample_dataset(per_class=4, size=32, seed=2)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None,
                               trainable_from="block5_conv1", hidden_units=8, num_classes=4)
    prefix, _ = frozen_split(tlcore.build_transfer_model(spec))
    float32_key = cache_key(prefix, shapes, backbone="VGG16", mode="crop")
    assert cache_key(prefix, shapes, backbone="VGG16", mode="crop", precision="float32") == float32_key
    assert cache_key(prefix, shapes, backbone="VGG16", mode="crop", precision="bfloat16") != float32_key
    cache = FeatureCache(tmp_path / "features")
    preprocess = tlcore.get_backbone("VGG16").preprocess
    monkeypatch.setenv("TL_PRECISION", "bfloat16")
    bfloat16, found = cache.features(prefix, shapes, backbone="VGG16", preprocess=preprocess)
    assert not found and json.loads(next(cache.root.glob("*.json")).read_text())["precision"] == "bfloat16"
    monkeypatch.setenv("TL_PRECISION", "float32")
    float32, found = cache.features(prefix, shapes, backbone="VGG16", preprocess=preprocess)
    assert not found and cache.path(float32_key).is_file() and len(list(cache.root.glob("*.npy"))) == 2
    a, b = np.asarray(float32).reshape(len(shapes), -1), np.asarray(bfloat16).reshape(len(shapes), -1)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > MIN_FEATURE_COSINE and not np.array_equal(a, b)


@pytest.mark.slow
def test_the_sidebar_line_shows_the_precision_and_forces_float32(store):
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from tlcore.inference.precision import requested_precision
        from ui.precision import render_precision

        render_precision("VGG16")
        st.write(f"requested: {requested_precision()[0]}")

    at = AppTest.from_function(page, default_timeout=60).run()
    assert not at.exception
    assert at.caption[0].value.startswith("Inference precision: auto")
    assert at.markdown[-1].value == "requested: auto"
    at.toggle(key="force_float32").set_value(True).run()
    assert at.caption[0].value == "Inference precision: float32 (forced for this session)"
    assert at.markdown[-1].value == "requested: float32"


@pytest.mark.slow
def test_the_app_sidebar_shows_the_precision_after_the_page_widgets(store):
    from support import open_page

    at = open_page("../pages/layers.py")
    line = [c.value for c in at.sidebar.caption if c.value.startswith("Inference precision:")]
    assert line == ["Inference precision: auto (bfloat16 if a short measurement on first use finds it faster here)"]
    assert at.sidebar.toggle(key="force_float32").value is False
    assert at.toggle[0].key == "include_top"  # the page's own widgets come first, as before


def test_a_model_and_its_bfloat16_copy_are_freed_with_their_last_user():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Conv2D(4, 3)(inputs)))
    x = np.ones((1, 8, 8, 3), np.float32)
    float32, bfloat16 = compiled_forward(model)(x), compiled_forward(model, precision="bfloat16")(x)
    assert float32.shape == bfloat16.shape == (1, 6, 6, 2)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


@pytest.mark.slow
def test_a_trained_run_is_checked_in_bfloat16_on_its_validation_images_before_predict_uses_it(monkeypatch):
    from tlcore.training import train as training

    monkeypatch.setenv("TL_PRECISION", "auto")
    monkeypatch.setattr(training, "bfloat16_units", lambda: True)  # checked on every machine (see ``store``)
    shapes = tlcore.sample_dataset(per_class=8, size=32, seed=12)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)
    result = tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=2, batch_size=8))
    monkeypatch.setattr(training, "bfloat16_units", lambda: False)
    without_units = tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=1, batch_size=8))
    assert without_units.precision_check is None  # a CPU without bfloat16 units checks nothing: Predict uses float32
    check = result.precision_check
    assert check.images == len(result.evaluation.indices) == 8
    assert check.top1_agreement >= 0.95 and check.max_abs_error < 0.05 and check.min_cosine > 0.99
    stored = dataclasses.asdict(check)
    assert tlcore.precision_for_run(stored) == "auto"
    assert tlcore.precision_for_run({**stored, "top1_agreement": 0.9}) == "float32"
    assert tlcore.precision_for_run({**stored, "max_abs_error": 0.2}) == "float32"
    assert tlcore.precision_for_run(None) == "float32"  # older runs, or trained under TL_PRECISION=float32
    monkeypatch.setenv("TL_PRECISION", "float32")
    assert tlcore.train(spec, shapes, tlcore.TrainConfig(epochs=1, batch_size=8)).precision_check is None
