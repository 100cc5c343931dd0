"""Predict's "Heatmap for" follows the current top-5 of the current model and image, never a previous one's."""

import keras
import pytest
from support import open_page

import tlcore

pytestmark = pytest.mark.slow  # opens Predict and computes Grad-CAM


def _picker(at):
    return next(box for box in at.selectbox if box.label == "Heatmap for")


def _expected_options(table) -> list[str]:
    return [f"{rank}. {label} ({p:.1%})" for rank, label, p in zip(table["rank"], table["label"], table["probability"])]


@pytest.fixture(scope="module")
def six_class_model(tmp_path_factory):
    keras.utils.set_random_seed(4)  # a small network whose scores follow the image's colours
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(6, activation="softmax",
                                                 kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))])
    path = tmp_path_factory.mktemp("model") / "six.keras"
    model.save(path)
    return path.read_bytes()


def _rows(table) -> list[tuple[int, str]]:
    return [(int(c), f"{p:.1%}") for c, p in zip(table["class_id"], table["probability"])]


def test_a_new_image_brings_the_choice_back_to_its_own_top_1(six_class_model):
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_model="uploaded", sample="cat",
                   model_classes="a, b, c, d, e, f")
    at.file_uploader(key="model_file").set_value(("six.keras", six_class_model, "application/octet-stream")).run()
    first = at.table[0].value
    _picker(at).set_value(int(first["class_id"].iloc[2])).run()  # the third class of the cat
    assert _picker(at).value == int(first["class_id"].iloc[2])
    assert at.image[-1].captions == [f"Heat for {first['label'].iloc[2]} over what the network sees"]

    at.selectbox(key="sample").set_value("rocket").run()
    assert not at.exception
    second = at.table[0].value
    assert _rows(second) != _rows(first)  # another image, another top-5
    picker = _picker(at)
    assert picker.options == _expected_options(second)  # the rocket's five, with the rocket's ranks
    assert picker.value == int(second["class_id"].iloc[0])
    assert at.image[-1].captions == [f"Heat for {second['label'].iloc[0]} over what the network sees"]


def test_another_model_offers_only_its_own_classes(tmp_path):
    keras.utils.set_random_seed(2)
    model = tlcore.build_transfer_model(tlcore.TransferSpec(
        backbone="MobileNetV2", input_shape=(64, 64, 3), weights=None, hidden_units=4, num_classes=3))
    model.save(tmp_path / "mine.keras")
    at = open_page("../pages/predict.py", backbone="MobileNetV2")
    imagenet = at.table[0].value
    _picker(at).set_value(int(imagenet["class_id"].iloc[1])).run()

    at.selectbox(key="predict_model").set_value("uploaded").run()
    at.text_input(key="model_classes").set_value("leaves, bark, moss").run()
    at.file_uploader(key="model_file").set_value(
        ("mine.keras", (tmp_path / "mine.keras").read_bytes(), "application/octet-stream")).run()
    assert not at.exception and not at.error
    table = at.table[0].value
    assert set(table["label"]) == {"leaves", "bark", "moss"}
    picker = _picker(at)
    assert picker.options == _expected_options(table)  # three classes of this model, no ImageNet class
    assert picker.value == int(table["class_id"].iloc[0])
    assert at.image[-1].captions == [f"Heat for {table['label'].iloc[0]} over what the network sees"]


def test_a_new_image_with_the_same_table_still_starts_at_its_top_1():
    at = open_page("../pages/predict.py", backbone="MobileNetV2", sample="cat")  # untrained: the same table for all
    first = at.table[0].value
    _picker(at).set_value(int(first["class_id"].iloc[2])).run()
    at.selectbox(key="sample").set_value("rocket").run()
    second = at.table[0].value
    assert list(second["class_id"]) == list(first["class_id"])  # the case the key must not rely on
    assert _picker(at).value == int(second["class_id"].iloc[0])
    assert at.image[-1].captions == [f"Heat for {second['label'].iloc[0]} over what the network sees"]


def test_the_same_top_5_from_another_engine_keeps_the_heatmap_choice():
    """The first top-5 after a start comes from the LiteRT copy, the next from Keras: probabilities a
    millionth apart made a new "Heatmap for" widget, which dropped the class the person had picked."""
    import pandas as pd

    from ui.grad_cam import heatmap_key

    lite = pd.DataFrame({"rank": [1, 2], "label": ["fox squirrel", "French loaf"], "class_id": [335, 930],
                         "probability": [0.842_000_4, 0.013_000_1]})
    keras_table = lite.assign(probability=lite["probability"] + 5.4e-7)
    assert heatmap_key(keras_table, "m|cat") == heatmap_key(lite, "m|cat")
    assert heatmap_key(lite.assign(probability=[0.851, 0.013]), "m|cat") != heatmap_key(lite, "m|cat")  # shown apart
    assert heatmap_key(lite, "m|rocket") != heatmap_key(lite, "m|cat")  # another image
