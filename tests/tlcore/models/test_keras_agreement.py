"""Keras and tlcore asked the same questions, so the two cannot drift apart.

Every answer of ``tlcore`` about a network (feature-map sizes, the smallest input,
which sizes a full network takes, which ImageNet file is loaded, parameter and
trainable counts, layer names for ``trainable_from``, the class index) is checked
against what ``keras.applications`` itself builds or asks for. Keras's models are
built with shapes only (``scopes.shapes_only``: no memory) wherever values are not
needed; Keras's downloads are intercepted, so nothing goes to the network.
"""

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras.src.applications import imagenet_utils
from keras.src.backend import config as keras_config
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils
from support import image_bytes

import tlcore
from tlcore.inference.predict import top_k_table
from tlcore.models.labels import CLASS_INDEX_MD5, CLASS_INDEX_PATH, imagenet_class_names
from tlcore.models.scopes import shapes_only

pytestmark = pytest.mark.slow  # each test builds Keras's own models to compare with

NAMES = list(tlcore.BACKBONES)
PADDED = ("MobileNetV2", "EfficientNetB0")
"""Backbones whose padding depends on the input's size (``imagenet_utils.correct_pad``)."""


def keras_builds(name: str, **kwargs) -> keras.Model:
    """The model ``keras.applications`` builds for these arguments, with shapes only."""
    with shapes_only():
        return tlcore.BACKBONES[name].constructor(**kwargs)


def keras_map(name: str, height: int, width: int) -> tuple[int, ...] | None:
    """Keras's feature map at (height, width) with weights=None, or None where Keras refuses."""
    try:
        model = keras_builds(name, weights=None, include_top=False, input_shape=(height, width, 3))
    except ValueError:
        return None
    shape = tuple(int(d) for d in model.output.shape[1:])
    return shape if min(shape[:2]) > 0 else None


def write_legacy(model: keras.Model, path: Path) -> Path:
    """Weights in the legacy layout of Keras's real ImageNet files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


@pytest.fixture(scope="module", autouse=True)
def keras_counters_moved_on():
    """Keras has named layers before: raw Keras would now say "conv2d_94", not "conv2d"."""
    keras_builds("InceptionV3", weights=None, include_top=False, input_shape=(75, 75, 3))
    keras_builds("Xception", weights=None, include_top=False, input_shape=(71, 71, 3))


# ---------------------------------------------------------------- feature maps

GRID = [(name, size, size) for name in NAMES
        for size in sorted({tlcore.BACKBONES[name].min_size, 97, 300})]
GRID += [(name, h, w) for name in PADDED for h, w in [(33, 33), (48, 48), (64, 64), (65, 65), (64, 97)]]


@pytest.mark.parametrize("name,height,width", GRID)
def test_feature_map_is_the_one_keras_builds(name, height, width):
    assert tlcore.feature_map_shape(name, (height, width)) == keras_map(name, height, width)


def test_mobilenet_v2_at_48_leaves_2x2_with_no_warning():
    check = tlcore.check_input_shape("MobileNetV2", (48, 48, 3))
    assert check.feature_map == (2, 2, 1280) and check.notes == ()
    assert tlcore.check_input_shape("EfficientNetB0", (300, 300, 3)).feature_map == (10, 10, 1280)


@pytest.mark.parametrize("name", NAMES)
def test_smallest_input_for_a_2x2_map_is_keras_s(name):
    smallest = tlcore.smallest_input(name, 2)
    assert min(keras_map(name, smallest, smallest)[:2]) >= 2
    below = keras_map(name, smallest - 1, smallest - 1)
    assert below is None or min(below[:2]) < 2
    # the smallest input at all is Keras's minimum, and Keras refuses one less
    spec = tlcore.BACKBONES[name]
    assert tlcore.smallest_input(name) == spec.min_size
    assert keras_map(name, spec.min_size - 1, spec.min_size - 1) is None


# ------------------------------------------------- full networks and ImageNet files

@pytest.mark.parametrize("name", NAMES)
def test_full_network_sizes_with_weights_none_are_keras_s(name):
    spec = tlcore.BACKBONES[name]
    for size in (spec.min_size, spec.min_size + 33):
        shape = (size, size, 3)
        model = keras_builds(name, weights=None, include_top=True, input_shape=shape)
        assert model.output.shape[-1] == 1000
        assert tlcore.check_input_shape(name, shape, include_top=True, weights=None).input_shape == shape
    small = (spec.min_size - 1,) * 2 + (3,)
    with pytest.raises(ValueError):
        keras_builds(name, weights=None, include_top=True, input_shape=small)
    with pytest.raises(tlcore.ShapeError, match=f"at least {spec.min_size}x{spec.min_size}") as refused:
        tlcore.check_input_shape(name, small, include_top=True, weights=None)
    assert "ImageNet" not in str(refused.value)


class Asked(Exception):
    """Keras asked for a file: its name, origin and checksum."""


@pytest.fixture
def keras_asks(monkeypatch):
    """Keras's downloads answer with what was asked instead of going to the network."""
    def asked(fname=None, origin=None, **kwargs):
        raise Asked(fname, origin, kwargs.get("file_hash") or kwargs.get("md5_hash"))

    monkeypatch.setattr(file_utils, "get_file", asked)

    def ask(name, include_top, size):
        """(file name, URL, md5) Keras loads, or None where Keras refuses the size."""
        try:
            keras_builds(name, weights="imagenet", include_top=include_top, input_shape=(size, size, 3))
        except Asked as exc:
            return exc.args
        except ValueError:
            return None
        raise AssertionError("Keras built ImageNet weights without asking for a file")

    return ask


IMAGENET_CASES = [(name, top, size) for name in NAMES if name != "MobileNetV2"
                  for top, size in [(True, tlcore.BACKBONES[name].default_size), (True, 128),
                                    (False, tlcore.BACKBONES[name].default_size)]]
IMAGENET_CASES += [("MobileNetV2", top, size) for top in (True, False) for size in (96, 128, 160, 192, 224, 100)]
IMAGENET_CASES += [("MobileNetV2", False, 64)]


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
@pytest.mark.parametrize("name,include_top,size", IMAGENET_CASES)
def test_imagenet_file_and_accepted_sizes_are_keras_s(keras_asks, name, include_top, size):
    shape = (size, size, 3)
    asked = keras_asks(name, include_top, size)
    if asked is None:
        with pytest.raises(tlcore.ShapeError, match="with include_top=True and ImageNet weights"):
            tlcore.check_input_shape(name, shape, include_top=include_top, weights="imagenet")
        return
    tlcore.check_input_shape(name, shape, include_top=include_top, weights="imagenet")
    status = tlcore.weights_status(name, include_top=include_top, input_shape=shape)
    assert (status.file.file_name, status.file.url, status.file.md5) == asked


@pytest.fixture(scope="module")
def imagenet_cache(tmp_path_factory):
    """A Keras cache holding made-up ImageNet files, in the legacy layout of the real ones."""
    home = tmp_path_factory.mktemp("keras-home")
    models = home / "models"
    for name, size in [("ResNet50", 32), ("MobileNetV2", 96), ("EfficientNetB0", 64)]:
        shape = (size, size, 3)
        base = tlcore.load_backbone(name, weights=None, include_top=False, input_shape=shape)
        write_legacy(base, models / tlcore.BACKBONES[name].weights_file(False, shape).file_name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(home))
        yield models


def test_efficientnet_with_imagenet_weights_is_the_model_keras_builds(imagenet_cache, monkeypatch):
    path = imagenet_cache / "efficientnetb0_notop.h5"
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(path))
    theirs = keras.applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    ours = tlcore.load_backbone("EfficientNetB0", weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    assert [type(l).__name__ for l in ours.layers] == [type(l).__name__ for l in theirs.layers]
    assert "rescaling_1" in [l.name for l in ours.layers]  # Keras's ImageNet-only Rescaling
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours(image).numpy(), theirs(image).numpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------ plans, builds and trainable_from

@pytest.mark.parametrize("spec,trainable", [
    (tlcore.TransferSpec(backbone="ResNet50", input_shape=(128, 128, 3), trainable_from="all"), 24_006_530),
    (tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(96, 96, 3), trainable_from="middle"), None),
    (tlcore.TransferSpec(backbone="EfficientNetB0", input_shape=(64, 64, 3), trainable_from="middle",
                         hidden_units=0), None),
    (tlcore.TransferSpec(backbone="InceptionV3", input_shape=(75, 75, 3), weights=None,
                         trainable_from="middle", hidden_units=0), None),
    (tlcore.TransferSpec(backbone="Xception", input_shape=(71, 71, 3), weights=None,
                         trainable_from="unnamed", hidden_units=0), None),
], ids=["ResNet50-imagenet-all", "MobileNetV2-imagenet", "EfficientNetB0-imagenet", "InceptionV3", "Xception"])
def test_plan_counts_are_the_built_model_s(imagenet_cache, spec, trainable):
    choices = tlcore.trainable_from_choices(spec.backbone)
    if spec.trainable_from == "middle":
        spec = tlcore.TransferSpec(**{**spec.__dict__, "trainable_from": choices[len(choices) // 2]})
    elif spec.trainable_from == "unnamed":  # one of the layers Keras names itself
        spec = tlcore.TransferSpec(**{**spec.__dict__, "trainable_from": [c for c in choices if c.startswith("conv2d")][-1]})
    plan = tlcore.plan_transfer_model(spec)
    model = tlcore.build_transfer_model(spec)  # a fresh build takes the chosen layer
    assert plan.counts == tlcore.parameter_counts(model)
    assert plan.layers.equals(tlcore.layer_table(model, expand_nested=True))
    base = tlcore.models.build.base_and_head(model)[0]
    assert {l.name for l in base.layers if l.weights} == set(choices)
    assert model.count_params() - base.count_params() == (
        plan.counts.total - keras_builds(spec.backbone, weights=None, include_top=False,
                                         input_shape=spec.input_shape).count_params())
    if trainable is not None:
        assert plan.counts.trainable == trainable  # batch normalisation stays frozen
    if spec.weights is not None:
        assert not any(l.trainable for l in base.layers if isinstance(l, keras.layers.BatchNormalization))


SECOND_PROCESS = """
import json, sys
sys.path.insert(0, {root!r})
import keras, tlcore
from tlcore.models.scopes import shapes_only
out = {{}}
for name, spec in tlcore.BACKBONES.items():
    keras.backend.clear_session()  # Keras names layers as in a fresh process
    with shapes_only():
        model = spec.constructor(weights=None, include_top=False)
    out[name] = {{"keras": [l.name for l in model.layers if l.weights],
                  "tlcore": tlcore.trainable_from_choices(name)}}
print(json.dumps(out))
"""


def test_trainable_from_choices_are_the_same_in_another_process_and_are_keras_s_fresh_names():
    root = str(Path(__file__).resolve().parents[3])
    result = subprocess.run([sys.executable, "-c", SECOND_PROCESS.format(root=root)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    there = json.loads(result.stdout.strip().splitlines()[-1])
    for name in NAMES:
        here = tlcore.trainable_from_choices(name)
        assert here == there[name]["tlcore"] == there[name]["keras"], name
        assert here == tlcore.trainable_from_choices(name)  # and again in this process


# ---------------------------------------------------------- labels and predictions

def test_class_index_is_keras_s_file():
    data = CLASS_INDEX_PATH.read_bytes()
    assert hashlib.md5(data).hexdigest() == CLASS_INDEX_MD5
    assert re.search(r'file_hash="([0-9a-f]{32})"', inspect.getsource(imagenet_utils)).group(1) == CLASS_INDEX_MD5


def test_keras_accepts_the_shipped_class_index_in_its_cache(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "imagenet_class_index.json").write_bytes(CLASS_INDEX_PATH.read_bytes())
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", None)
    monkeypatch.setattr(file_utils, "urlretrieve", pytest.fail)  # a checksum mismatch would download
    scores = np.zeros((1, 1000), np.float32)
    scores[0, [2, 207]] = [0.9, 0.1]
    decoded = imagenet_utils.decode_predictions(scores, top=2)[0]
    assert [(wnid, name) for wnid, name, _ in decoded] == [("n01484850", "great_white_shark"),
                                                          ("n02099601", "golden_retriever")]
    keras_names = [json.loads(CLASS_INDEX_PATH.read_text())[str(i)][1] for i in range(1000)]
    assert imagenet_class_names() == keras_names
    assert tlcore.imagenet_labels() == [name.replace("_", " ") for name in keras_names]


def test_ties_come_out_lowest_class_id_first():
    labels = [f"c{i}" for i in range(1000)]
    table = top_k_table(np.full(1000, 1e-3, np.float32), labels, 5)
    assert list(table["class_id"]) == [0, 1, 2, 3, 4]
    scores = np.zeros(1000, np.float32)
    scores[[500, 7, 3, 9]] = [0.25, 0.25, 0.25, 0.1]
    assert list(top_k_table(scores, labels, 5)["class_id"]) == [3, 7, 500, 9, 0]
    inputs = keras.Input((32, 32, 3))
    flat = keras.layers.GlobalAveragePooling2D()(inputs)
    uniform = keras.Model(inputs, keras.layers.Dense(1000, activation="softmax", kernel_initializer="zeros")(flat))
    table = tlcore.predict_top_k(uniform, image_bytes((40, 40)), backbone="VGG16", k=5)
    assert list(table["class_id"]) == [0, 1, 2, 3, 4]
    assert list(table["label"]) == tlcore.imagenet_labels()[:5]
