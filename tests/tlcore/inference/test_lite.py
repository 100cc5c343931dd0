"""A classifier's LiteRT copy (issue 18: the first answer after a server start without TensorFlow's import):
written once per network and weights, it answers the top-5 Keras answers, in a process that never loads
TensorFlow, and a copy for other weights or a broken one is never used."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tlcore
from tlcore.inference.predict import prepare_input

ROOT = Path(__file__).resolve().parents[3]
CAT = ROOT / "samples" / "cat.jpg"
NETWORK = "ResNet50"  # untrained and seeded, its softmax is peaked (MobileNetV2's is flat: every class 0.001)

pytestmark = pytest.mark.slow  # writes a 102 MB copy with TensorFlow's converter (about 10 s on 2 cores)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The seeded untrained ResNet50 and its LiteRT copy, in a data folder of this module's own."""
    data = tmp_path_factory.mktemp("lite-data")
    previous = os.environ.get("TL_DATA_DIR"), os.environ.get("TL_LITE_ANSWERS")
    os.environ.update(TL_DATA_DIR=str(data), TL_LITE_ANSWERS="1")
    model = tlcore.load_backbone(NETWORK, weights=None, seed=tlcore.UNTRAINED_SEED)
    key = tlcore.lite_key(NETWORK, None, seed=tlcore.UNTRAINED_SEED)
    stale = key.path.parent / f"{NETWORK}-random-0000000000000000.tflite"  # an older version's copy
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    for name, age in (("lite-killed", 7200), ("lite-writing", 60)):  # a killed writer's folder; another's at work
        (stale.parent / name / "saved_model").mkdir(parents=True)
        os.utime(stale.parent / name, (time.time() - age, time.time() - age))
    path = tlcore.write_lite_copy(model, key)
    yield model, key, path, stale, data
    for name, value in zip(("TL_DATA_DIR", "TL_LITE_ANSWERS"), previous):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_the_copy_answers_what_keras_answers(written):
    model, key, path, stale, _ = written
    assert path == key.path and path.stat().st_size > 4 * model.count_params() * 0.99  # float32 weights
    assert not stale.exists()  # the older copy of the same network and weights kind is gone
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, "lite-writing"])

    lite = tlcore.open_lite(key)
    assert lite.input_size == (224, 224)
    expected = tlcore.compiled_forward(model)(prepare_input(CAT, model, backbone=NETWORK))[0]
    fitted = np.asarray(tlcore.fit_image(tlcore.load_image(CAT), (224, 224)), np.float32)
    got = lite.probabilities(fitted)  # raw pixels in: the preprocessing is inside the copy
    assert got.shape == (1000,) and np.abs(got - expected).max() < 1e-5
    assert got.max() > 0.5  # a peaked answer, so the order below means something

    table = lite.top_k(CAT, k=5)
    keras_table = tlcore.predict_top_k(model, CAT, backbone=NETWORK, k=5, precision="float32")
    assert list(table["label"]) == list(keras_table["label"])
    assert np.allclose(table["probability"], keras_table["probability"], atol=1e-5)
    squashed = lite.top_k(CAT, k=3, labels=[f"c{i}" for i in range(1000)], mode="squash")
    assert list(squashed["label"]) == [f"c{c}" for c in tlcore.predict_top_k(
        model, CAT, backbone=NETWORK, k=3, mode="squash", precision="float32")["class_id"]]
    with pytest.raises(tlcore.ConfigError, match="name each of the model's 1000 outputs. Received: 2 labels"):
        lite.top_k(CAT, labels=["a", "b"])


ANSWER = """
import json, sys
import tlcore
lite = tlcore.open_lite(tlcore.lite_key("ResNet50", None, seed=tlcore.UNTRAINED_SEED))
table = lite.top_k(sys.argv[1], k=5)
print(json.dumps({"labels": list(table["label"]), "loaded": sorted(m for m in ("keras", "tensorflow", "ray")
                                                                   if m in sys.modules)}))
"""


def test_a_new_process_answers_with_the_copy_without_tensorflow(written):
    model, _, _, _, data = written
    env = {**os.environ, "TL_DATA_DIR": str(data), "TL_LITE_ANSWERS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", ANSWER, str(CAT)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["loaded"] == []
    assert seen["labels"] == list(tlcore.predict_top_k(model, CAT, backbone=NETWORK, precision="float32")["label"])


def test_other_weights_and_other_versions_have_other_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert tlcore.lite_key("MobileNetV2", "imagenet", seed=0) is None  # its file is not here
    assert tlcore.lite_key("MobileNetV2", tmp_path / "missing.h5", seed=0) is None

    weights = tmp_path / "mine.weights.h5"
    weights.write_bytes(b"first")
    first = tlcore.lite_key("MobileNetV2", weights, seed=0)
    assert first.kind.startswith("file-") and first.path.parent == tmp_path / "data" / "lite"
    assert tlcore.lite_key("MobileNetV2", str(weights), seed=0) == first
    weights.write_bytes(b"second, longer")
    assert tlcore.lite_key("MobileNetV2", weights, seed=0).identity != first.identity
    assert tlcore.lite_key("VGG16", weights, seed=0).path.name.startswith("VGG16-file-")

    random = tlcore.lite_key("MobileNetV2", None, seed=0)
    assert random.kind == "random" and tlcore.lite_key("MobileNetV2", None, seed=1).identity != random.identity
    monkeypatch.setattr("tlcore.inference.lite._versions", lambda: "keras 9.9|tensorflow-cpu 9.9|tensorflow -")
    assert tlcore.lite_key("MobileNetV2", None, seed=0).identity != random.identity  # another Keras or TF


def test_a_broken_copy_is_removed_and_keras_answers(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TL_LITE_ANSWERS", "1")  # the tests' default is off; another test's fixture may not have run
    key = tlcore.lite_key("MobileNetV2", None, seed=0)
    key.path.parent.mkdir(parents=True)
    key.path.write_bytes(b"TFL3 cut short by a full disk")
    assert tlcore.open_lite(key) is None
    assert not key.path.exists() and "cannot be opened" in caplog.text
    assert tlcore.open_lite(None) is None


def test_turned_off_no_copy_answers(written, monkeypatch):
    _, key, _, _, _ = written
    monkeypatch.setenv("TL_LITE_ANSWERS", "0")
    assert key.path.is_file() and tlcore.open_lite(key) is None


def test_no_room_for_the_copy_writes_nothing(written, tmp_path, monkeypatch):
    model = written[0]
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TL_MAX_DATA_GB", "0.05")  # 50 MB: ResNet50's copy and its SavedModel need 205 MB
    key = tlcore.lite_key(NETWORK, None, seed=tlcore.UNTRAINED_SEED)
    with pytest.raises(tlcore.StorageError, match="ResNet50's LiteRT copy"):
        tlcore.write_lite_copy(model, key)
    assert list(key.path.parent.iterdir()) == []
