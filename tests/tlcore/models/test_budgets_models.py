"""Model budgets: every crafted input is refused before allocation, with a message naming the limit.

Each crafted case also measures the process's peak RSS growth around the
refused call (VmHWM is reset through /proc/self/clear_refs, so earlier tests'
peaks do not hide it) and asserts it stays under ~100 MB.
"""

import json
import random
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state
from keras.src.legacy.saving import legacy_h5_format
from support import peak_growth

import tlcore
from tlcore.models import cost as model_cost_module
from tlcore.models import scopes
from tlcore.models.weights import load_weights_file
from tlcore.models.zoo import build_architecture
from tlcore.training import memory

MB = 2**20
ROOT = Path(__file__).resolve().parents[3]




def spec(**changes):
    defaults = dict(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16, num_classes=3)
    return tlcore.TransferSpec(**{**defaults, **changes})


# --- Build specs -------------------------------------------------------------------------------

def test_flatten_head_on_a_large_input_is_refused_before_anything_is_allocated():
    huge = spec(input_shape=(1024, 1024, 3), pooling="flatten", hidden_units=4096)
    tlcore.check_input_shape("VGG16", (64, 64, 3))  # warm the shape-arithmetic base (a one-off cache)
    message = (r"A model may have at most 160,000,000 parameters on this server \(TL_MAX_MODEL_PARAMS\)\. "
               r"Received: 2,162,214,723 parameters \(VGG16 at 1024x1024, flatten head with 4,096 hidden "
               r"units\); use global average pooling, a smaller input or fewer hidden units")
    with peak_growth():
        for call in (tlcore.plan_transfer_model, tlcore.build_transfer_model, tlcore.check_transfer_spec):
            with pytest.raises(tlcore.BudgetError, match=message):
                call(huge)
    assert issubclass(tlcore.BudgetError, tlcore.ConfigError)


@pytest.mark.slow
def test_activations_over_the_limit_name_the_setting_and_the_size_that_fits():
    tlcore.check_input_shape("ResNet50", (64, 64, 3))
    with peak_growth(), pytest.raises(
        tlcore.BudgetError,
        match=r"activations for one image may take at most 2,048 MB on this server \(TL_MAX_ACTIVATION_MB\)\. "
              r"Received: 2,969 MB \(ResNet50 at 1024x1024, global average pooling head .*\); "
              r"use a smaller input \(about 832x832 fits\)",
    ):
        tlcore.plan_transfer_model(spec(backbone="ResNet50", input_shape=(1024, 1024, 3)))


def test_limits_are_read_at_call_time(monkeypatch):
    monkeypatch.setenv("TL_MAX_MODEL_PARAMS", "1000000")
    with pytest.raises(tlcore.BudgetError, match=r"at most 1,000,000 parameters .*Received: 14,722,947"):
        tlcore.build_transfer_model(spec())


def test_vgg16_at_224_with_average_pooling_plans_without_allocating_its_weights():
    tlcore.check_input_shape("VGG16", (224, 224, 3))
    with peak_growth(40):  # its 14.8 M weights would be 59 MB
        plan = tlcore.plan_transfer_model(spec(input_shape=(224, 224, 3), hidden_units=256, num_classes=2))
    assert plan.counts.total == 14_714_688 + (512 * 256 + 256) + (256 * 2 + 2)
    assert plan.counts.trainable == (512 * 256 + 256) + (256 * 2 + 2)
    assert plan.layers["params"].sum() == plan.counts.total
    cost = tlcore.model_cost(spec(input_shape=(224, 224, 3), hidden_units=256, num_classes=2))
    assert (cost.params, cost.trainable_params) == (plan.counts.total, plan.counts.trainable)
    assert 50 * MB < cost.activation_bytes < 70 * MB  # VGG16 at 224: ~15 M floats per image
    assert cost.trainable_activation_bytes < 8 * 1024  # a frozen base: only the head's outputs


@pytest.mark.slow
def test_model_cost_matches_a_real_model():
    choice = spec(backbone="MobileNetV2", trainable_from="block_16_expand", input_shape=(64, 64, 3))
    real = tlcore.build_transfer_model(choice)
    cost = tlcore.model_cost(choice)
    assert cost == model_cost_module.measure_model(real)
    assert cost.params == real.count_params()
    assert cost.trainable_params == tlcore.parameter_counts(real).trainable
    assert 0 < cost.trainable_activation_bytes < cost.activation_bytes


HEADS = [dict(weights="imagenet"), dict(hidden_units=0, pooling="flatten"), dict(conv_blocks=2, conv_pool=2, pooling="max"),
         dict(trainable_from="middle"), dict(trainable_from=tlcore.ALL_LAYERS, weights=None, pool_size=2)]


def _headed(backbone: str, size: int, head: dict, **changes) -> tlcore.TransferSpec:
    if head.get("trainable_from") == "middle":
        choices = tlcore.trainable_from_choices(backbone)
        head = {**head, "trainable_from": choices[len(choices) // 2]}
    return spec(backbone=backbone, input_shape=(size, size, 3), **{**head, **changes})


def _assert_composed_is_the_whole_model(choice: tlcore.TransferSpec) -> tlcore.ModelCost:
    """The cost, and Build's plan (layers and counts), of the model ``choice`` builds, counted from its base's
    measure and its head alone, are the whole model's (Keras numbers the names of input layers per process:
    those are compared by place and kind). Returns the cost."""
    from tlcore.models.build import _spec_cost, transfer_architecture
    from tlcore.models.summary import layer_table, parameter_counts

    tlcore.check_transfer_spec(choice)
    plan = tlcore.plan_transfer_model(choice)
    with scopes.shapes_only():
        model = transfer_architecture(choice)
        cost, whole, counts = model_cost_module.measure_model(model), layer_table(model, expand_nested=True), \
            parameter_counts(model)
    assert _spec_cost.__wrapped__(choice) == cost
    inputs = whole["type"] == "InputLayer"
    assert (plan.layers["type"] == "InputLayer").equals(inputs)
    assert plan.layers[~inputs].equals(whole[~inputs]) and plan.layers.columns.equals(whole.columns)
    assert plan.layers.loc[inputs, "output_shape"].equals(whole.loc[inputs, "output_shape"])
    assert plan.layers.loc[0, "name"] == "image" and plan.counts == counts
    return cost


@pytest.mark.parametrize("head", HEADS)
def test_a_new_heads_cost_and_plan_are_its_bases_kept_and_its_head_alone(monkeypatch, head):
    """A new head on Build measured the whole network again, twice (a shapes-only build for the budget check and
    one for the layer table; 1.1 to 1.3 s for InceptionV3 at 299 px here): the base is measured once, and what
    the whole model counts and lists is the same."""
    from tlcore.models import build

    composed = _assert_composed_is_the_whole_model(_headed("MobileNetV2", 128, head))
    built = []
    monkeypatch.setattr(build, "build_architecture", lambda *a, **k: built.append(a) or build_architecture(*a, **k))
    again = build._spec_cost.__wrapped__(_headed("MobileNetV2", 128, head, hidden_units=7, dropout=0.3))
    plan = tlcore.plan_transfer_model(_headed("MobileNetV2", 128, head, hidden_units=5, dropout=0.1))
    assert built == [] and again.params != composed.params and plan.layers.iloc[-1]["params"] == (5 + 1) * 3


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(tlcore.BACKBONES))
def test_every_registry_bases_composed_cost_is_the_whole_models(backbone):
    for head in (HEADS[0], HEADS[3], HEADS[4]):  # the base frozen, trained from its middle, trained whole
        _assert_composed_is_the_whole_model(_headed(backbone, max(tlcore.BACKBONES[backbone].min_size, 192), head))


# --- Compute: FLOPs (multiply-adds) per image --------------------------------------------------

def test_flops_of_each_kind_of_layer_follow_its_shapes_kernel_and_strides():
    with scopes.shapes_only():
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)  # 8x8x8 outputs x 3x3x3
        x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)  # 8x8x16 x 3x3
        x = keras.layers.SeparableConv2D(4, 3, padding="same")(x)  # 8x8 x 16 x (3x3 + 4)
        x = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)  # 8x8x4 inputs x 3x3 x 2
        x = keras.layers.MaxPooling2D(2)(x)  # 8x8x2 outputs x 2x2
        x = keras.layers.GlobalAveragePooling2D()(x)  # reads 8x8x2
        inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
        x = keras.layers.Dense(5)(inner(inner(x)))  # the nested model twice (2x2 each), then 2x5
        cost = model_cost_module.measure_model(keras.Model(inputs, x))
    assert cost.flops == 8 * 8 * 8 * 27 + 8 * 8 * 16 * 9 + 8 * 8 * 16 * (9 + 4) + 8 * 8 * 4 * 9 * 2 \
        + 8 * 8 * 2 * 4 + 8 * 8 * 2 + 2 * 4 + 2 * 5


def test_vgg16_at_224_counts_its_known_15_5_gflops():
    with scopes.shapes_only():
        cost = model_cost_module.measure_model(build_architecture("VGG16", include_top=True))
    print(f"VGG16 at 224: {cost.flops / 1e9:.3f} GFLOPs")
    assert abs(cost.flops - 15.5e9) < 0.05 * 15.5e9  # the figure of the VGG paper and the Keras table


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(tlcore.BACKBONES))
def test_every_backbone_fits_the_compute_budget_at_every_size_the_other_budgets_allow(name):
    """At its default size, and at the largest side (up to 1024) whose activations fit."""
    limit = tlcore.load_settings().max_activation_mb * MB
    default = tlcore.BACKBONES[name].default_size
    with scopes.shapes_only():
        model_cost_module.check_model_cost(
            model_cost_module.measure_model(build_architecture(name, include_top=True)),
            described=name, params_advice="", activation_advice="")
        for side in range(1024, default, -64):
            cost = model_cost_module.measure_model(
                build_architecture(name, include_top=False, input_shape=(side, side, 3), pooling="avg"))
            if cost.activation_bytes <= limit:
                break
    print(f"{name} at {side}: {cost.flops / 1e9:.1f} GFLOPs")
    model_cost_module.check_model_cost(cost, described=name, params_advice="", activation_advice="")


def test_a_spec_over_the_compute_budget_names_the_setting(monkeypatch):
    monkeypatch.setenv("TL_MAX_GFLOPS", "10")
    with peak_growth(40), pytest.raises(
        tlcore.BudgetError,
        match=r"A model may take at most 10 GFLOPs \(billions of multiply-adds\) for one image on this server "
              r"\(TL_MAX_GFLOPS\)\. Received: 15\.4 GFLOPs \(VGG16 at 224x224, .*\); use a smaller input",
    ):
        tlcore.plan_transfer_model(spec(input_shape=(224, 224, 3)))
    monkeypatch.setenv("TL_MAX_GFLOPS", "16")
    assert 15.3e9 < tlcore.model_cost(spec(input_shape=(224, 224, 3))).flops < 15.5e9


# --- shapes_only ---------------------------------------------------------------------------------

def test_shapes_only_clears_its_variables_even_after_an_exception_and_keeps_seeds():
    random.seed(7)
    expected = random.random()
    random.seed(7)
    with pytest.raises(RuntimeError), scopes.shapes_only():
        keras.layers.Dense(100_000).build((None, 100_000))
        raise RuntimeError("inside")
    assert random.random() == expected
    assert not global_state.get_global_attribute("uninitialized_variables")
    dense = keras.layers.Dense(3)
    dense.build((None, 2))
    assert dense.kernel.numpy().shape == (2, 3)  # real variables again


def test_shapes_only_is_per_thread():
    inside, done = threading.Event(), threading.Event()

    def hold():
        with scopes.shapes_only():
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10)
        dense = keras.layers.Dense(3)
        dense.build((None, 2))
        np.testing.assert_array_equal(dense.bias.numpy(), np.zeros(3))  # allocated in this thread
    finally:
        done.set()
        thread.join()


# --- Job memory ----------------------------------------------------------------------------------

def test_job_memory_refusal_names_the_setting_and_what_to_try(monkeypatch):
    big = spec(input_shape=(224, 224, 3), trainable_from=tlcore.ALL_LAYERS)
    with pytest.raises(
        tlcore.BudgetError,
        match=r"A training job may need at most 12 GB of memory on this server \(TL_JOB_MEMORY_GB\)\. "
              r"Received: about \d+\.\d GB for VGG16 at 224x224, .*batch size 512; try a smaller batch, "
              r"a smaller input or freezing more layers",
    ):
        tlcore.check_job_memory(big, 512)
    assert tlcore.check_job_memory(big, 16) == tlcore.estimate_job_memory(big, 16)
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "1.0")
    with pytest.raises(tlcore.BudgetError, match="at most 1 GB"):
        tlcore.check_job_memory(spec(), 1)
    with pytest.raises(tlcore.BudgetError, match="at least 1 image. Received: batch_size=0"):
        tlcore.check_job_memory(spec(), 0)


def test_job_estimate_grows_with_batch_and_unfreezing():
    frozen, unfrozen = spec(input_shape=(64, 64, 3)), spec(input_shape=(64, 64, 3), trainable_from="all")
    assert tlcore.estimate_job_memory(frozen, 8) < tlcore.estimate_job_memory(frozen, 32)
    assert tlcore.estimate_job_memory(frozen, 8) < tlcore.estimate_job_memory(unfrozen, 8)


_MEASURE = """
import os, sys
sys.path.insert(0, {root!r})
import numpy as np, keras, tlcore
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(64, 64, 3), weights=None, hidden_units=64,
                           num_classes=3, trainable_from="all")
imported = status("VmRSS")
model = tlcore.build_transfer_model(spec)
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
x = np.random.default_rng(0).normal(size=(32, 64, 64, 3)).astype("float32")
for _ in range(2):
    model.train_on_batch(x, np.arange(32) % 3)
print(imported, status("VmHWM"), tlcore.estimate_job_memory(spec, 32))
"""


@pytest.mark.slow
def test_job_estimate_is_an_upper_bound_of_a_real_training_step():
    """A fresh process trains MobileNetV2 (every layer, 64x64, batch 32, Adam) and reports its peak RSS."""
    run = subprocess.run([sys.executable, "-c", _MEASURE.format(root=str(ROOT))], capture_output=True,
                         text=True, timeout=180, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    imported, peak, estimate = map(int, run.stdout.split()[-3:])
    print(f"imported {imported / MB:.0f} MB, peak {peak / MB:.0f} MB, estimate {estimate / MB:.0f} MB")
    assert imported < memory.PROCESS_OVERHEAD_BYTES
    assert peak < estimate < 2.5 * peak


# --- .keras files ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_keras(tmp_path_factory):
    """A small dense model saved as .keras (input 37, Dense 41), for crafted copies."""
    model = keras.Sequential([keras.Input((37,), name="features"), keras.layers.Dense(41, name="big")])
    path = tmp_path_factory.mktemp("files") / "small.keras"
    model.save(path)
    return path


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_tiny_file_declaring_a_dense_of_100000_by_100000_is_refused(small_keras, tmp_path):
    members = members_of(small_keras)
    members["config.json"] = re.sub(rb"\b(37|41)\b", b"100000", members["config.json"])
    crafted = write_zip(tmp_path / "huge.keras", members)
    assert crafted.stat().st_size < 20_000
    with peak_growth(), pytest.raises(
        tlcore.ModelFileError,
        match=r"at most 160,000,000 parameters on this server \(TL_MAX_MODEL_PARAMS\)\. "
              r"Received: 10,000,100,000 parameters \('huge.keras', 1 layers\); load a smaller model",
    ):
        tlcore.load_model_file(crafted)


def test_a_huge_image_input_is_refused(small_keras, tmp_path):
    members = members_of(small_keras)
    config = json.loads(members["config.json"])
    text = json.dumps(config).replace("[null, 37]", "[null, 100000, 100000, 37]")
    members["config.json"] = text.encode()
    with pytest.raises(tlcore.ModelFileError, match=r"sides of at most 1024 on this server\. Received: an input "
                                                    r"of shape \(None, 100000, 100000, 37\) in 'wide.keras'"):
        tlcore.load_model_file(write_zip(tmp_path / "wide.keras", members))
    members["config.json"] = text.replace("100000, 100000", "null, null").encode()
    with pytest.raises(tlcore.ModelFileError, match=r"must declare every size.*\(None, None, None, 37\)"):
        tlcore.load_model_file(write_zip(tmp_path / "free.keras", members))
    members["config.json"] = text.replace("100000, 100000", "0, 0").encode()  # it loaded, and predicted NaN
    with pytest.raises(tlcore.ModelFileError, match=r"every size, at least 1, .*Received: an input of shape "
                                                    r"\(None, 0, 0, 37\) in 'empty.keras'"):
        tlcore.load_model_file(write_zip(tmp_path / "empty.keras", members))


def test_a_highly_compressed_config_is_refused_before_it_is_read(small_keras, tmp_path, monkeypatch):
    crafted = tmp_path / "bomb.keras"
    with zipfile.ZipFile(crafted, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w", force_zip64=True) as member:
            member.write(b"[")
            for _ in range(64):
                member.write(b" " * MB)
            member.write(b"]")
        archive.writestr("model.weights.h5", members_of(small_keras)["model.weights.h5"])
    assert crafted.stat().st_size < 1 * MB
    with peak_growth():
        with pytest.raises(tlcore.ModelFileError, match=r"compressed at most 100:1 \(TL_MAX_COMPRESSION_RATIO\)\. "
                                                        r"Received: 'config.json' in 'bomb.keras' at [\d,]+:1"):
            tlcore.load_model_file(crafted)
        monkeypatch.setenv("TL_MAX_COMPRESSION_RATIO", "100000")
        with pytest.raises(tlcore.ModelFileError, match=r"config.json may be at most 16 MB "
                                                        r"\(TL_MAX_MODEL_CONFIG_MB\)\. Received: 64.0 MB"):
            tlcore.load_model_file(crafted)


def test_a_file_that_unpacks_too_much_is_refused(small_keras, tmp_path, monkeypatch):
    monkeypatch.setenv("TL_MAX_MODEL_FILE_MB", "32")
    crafted = tmp_path / "assets.keras"
    with zipfile.ZipFile(crafted, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members_of(small_keras).items():
            archive.writestr(name, data)
        with archive.open("assets/blob", "w", force_zip64=True) as member:
            for _ in range(40):
                member.write(bytes(MB))
    with peak_growth(), pytest.raises(
        tlcore.ModelFileError,
        match=r"may unpack to at most 32 MB \(TL_MAX_MODEL_FILE_MB\)\. Received: 'assets.keras' declares 40 MB "
              r"\(40 MB in 'assets/blob'\)",
    ):
        tlcore.load_model_file(crafted)


def test_a_file_with_too_many_members_is_refused(small_keras, tmp_path):
    members = members_of(small_keras) | {f"assets/{i}.txt": b"x" for i in range(62)}
    with peak_growth(), pytest.raises(
        tlcore.ModelFileError,
        match=r"at most 64 archive members \(TL_MAX_MODEL_FILE_MEMBERS\)\. Received: 65 in 'many.keras'",
    ):
        tlcore.load_model_file(write_zip(tmp_path / "many.keras", members))


def test_a_large_metadata_json_is_refused_before_it_is_read(small_keras, tmp_path, monkeypatch):
    monkeypatch.setenv("TL_MAX_MODEL_CONFIG_MB", "1")
    members = members_of(small_keras) | {"metadata.json": b" " * (2 * MB)}
    with pytest.raises(tlcore.ModelFileError, match=r"A model's metadata.json may be at most 1 MB "
                                                    r"\(TL_MAX_MODEL_CONFIG_MB\)\. Received: 2\.0 MB in 'meta.keras'"):
        tlcore.load_model_file(write_zip(tmp_path / "meta.keras", members))


def test_a_member_stored_twice_is_refused(small_keras, tmp_path):
    crafted = write_zip(tmp_path / "twice.keras", members_of(small_keras))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(crafted, "a") as archive:
        archive.writestr("config.json", members_of(small_keras)["config.json"])
    with pytest.raises(tlcore.ModelFileError, match=r"may hold only config.json, metadata.json and model.weights.h5, "
                                                    r"each once: .*Received: 'config.json' in 'twice.keras'"):
        tlcore.load_model_file(crafted)


def empty_dataset(handle: h5py.Group, name: str, shape: tuple[int, ...]) -> None:
    """A dataset declared at ``shape`` with no data written (chunked: the file stays tiny)."""
    handle.create_dataset(name, shape=shape, dtype="f4", chunks=tuple(min(d, 1000) for d in shape))


def test_a_weights_member_declaring_huge_datasets_is_refused(small_keras, tmp_path):
    weights = tmp_path / "member.h5"
    with h5py.File(weights, "w") as handle:
        empty_dataset(handle, "layers/dense/vars/0", (100_000, 100_000))
    members = members_of(small_keras) | {"model.weights.h5": weights.read_bytes()}
    with peak_growth(), pytest.raises(
        tlcore.ModelFileError,
        match=r"The model.weights.h5 of a model file must fit the model its config.json describes\. "
              r"Received: in 'weights.keras', dataset 'layers/dense/vars/0' declares shape \(100000, 100000\)",
    ):
        tlcore.load_model_file(write_zip(tmp_path / "weights.keras", members))


@pytest.mark.slow
def test_a_trained_transfer_model_with_optimizer_state_saves_and_loads(tmp_path):
    model = tlcore.build_transfer_model(spec(backbone="MobileNetV2"))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.train_on_batch(np.zeros((2, 32, 32, 3), "float32"), np.array([0, 1]))
    model.save(tmp_path / "trained.keras")
    with zipfile.ZipFile(tmp_path / "trained.keras") as archive, h5py.File(archive.open("model.weights.h5")) as h5:
        assert "optimizer" in h5  # Adam's slots are in the file; loading uncompiled never reads them
    loaded = tlcore.load_model_file(tmp_path / "trained.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)


# --- weights files ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mobilenet():
    return tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3))


@pytest.mark.slow
def test_a_weights_file_declaring_a_huge_empty_dataset_is_refused(mobilenet, tmp_path):
    path = tmp_path / "huge.weights.h5"
    with h5py.File(path, "w") as handle:
        empty_dataset(handle, "layers/conv1/vars/0", (100_000, 100_000))
        empty_dataset(handle, "layers/conv1/vars/1", (60_000, 60_000))
    assert path.stat().st_size < 200_000
    message = (r"must fit mobilenetv2_1.00_32 \(2,257,984 parameters, input \(None, 32, 32, 3\)\)\. "
               r"Received: weights of another architecture or size: dataset 'layers/conv1/vars/0' declares "
               r"shape \(100000, 100000\), and mobilenetv2_1.00_32 has no weight of that shape "
               r"\(its largest: \(1, 1, 320, 1280\)")
    with peak_growth(), pytest.raises(tlcore.WeightsError, match=message):
        load_weights_file(mobilenet, path)
    with pytest.raises(tlcore.WeightsError, match=message):
        tlcore.load_backbone("MobileNetV2", weights=path, include_top=False, input_shape=(32, 32, 3))


@pytest.mark.slow
def test_weights_that_each_fit_but_declare_too_much_in_all_are_refused(mobilenet, tmp_path):
    path = tmp_path / "many.weights.h5"
    with h5py.File(path, "w") as handle:
        for i in range(10):
            empty_dataset(handle, f"layers/conv/vars/{i}", (1, 1, 320, 1280))
    with peak_growth(), pytest.raises(
        tlcore.WeightsError, match=r"its datasets declare more than the [\d,]+ numbers mobilenetv2_1.00_32 holds"
    ):
        load_weights_file(mobilenet, path)


@pytest.mark.slow
def test_legitimate_weights_files_load_in_both_layouts(mobilenet, tmp_path):
    keras3, legacy = tmp_path / "mine.weights.h5", tmp_path / "legacy.h5"
    mobilenet.save_weights(keras3)
    with h5py.File(legacy, "w") as handle:  # the layout of Keras-applications ImageNet files
        legacy_h5_format.save_weights_to_hdf5_group(handle, mobilenet)
    for path in (keras3, legacy):
        fresh = tlcore.load_backbone("MobileNetV2", weights=path, include_top=False, input_shape=(32, 32, 3))
        for a, b in zip(mobilenet.get_weights(), fresh.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_non_hdf5_weights_file_is_refused(mobilenet, tmp_path):
    (tmp_path / "text.h5").write_text("not weights")
    with pytest.raises(tlcore.WeightsError, match="Received: weights of another architecture or size: it is not an HDF5"):
        load_weights_file(mobilenet, tmp_path / "text.h5")


# --- Build page ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_build_page_shows_the_budget_refusal_as_an_error():
    from support import open_page

    at = open_page("../pages/build.py")
    at.selectbox(key="preset").set_value("custom").run()
    at.number_input(key="custom_size").set_value(1024).run()
    at.radio(key="build_pooling").set_value("flatten").run()
    at.number_input(key="hidden").set_value(4096).run()
    assert not at.exception
    message = at.error[0].value
    print(message)
    assert re.match(r"\*\*This model cannot be built\.\*\* A model may have at most 160,000,000 parameters on this "
                    r"server \(TL_MAX_MODEL_PARAMS\)\. Received: [\d,]+ parameters \(VGG16 at 1024x1024, flatten", message)


def test_compressed_weights_are_refused_before_hdf5_reads_them(small_keras, tmp_path):
    """HDF5 reads out of order; a deflated member is unpacked again from its start at every step back: a 90 MB
    file re-zipped with deflate took 187 s of the server's time to check (126 s of CPU), against 11 s stored."""
    assert zipfile.ZipFile(small_keras).getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED  # as Keras saves
    crafted = write_zip(tmp_path / "deflated.keras", members_of(small_keras), zipfile.ZIP_DEFLATED)
    with pytest.raises(tlcore.ModelFileError, match=r"model.weights.h5 must be stored uncompressed, as Keras's "
                                                    r"model.save writes it.*Received: 'deflated.keras' holds it "
                                                    r"compressed \(zip method 8\)"):
        tlcore.load_model_file(crafted)
