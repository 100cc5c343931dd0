"""The sidebar's ImageNet status names the file the build reads: MobileNetV2 has one per input size."""

import urllib.error

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from support import open_page

import tlcore

STEM = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_"


def _write_legacy(model, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


@pytest.mark.parametrize("size,file", [(96, "96"), (128, "128"), (160, "160"), (192, "192"), (224, "224"),
                                       (100, "224")])  # no file of its own at 100: Keras reads the 224 one
def test_the_no_top_status_names_the_file_of_the_input_size(keras_home, size, file):
    status = tlcore.weights_status("MobileNetV2", include_top=False, input_shape=(size, size, 3))
    assert status.file.file_name == f"{STEM}{file}_no_top.h5"
    assert status.path == keras_home / status.file.file_name


@pytest.mark.slow  # builds MobileNetV2 three times
def test_the_build_reads_the_file_the_status_names(keras_home, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline in this test")

    monkeypatch.setattr("tlcore.models.imagenet_files.urllib.request.urlopen", offline)
    made = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(160, 160, 3))
    status = tlcore.weights_status("MobileNetV2", include_top=False, input_shape=(160, 160, 3))
    _write_legacy(made, status.path)  # offline: the build finds this file or fails
    assert not tlcore.weights_status("MobileNetV2", include_top=False).cached  # the 224 file is another one
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(160, 160, 3), weights="imagenet")
    model = tlcore.build_transfer_model(spec)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    np.testing.assert_array_equal(base.get_weights()[0], made.get_weights()[0])


@pytest.mark.slow  # opens the app
@pytest.mark.parametrize("state,size", [
    (dict(preset="128"), 128),  # the Build page's size, as its widget holds it
    (dict(preset="custom", custom_size=96), 96),
    (dict(transfer_spec=tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(192, 192, 3))), 192),  # Train's
    (dict(preset="300"), None),  # no file of its own: the 224 one, said as usual
])
def test_the_sidebar_names_the_no_top_file_of_the_size_being_built(keras_home, monkeypatch, state, size):
    import ui.access

    monkeypatch.setattr(ui.access, "_connection", lambda: ("127.0.0.1", []))  # file names: for the operator
    home = open_page("../pages/home.py", backbone="MobileNetV2", weights="ImageNet", **state)
    classifier, base = [c.value for c in home.sidebar.caption if "Classifier" in c.value or "Base without" in c.value]
    assert f"{STEM}224.h5" in classifier  # Predict's full network: the default size
    if size is None:
        assert base.startswith(":material/download: Base without top:") and f"{STEM}224_no_top.h5" in base
    else:
        assert f"Base without top at {size}x{size}:" in base and f"{STEM}{size}_no_top.h5" in base
