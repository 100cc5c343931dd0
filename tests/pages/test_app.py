"""AppTest: every page runs, and each page shows the user what it should."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, image_bytes, open_page

pytestmark = pytest.mark.slow  # every test opens pages in AppTest for seconds

PAGES = [f"../pages/{name}.py" for name in ("home", "predict", "features", "layers", "build", "train", "runs")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_an_exception_inside_the_router(page):
    at = open_page(page, backbone="MobileNetV2")
    assert at.title[0].value
    assert at.sidebar.selectbox[0].label == "Backbone"  # app/streamlit_app.py ran around the page


def test_no_pages_folder_beside_the_entrypoint():
    # Streamlit 1.67 would switch to its legacy pages/ mode (see app/streamlit_app.py).
    assert not (Path(APP).parent / "pages").exists()
    assert all((Path(APP).parent / page).resolve().is_file() for page in PAGES)


def test_home_links_each_way_of_reusing_a_network():
    at = open_page("../pages/home.py")
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    for phrase in ("Transfer learning", "4,096", "frozen"):
        assert phrase in text


def test_predict_uploaded_image_gives_five_rows():
    at = open_page("../pages/predict.py", backbone="MobileNetV2")
    at.file_uploader[0].set_value(("photo.png", image_bytes((90, 60), seed=5), "image/png")).run()
    assert not at.exception and not at.error
    table = at.table[0].value
    assert len(table) == 5
    probabilities = list(table["probability"])
    assert 0 < probabilities[0] <= 1
    assert list(probabilities) == sorted(probabilities, reverse=True)
    assert "not predictions" in at.warning[0].value  # random weights are labelled as such
    assert any("Prediction took" in c.value for c in at.caption)


def test_predict_text_file_named_png_shows_an_error_and_the_page_recovers():
    at = open_page("../pages/predict.py", backbone="MobileNetV2")
    at.file_uploader[0].set_value(("notes.png", b"this is text, not a picture", "image/png")).run()
    assert not at.exception
    assert "must be JPEG, PNG, WebP, BMP, GIF or TIFF" in at.error[0].value
    assert len(at.table) == 0
    at.file_uploader[0].set_value(("ok.jpg", image_bytes(fmt="JPEG"), "image/jpeg")).run()
    assert not at.error and len(at.table[0].value) == 5


def test_predict_with_cached_imagenet_weights(cached_mobilenet):
    home = open_page("../pages/home.py", backbone="MobileNetV2", weights="ImageNet")
    status = [c.value for c in home.sidebar.caption]
    assert "ImageNet weights on this server" in status[0]  # the classifier file the test wrote
    assert "downloaded on first use" in status[1] and "no_top.h5" not in status[1]  # file names: the operator's
    at = open_page("../pages/predict.py", backbone="MobileNetV2", weights="ImageNet")
    assert not at.error
    assert not at.warning  # real (cached) weights: no "untrained" warning
    assert len(at.table[0].value) == 5  # the default sample image
    assert not at.get("progress")  # nothing to download, no bar


def test_predict_without_weights_offline_says_so_calmly(monkeypatch):
    import urllib.error

    import tlcore.models.imagenet_files
    import ui.first_screen

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tlcore.models.imagenet_files.urllib.request, "urlopen", offline)
    ui.first_screen._reachable.clear()
    at = open_page("../pages/predict.py", backbone="DenseNet121", weights="ImageNet")
    assert not at.error  # no red box: one calm notice with what works
    notice = " ".join(m.value for m in at.main.markdown)
    assert "DenseNet121's ImageNet weights are not on this server, and it cannot download them now" in notice
    assert "densenet121_weights_tf_dim_ordering_tf_kernels.h5" not in notice  # the operator's business
    assert at.button(key="offline-random").label == "Explore with random weights"
    assert len(at.table) == 0  # no untrained output passed off as predictions
    ui.first_screen._unreachable.clear()


def test_layers_vgg16_with_and_without_top():
    at = open_page("../pages/layers.py")
    assert len(at.dataframe[0].value) == 23
    assert at.metric[1].value == "138,357,544"
    comparison = at.dataframe[1].value
    assert list(comparison.query("status == 'removed'")["name"]) == ["flatten", "fc1", "fc2", "predictions"]
    at.toggle[0].set_value(False).run()
    assert len(at.dataframe[0].value) == 19
    assert at.metric[1].value == "14,714,688"
    at.selectbox(key="pooling").set_value("avg").run()
    assert at.dataframe[0].value["output_shape"].iloc[-1] == "(None, 512)"


def test_build_16x16_is_explained_before_keras_fails():
    at = open_page("../pages/build.py")
    at.selectbox(key="preset").set_value("custom").run()
    at.number_input(key="custom_size").set_value(16).run()
    assert not at.exception
    message = at.error[0].value
    assert "at least 32x32 for VGG16" in message and "five 2x2 max-poolings" in message
    assert "transfer_spec" not in at.session_state or at.session_state["transfer_spec"].input_shape != (16, 16, 3)


def test_build_48_notes_the_1x1_map_and_freezing_marks_layers():
    at = open_page("../pages/build.py")
    at.selectbox(key="preset").set_value("48").run()
    assert "1x1x512" in at.info[0].value
    at.radio(key="training").set_value("Train from a layer").run()
    at.selectbox(key="trainable_from").set_value("block5_conv1").run()
    layers = at.dataframe[0].value.set_index("name")
    assert not layers.loc["block4_conv3", "trainable"] and layers.loc["block5_conv1", "trainable"]
    spec = at.session_state["transfer_spec"]
    assert spec.input_shape == (48, 48, 3) and spec.trainable_from == "block5_conv1"
    assert at.query_params["trainable_from"] == "block5_conv1"


def test_features_vgg16_gives_4096_values_per_image():
    at = open_page("../pages/features.py")
    assert not at.error
    table = at.dataframe[0].value
    assert len(table) == 3 and set(table["length"]) == {4096}
    assert "4,096 values from `fc2`" in at.subheader[0].value
    downloads = [button.label for button in at.get("download_button")]
    assert "Download CSV" in downloads and "Download .npy" in downloads


def test_choices_travel_in_the_url():
    at = open_page("../pages/layers.py", backbone="VGG16")
    assert at.query_params["backbone"] == "VGG16"
    shared = AppTest.from_file(APP, default_timeout=180)
    shared.query_params["backbone"] = "ResNet50"
    shared.query_params["include_top"] = "False"
    shared.query_params["size"] = "128"
    shared.run()
    assert shared.sidebar.selectbox[0].value == "ResNet50"
    shared.switch_page("../pages/layers.py").run()
    assert not shared.toggle[0].value
    assert shared.dataframe[0].value["output_shape"].iloc[-1] == "(None, 4, 4, 2048)"


def test_predict_with_an_uploaded_keras_model_and_a_refused_one(tmp_path):
    import keras

    import tlcore

    model = tlcore.build_transfer_model(tlcore.TransferSpec(
        backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=4, num_classes=3))
    model.save(tmp_path / "mine.keras")
    at = open_page("../pages/predict.py", backbone="MobileNetV2")
    at.selectbox(key="predict_model").set_value("uploaded").run()
    at.text_input(key="model_classes").input("red, green, blue").run()
    at.file_uploader(key="model_file").set_value(
        ("mine.keras", (tmp_path / "mine.keras").read_bytes(), "application/octet-stream")).run()
    assert not at.exception and not at.error
    assert set(at.table[0].value["label"]) == {"red", "green", "blue"}

    lam = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(lambda x: x)])
    lam.save(tmp_path / "lambda.keras")
    at.file_uploader(key="model_file").set_value(
        ("lambda.keras", (tmp_path / "lambda.keras").read_bytes(), "application/octet-stream")).run()
    assert not at.exception
    assert "no Lambda layers" in at.error[0].value
