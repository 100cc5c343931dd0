"""Weights files that declare more than they store: what Keras would read is checked first.

A weights file is checked from its HDF5 metadata before Keras sees it: every
dataset Keras reads, followed as Keras follows it (the legacy ``.h5`` layout
through its ``layer_names`` and ``weight_names`` attributes, the Keras 3
``.weights.h5`` layout through its ``vars`` groups), must be one of the
model's weight shapes, and all the reads together may hold no more numbers
than the model has. The attacks below store almost nothing and declare
gigabytes; each one would make Keras allocate them.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import tlcore
from tlcore.models.weights import load_weights_file
from tlcore.models.weights_probe import weights_file_problem

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (96, 96, 3)
BIG = 400_000_000  # float32: 1.6 GB declared each, nothing stored
LARGEST = r"its largest: \(1280, 1000\)"  # the full MobileNetV2's largest weight, named in each refusal


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """A full MobileNetV2 (weights=None) and its weights in both layouts."""
    folder = tmp_path_factory.mktemp("mobilenet")
    model = tlcore.load_backbone("MobileNetV2", weights=None, include_top=True, input_shape=SHAPE)
    with h5py.File(folder / "full.h5", "w") as handle:  # the legacy layout of Keras's ImageNet files
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    model.save_weights(folder / "full.weights.h5")
    return model, folder


def _names(handle, group="/"):
    return [n.decode() if isinstance(n, bytes) else n for n in handle[group].attrs["layer_names"]]


def _set_names(handle, names, group="/"):
    handle[group].attrs["layer_names"] = np.array([n.encode() for n in names])


def _huge(group, *names):
    for name in names:
        group.create_dataset(name, shape=(BIG,), dtype="f4")  # no data: nothing is stored


def optimizer_weights_listed(handle):
    """The finding: ``optimizer_weights`` listed in ``layer_names`` in Conv1's place."""
    names = _names(handle)
    names[names.index("Conv1")] = "optimizer_weights"
    _set_names(handle, names)
    group = handle.create_group("optimizer_weights")
    _huge(group, "a", "b", "c")
    group.attrs["weight_names"] = [b"a", b"b", b"c"]
    return r"dataset 'optimizer_weights/a' declares shape \(400000000,\)", "optimizer_weights/a"


def layer_under_optimizer(handle):
    """A listed layer inside the ``optimizer`` group (a path Keras follows part by part)."""
    names = _names(handle)
    names[names.index("Conv1")] = "optimizer/Conv1"
    _set_names(handle, names)
    group = handle.create_group("optimizer/Conv1")
    _huge(group, "kernel")
    group.attrs["weight_names"] = [b"kernel"]
    return r"dataset 'optimizer/Conv1/kernel' declares shape \(400000000,\)", "optimizer/Conv1/kernel"


def real_layer_linked_to_huge_group(handle):
    """A real layer ("predictions") whose weight_names reach a huge group through a second hard link."""
    _huge(handle.create_group("optimizer_weights"), "kernel", "bias")
    handle["predictions/w"] = handle["optimizer_weights"]
    handle["predictions"].attrs["weight_names"] = [b"w/kernel", b"w/bias"]
    return r"'predictions/w' is one HDF5 object under 2 names", "predictions/w"


def real_layer_names_a_huge_dataset(handle):
    """A real layer ("predictions") whose weight_names point to a huge dataset beside its own."""
    _huge(handle["predictions"], "predictions/huge")
    handle["predictions"].attrs["weight_names"] = [b"predictions/huge", b"predictions/bias"]
    return r"dataset 'predictions/predictions/huge' declares shape \(400000000,\)", "predictions/predictions/huge"


def top_kernel_read_1000_times(handle):
    """A real dataset of a real shape, listed 1,000 times: Keras reads it 1,000 times (5 GB)."""
    handle["predictions"].attrs["weight_names"] = [b"predictions/kernel"] * 1000
    return (r"its datasets declare more than the 3,538,984 numbers mobilenetv2_1.00_96 holds "
            r"\(at 'predictions/predictions/kernel'; a dataset counts each time Keras reads it\)",
            "predictions/predictions/kernel")


ATTACKS = [optimizer_weights_listed, layer_under_optimizer, real_layer_linked_to_huge_group,
           real_layer_names_a_huge_dataset, top_kernel_read_1000_times]


def crafted(mobilenet, tmp_path, attack):
    _, folder = mobilenet
    path = tmp_path / "attack.h5"
    shutil.copy(folder / "full.h5", path)
    with h5py.File(path, "a") as handle:
        expected, named = attack(handle)
    return path, expected, named


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
@pytest.mark.slow
def test_an_attack_is_named_by_the_probe_and_refused_by_load_backbone(mobilenet, tmp_path, attack):
    model, _ = mobilenet
    path, expected, named = crafted(mobilenet, tmp_path, attack)
    assert path.stat().st_size < 20_000_000  # stores the real weights at most, declares gigabytes
    problem = weights_file_problem(path, model)
    assert problem is not None and re.search(expected, problem), problem
    with pytest.raises(tlcore.WeightsError, match=r"must fit mobilenetv2_1.00_96 .*Received: .*" + expected):
        tlcore.load_backbone("MobileNetV2", weights=path, include_top=True, input_shape=SHAPE)
    with pytest.raises(tlcore.WeightsError, match=f"Received: .*'{named}'"):  # the base: refused at the same name
        tlcore.load_backbone("MobileNetV2", weights=path, include_top=False, input_shape=SHAPE)


def test_the_finding_names_the_dataset_and_the_shapes_expected(mobilenet, tmp_path):
    path, _, _ = crafted(mobilenet, tmp_path, optimizer_weights_listed)
    with pytest.raises(tlcore.WeightsError,
                       match=r"must fit mobilenetv2_1.00_96 .*Received: weights of another architecture or size: "
                             r"dataset 'optimizer_weights/a' declares shape \(400000000,\), and "
                             r"mobilenetv2_1.00_96 has no weight of that shape \(" + LARGEST):
        tlcore.load_backbone("MobileNetV2", weights=path, include_top=True, input_shape=SHAPE)


_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import tlcore
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    tlcore.load_backbone("MobileNetV2", weights=sys.argv[1], include_top=True, input_shape=(96, 96, 3))
except tlcore.WeightsError as exc:
    print("REFUSED", exc)
else:
    print("LOADED")
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("attack", [optimizer_weights_listed, top_kernel_read_1000_times],
                         ids=lambda a: a.__name__)
@pytest.mark.slow
def test_the_refusal_runs_under_a_3_gib_address_space(mobilenet, tmp_path, attack):
    path, expected, _ = crafted(mobilenet, tmp_path, attack)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    refused = next(line for line in lines if line.startswith(("REFUSED", "LOADED")))
    assert refused.startswith("REFUSED") and re.search(expected, refused), refused
    growth_kb = int(next(line for line in lines if line.startswith("GROWTH_KB")).split()[1])
    assert growth_kb < 600_000  # the model itself, never the gigabytes the file declares


# ---------------------------------------------------------------- real files still load

@pytest.mark.parametrize("name", ["full.h5", "full.weights.h5"])
@pytest.mark.slow
def test_real_files_of_both_layouts_load(mobilenet, name):
    model, folder = mobilenet
    assert weights_file_problem(folder / name, model) is None
    loaded = tlcore.load_backbone("MobileNetV2", weights=folder / name, include_top=True, input_shape=SHAPE)
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def _small(compiled: bool) -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs), name="small")
    if compiled:
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.ones((2, 4)), np.ones((2, 3)), epochs=1, verbose=0)  # builds the optimizer's variables
    return model


def test_a_keras3_file_with_its_optimizer_loads_into_an_uncompiled_model(tmp_path):
    trained = _small(compiled=True)
    path = tmp_path / "trained.weights.h5"
    trained.save_weights(path)
    with h5py.File(path) as handle:
        assert "optimizer" in handle  # Adam's two moments: more numbers than the model holds
    fresh = _small(compiled=False)
    assert weights_file_problem(path, fresh) is None  # Keras never reads "optimizer" for it
    assert weights_file_problem(path, trained) is None  # and reads it, as Adam's shapes, for this one
    load_weights_file(fresh, path)
    np.testing.assert_array_equal(fresh.get_weights()[0], trained.get_weights()[0])


def test_a_keras3_optimizer_group_is_read_for_a_compiled_model(tmp_path):
    trained = _small(compiled=True)
    path = tmp_path / "trained.weights.h5"
    trained.save_weights(path)
    with h5py.File(path, "a") as handle:
        _huge(handle["optimizer/vars"], "huge")
    assert weights_file_problem(path, _small(compiled=False)) is None
    assert "dataset 'optimizer/vars/huge' declares shape (400000000,)" in weights_file_problem(path, trained)


def test_a_legacy_whole_model_file_is_read_through_model_weights(tmp_path):
    trained = _small(compiled=True)
    path = tmp_path / "whole.h5"
    legacy_h5_format.save_model_to_hdf5(trained, path)
    with h5py.File(path) as handle:
        assert "model_weights" in handle and "optimizer_weights" in handle
    fresh = _small(compiled=False)
    load_weights_file(fresh, path)
    np.testing.assert_array_equal(fresh.get_weights()[0], trained.get_weights()[0])
    with h5py.File(path, "a") as handle:
        _huge(handle["model_weights/dense/dense"], "huge")
        handle["model_weights/dense"].attrs["weight_names"] = [b"dense/huge", b"dense/bias"]
    with pytest.raises(tlcore.WeightsError, match=r"dataset 'model_weights/dense/dense/huge' declares shape"):
        load_weights_file(fresh, path)


# ---------------------------------------------------------------- attributes and links

def _legacy_copy(mobilenet, tmp_path, edit):
    def attack(handle):
        edit(handle)
        return "", ""
    return crafted(mobilenet, tmp_path, attack)[0]


def _names_in_parts(handle):
    """``layer_names`` as Keras splits a long one: ``layer_names0``, ``layer_names1``, ..."""
    del handle.attrs["layer_names"]
    for part in range(5):
        handle.attrs[f"layer_names{part}"] = np.array([b"Conv1"] * 4_000)


def _many_weight_names(handle):
    """17 layers listing 6,000 weights each: within each list's limit, past the file's."""
    layers = [name for name in _names(handle) if len(handle[name].attrs["weight_names"])]
    for name in layers[:17]:
        handle[name].attrs["weight_names"] = np.array([b"k"] * 6_000)


@pytest.mark.parametrize("edit,expected", [
    pytest.param(_many_weight_names, r"the layer_names and weight_names Keras reads may list at most 100,000 "
                 r"names in all. Received: more, by attribute 'weight_names' of '/", id="too many in all"),
    pytest.param(_names_in_parts, r"attribute 'layer_names2' of '/' may list at most 10,000 names. "
                 r"Received: 12,000", id="too many in one list"),
    pytest.param(lambda h: h.attrs.__setitem__("layer_names", np.array([b"x" * 5_000])),
                 r"attribute 'layer_names' of '/' must be a list of names \(strings\), at most 1,000 characters "
                 r"each. Received: 5,000 bytes each", id="names too long"),
    pytest.param(lambda h: h.attrs.__setitem__("layer_names", np.arange(156)),
                 r"attribute 'layer_names' of '/' must be a list of names \(strings\). Received: int64",
                 id="numbers for names"),
    pytest.param(lambda h: h.attrs.__setitem__("layer_names", b"Conv1"),
                 r"attribute 'layer_names' of '/' must be a list of names \(strings\). Received: a single value",
                 id="one string for a list"),
    pytest.param(lambda h: h["Conv1"].attrs.__setitem__("weight_names", [b"Conv1/missing"]),
                 r"'Conv1' lists weight 'Conv1/missing', and the file has no dataset there", id="missing dataset"),
    pytest.param(lambda h: h.attrs.__setitem__("layer_names", np.array([b"nowhere"])),
                 r"lists layer 'nowhere', and the file has no group there", id="missing group"),
    pytest.param(lambda h: h["Conv1"].attrs.__setitem__("weight_names", [b"/Conv1/Conv1/kernel"]),
                 r"'Conv1' lists weight '/Conv1/Conv1/kernel', which Keras cannot follow", id="absolute name"),
])
def test_attributes_keras_would_follow_are_checked(mobilenet, tmp_path, edit, expected):
    model, _ = mobilenet
    path = _legacy_copy(mobilenet, tmp_path, edit)
    problem = weights_file_problem(path, model)
    assert problem is not None and re.search(expected, problem), problem


def _soft_dataset(handle):
    handle["elsewhere"] = handle["Conv1/Conv1/kernel"][...]
    del handle["Conv1/Conv1/kernel"]
    handle["Conv1/Conv1/kernel"] = h5py.SoftLink("/elsewhere")


def _soft_group(handle):
    handle.move("predictions", "moved")
    handle["predictions"] = h5py.SoftLink("/moved")


def _external(handle):
    del handle["Conv1/Conv1/kernel"]
    handle["Conv1/Conv1/kernel"] = h5py.ExternalLink("/etc/other.h5", "/kernel")


def _virtual(handle):
    layout = h5py.VirtualLayout(shape=(3, 3, 3, 32), dtype="f4")
    del handle["Conv1/Conv1/kernel"]
    handle["Conv1/Conv1"].create_virtual_dataset("kernel", layout)


def _text(handle):
    del handle["Conv1/Conv1/kernel"]
    handle["Conv1/Conv1"].create_dataset("kernel", shape=(3, 3, 3, 32), dtype=h5py.string_dtype())


@pytest.mark.parametrize("edit,expected", [
    pytest.param(_soft_dataset, r"'Conv1/Conv1/kernel' is a soft link", id="soft link to a dataset"),
    pytest.param(_soft_group, r"'predictions' is a soft link", id="soft link to a layer"),
    pytest.param(_external, r"'Conv1/Conv1/kernel' links to another file \('/etc/other.h5'\)", id="external link"),
    pytest.param(_virtual, r"dataset 'Conv1/Conv1/kernel' keeps its data outside the file", id="virtual"),
    pytest.param(_text, r"dataset 'Conv1/Conv1/kernel' declares dtype object, and weights are numbers", id="text"),
])
def test_links_and_datasets_keras_would_read_are_checked(mobilenet, tmp_path, edit, expected):
    model, _ = mobilenet
    path = _legacy_copy(mobilenet, tmp_path, edit)
    problem = weights_file_problem(path, model)
    assert problem is not None and re.search(expected, problem), problem


def _keras3_copy(mobilenet, tmp_path, edit):
    _, folder = mobilenet
    path = tmp_path / "attack.weights.h5"
    shutil.copy(folder / "full.weights.h5", path)
    with h5py.File(path, "a") as handle:
        edit(handle)
    return path


def _keras3_huge(handle):
    del handle["layers/conv2d/vars/0"]
    _huge(handle["layers/conv2d/vars"], "0")


def _keras3_linked(handle):
    _huge(handle.create_group("optimizer/vars"), "0", "1")
    del handle["layers/dense/vars"]
    handle["layers/dense/vars"] = handle["optimizer/vars"]


def _keras3_soft(handle):
    handle.move("layers/dense/vars", "moved")
    handle["layers/dense/vars"] = h5py.SoftLink("/moved")


@pytest.mark.parametrize("edit,expected", [
    pytest.param(_keras3_huge, r"dataset 'layers/conv2d/vars/0' declares shape \(400000000,\)", id="huge"),
    pytest.param(_keras3_linked, r"is one HDF5 object under 2 names", id="hard-linked twice"),
    pytest.param(_keras3_soft, r"'layers/dense/vars' is a soft link", id="soft link"),
])
def test_keras3_layout_attacks_are_refused(mobilenet, tmp_path, edit, expected):
    model, _ = mobilenet
    path = _keras3_copy(mobilenet, tmp_path, edit)
    problem = weights_file_problem(path, model)
    assert problem is not None and re.search(expected, problem), problem
    with pytest.raises(tlcore.WeightsError, match=expected):
        tlcore.load_backbone("MobileNetV2", weights=path, include_top=True, input_shape=SHAPE)


def test_the_address_space_limit_is_real():
    """The child's limit is the one the refusal test relies on (a 3 GiB array cannot be made)."""
    script = ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
              "import numpy\ntry:\n    numpy.ones(3 << 30, dtype='u1')\nexcept MemoryError:\n    print('limited')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "limited"
