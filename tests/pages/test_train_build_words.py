"""AppTest: Train and Build speak plainly and agree on the model (its classes, its start, its added blocks)."""

import re

import pytest
from PIL import Image
from support import open_page

import tlcore

SMALL = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)
TRAIN_CONTROLS = ["epochs", "batch_size", "learning_rate", "optimizer", "validation", "augment", "patience",
                  "fine_tune", "fine_from", "fine_epochs", "fine_rate", "with_scratch", "dataset_source"]
BUILD_CONTROLS = ["base_run", "preset", "build_pooling", "training", "conv_blocks", "conv_filters", "conv_kernel",
                  "conv_pool", "pool_size", "hidden", "dropout", "classes"]


def _widget(at, key):
    for kind in ("number_input", "selectbox", "slider", "checkbox", "toggle", "radio"):
        found = [w for w in getattr(at, kind) if w.key == key]
        if found:
            return found[0]
    raise AssertionError(f"no widget with key {key!r}")


def _help(widget) -> str:
    return widget.proto.help


def test_every_train_setting_has_a_one_line_help_in_plain_words():
    at = open_page("../pages/train.py", transfer_spec=SMALL)
    for key in TRAIN_CONTROLS:
        text = _help(_widget(at, key))
        assert 20 <= len(text) <= 300 and "\n" not in text, (key, text)
    assert "never trained on" in _help(_widget(at, "validation"))
    assert "has not improved" in _help(_widget(at, "patience"))


def test_every_build_control_has_a_one_line_help_in_plain_words():
    at = open_page("../pages/build.py")
    at.number_input(key="conv_blocks").set_value(1).run()
    for key in BUILD_CONTROLS:
        text = _help(_widget(at, key))
        assert 20 <= len(text) <= 300 and "\n" not in text, (key, text)
    assert "average" in _help(_widget(at, "build_pooling")).lower()


def test_train_says_the_head_is_rebuilt_for_the_datasets_classes_and_build_then_follows_them():
    at = open_page("../pages/train.py", transfer_spec=SMALL)  # Build's head: 2 outputs; the sample: 4 classes
    infos = " ".join(i.value for i in at.info)
    assert "**The new head is rebuilt for 4 classes.** The model from Build ends in 2 outputs" in infos
    warning = " ".join(w.value for w in at.warning)
    assert "(25% for 4 classes)" in warning  # frozen random layers: chance for these images
    at.switch_page("../pages/build.py").run()
    assert not at.exception
    classes = at.number_input(key="classes")
    assert classes.value == 4 and classes.disabled
    assert "The 4 classes of the images chosen on Train." in [c.value for c in at.caption]
    assert at.session_state["transfer_spec"].num_classes == 4
    at.switch_page("../pages/train.py").run()
    assert not any("rebuilt" in i.value for i in at.info)  # Build and training now agree


def test_the_chance_level_follows_the_datasets_real_class_count(tmp_path, monkeypatch):
    for name in ("leaves", "bark", "moss"):
        (tmp_path / "three" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (24, 24), (40 * i, 80, 120)).save(tmp_path / "three" / name / f"{i}.png")
    monkeypatch.setenv("TL_DATASET_ROOTS", str(tmp_path))
    at = open_page("../pages/train.py", transfer_spec=SMALL, dataset_source="Folder on the server",
                   dataset_folder="three")
    warning = " ".join(w.value for w in at.warning)
    assert "(33% for 3 classes)" in warning and "4 classes" not in warning


def test_start_from_does_not_call_random_weights_pretrained():
    at = open_page("../pages/build.py")  # the sidebar: random (untrained) weights
    shown = at.selectbox(key="base_run").options[0]
    assert shown == "VGG16 with random (untrained) weights, as chosen in the sidebar"
    assert "pretrained on ImageNet" not in shown


@pytest.mark.parametrize("blocks, words", [(1, "1 new convolutional block of 64 3x3 filters"),
                                           (2, "2 new convolutional blocks of 64 3x3 filters")])
def test_the_train_caption_names_the_added_convolutional_blocks(blocks, words):
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(64, 64, 3), weights=None, conv_blocks=blocks)
    at = open_page("../pages/train.py", transfer_spec=spec)
    caption = next(c.value for c in at.caption if c.value.startswith("Model from the Build page"))
    assert words in caption, caption
    assert re.search(r"VGG16 at 64x64, \d new convolutional block", caption)
