
"""Budgets hold for every forward pass that runs, not only for one image.

``TL_MAX_ACTIVATION_MB`` is checked per image when a model is built or loaded; a pass over
n images needs about n times that. An uploaded 8x8 model that pads its input to 3,620 pixels
a side (150 MB of activations an image) fits a 200 MB budget, yet its first prediction used to
calibrate bfloat16 on 8 made-up images at once in float32 and bfloat16 (1.2 GB and more), in the
server process. Here that prediction runs in a child under an address-space limit that one
image's passes fit and eight images' do not.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from support import image_bytes

import tlcore
from tlcore.inference import forward as tf_forward
from tlcore.inference.predict import prepare_input
from tlcore.models.cost import MB, images_per_pass, measure_model

ROOT = Path(__file__).resolve().parents[2]

BUDGET_MB = 200
"""TL_MAX_ACTIVATION_MB for these tests: one padded image (150 MB) fits, two do not."""
PADDING = 1806
"""ZeroPadding2D(1806) turns an 8x8x3 image into 3620x3620x3: 150 MB of float32."""
SIDE = 8 + 2 * PADDING
HEADROOM_MB = 700
"""Address space the child may add once warm: one image's passes, the bfloat16 copy and the tracing
(measured: about 330 MB) fit; one pass over 8 images (1,200 MB in float32 alone) does not."""

CHILD = r"""
import json, resource, sys
import tensorflow as tf
import tlcore
from tlcore.inference import calibration, precision

precision.bfloat16_units = lambda: True  # where choose_precision looks it up: calibrate as on a bfloat16 CPU
calibration.bfloat16_units = lambda: True
model = tlcore.load_model_file(sys.argv[1])
image = open(sys.argv[2], "rb").read()
tf.function(lambda x: tf.reduce_mean(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])))(tf.ones((2, 8, 8, 3)))  # TF's pools

def vm_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmSize:"))
    return int(line.split()[1]) // 1024

limit = (vm_mb() + int(sys.argv[3])) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
table = tlcore.predict_top_k(model, image, backbone="MobileNetV2", k=2)
choice = precision.choose_precision(model, backbone="MobileNetV2")
print(json.dumps({"class_id": table["class_id"].tolist(), "probability": table["probability"].tolist(),
                  "choice": choice.describe(), "batch": choice.calibration.batch if choice.calibration else None}))
"""


def padded_model(padding: int) -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.ZeroPadding2D(padding),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])


@pytest.mark.slow
def test_the_first_prediction_of_an_upload_stays_within_its_budget_under_auto(tmp_path):
    path = tmp_path / "padded.keras"
    model = padded_model(PADDING)
    weights = np.array([[4e6, -4e6], [-2e6, 3e6], [1e6, 2e6]], np.float32)  # the mean of a padded image is tiny
    model.layers[-1].set_weights([weights, np.zeros(2, np.float32)])
    model.save(path)
    assert path.stat().st_size < 40_000  # a tiny file
    image = tmp_path / "photo.png"
    image.write_bytes(image_bytes(seed=3))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TL_MAX_ACTIVATION_MB": str(BUDGET_MB), "TL_PRECISION": "auto",
           "TL_DATA_DIR": str(tmp_path / "data"), "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(image), str(HEADROOM_MB)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["batch"] == 1  # calibrated one image a pass
    pixels = prepare_input(str(image), tlcore.load_model_file(path), backbone="MobileNetV2")  # computed in numpy
    logits = (pixels.sum(axis=(1, 2), dtype=np.float64) / SIDE**2) @ weights
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    probabilities = np.array(found["probability"])
    assert abs(probabilities.sum() - 1) < 1e-5 and 0.05 < probabilities.min()
    np.testing.assert_allclose(probabilities, expected[0][found["class_id"]], atol=0.01)  # about 0.24 and 0.76


def test_a_pass_takes_as_many_images_as_the_budget_allows(monkeypatch):
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "400")
    assert images_per_pass(300 * MB, 8) == 1
    assert images_per_pass(100 * MB, 8) == 4
    assert images_per_pass(100 * MB, 3) == 3  # never more than asked for
    assert images_per_pass(401 * MB, 8) == 0  # not even one image
    assert images_per_pass(0, 16) == 16
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "2048")
    assert images_per_pass(300 * MB, 8) == 6


def test_a_sequential_read_back_from_a_file_is_measured_once_per_layer_call(tmp_path):
    """Reading a Sequential back calls each layer again as later ones are added (the first of n has n
    Keras nodes); only the calls of the model's graph run, so only they count."""
    path = tmp_path / "padded.keras"
    built = padded_model(PADDING)
    built.save(path)
    loaded = tlcore.load_model_file(path)
    assert len(loaded.get_layer(built.layers[0].name)._inbound_nodes) > 1  # stale calls are there
    input_bytes = 8 * 8 * 3 * 4  # the functional model lists its input layer; the Sequential does not
    assert measure_model(loaded).activation_bytes == measure_model(built).activation_bytes + input_bytes
    assert 0 < measure_model(built).activation_bytes - SIDE**2 * 3 * 4 < 1024  # the padded image, and a little


def test_batches_are_run_in_passes_that_fit(monkeypatch):
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "1")
    inputs = keras.Input((64, 64, 3))  # 48 KB input, 48 KB each of three layers: about 0.19 MB an image
    hidden = keras.layers.Activation("relu")(keras.layers.Rescaling(0.5)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(hidden)))
    per_image = measure_model(model).activation_bytes
    assert images_per_pass(per_image, 22) == MB // per_image == 5
    sizes = []
    original = tf_forward._pass

    def counting(forward, batch):
        sizes.append(len(batch))
        return original(forward, batch)

    x = np.random.default_rng(0).uniform(-1, 1, (22, 64, 64, 3)).astype(np.float32)
    forward = tlcore.compiled_forward(model)
    singly = np.concatenate([forward(x[i:i + 1]) for i in range(22)])
    monkeypatch.setattr(tf_forward, "_pass", counting)
    whole = forward(x)
    assert sizes == [5, 5, 5, 5, 2] and whole.shape == (22, 2)
    np.testing.assert_allclose(whole, singly, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "0")  # a budget lowered under a loaded model: one image a pass
    sizes.clear()
    np.testing.assert_allclose(forward(x[:3]), singly[:3], rtol=1e-5, atol=1e-6)
    assert sizes == [1, 1, 1]
