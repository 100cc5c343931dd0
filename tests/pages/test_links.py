"""AppTest: a link with a value the page cannot take opens the page at the default, with a notice."""

import pytest
import support
from streamlit.testing.v1 import AppTest
from support import RANDOM


def open_link(page: str, **params: str) -> AppTest:
    """The app opened from a link with random weights and ``params``, then ``page``."""
    return support.open_link(page, weights=RANDOM, **params)


def notices(at: AppTest) -> str:
    return "\n".join(toast.value for toast in at.toast)


@pytest.mark.parametrize("key, raw, accepted, default, widget", [
    ("dropout", "5", "a number from 0.0 to 0.9", 0.2, "slider"),
    ("dropout", "nan", "a number from 0.0 to 0.9", 0.2, "slider"),
    ("hidden", "-3", "a whole number from 0 to 4096", 256, "number_input"),
    ("classes", "abc", "a whole number from 2 to 1000", 2, "number_input"),
    ("build_pooling", "median", "one of avg, max, flatten", "avg", "radio"),
])
def test_build_link_out_of_range_falls_back_with_a_notice(key, raw, accepted, default, widget):
    at = open_link("../pages/build.py", backbone="VGG16", preset="128", **{key: raw})
    assert not at.error  # the page works: the model is built with the default
    assert "4x4x512" in at.success[0].value
    assert getattr(at, widget)(key=key).value == default  # the control that fixes it is there
    message = notices(at)
    assert f"`{key}={raw}` in this link was not used:** `{key}` must be {accepted}." in message
    assert f"Using the default, `{default}`" in message
    assert at.query_params[key] == str(default)  # the address now says what the page shows


def test_build_custom_size_too_large_for_the_widget():
    at = open_link("../pages/build.py", backbone="VGG16", preset="custom", custom_size="99999")
    assert at.number_input(key="custom_size").value == 64
    assert "`custom_size=99999` in this link was not used" in notices(at)
    assert "a whole number from 1 to 4096" in notices(at)
    assert "2x2x512" in at.success[0].value  # 64x64 builds


def test_several_bad_values_give_one_notice_each_and_good_ones_are_kept():
    at = open_link("../pages/build.py", backbone="VGG16", preset="128", dropout="5", hidden="-3",
                   classes="abc", build_pooling="max")
    assert len(at.toast) == 3
    assert at.radio(key="build_pooling").value == "max"
    assert at.session_state["transfer_spec"].pooling == "max"


def test_unknown_backbone_falls_back_to_vgg16_with_a_notice():
    at = open_link("../pages/home.py", backbone="AlexNet")  # the sidebar reads it on the first run
    assert at.sidebar.selectbox(key="backbone").value == "VGG16"
    message = notices(at)
    assert "`backbone` must be one of VGG16, VGG19, ResNet50" in message
    assert "`backbone=AlexNet` in this link" in message and "Using the default, `VGG16`" in message
    assert at.query_params["backbone"] == "VGG16"


@pytest.mark.slow
def test_layers_size_and_toggle_with_bad_values():
    at = open_link("../pages/layers.py", backbone="VGG16", include_top="maybe", size="3")
    assert not at.error
    assert at.toggle(key="include_top").value is True
    assert at.number_input(key="size").value == 224
    message = notices(at)
    assert "`include_top` must be one of True, False" in message
    assert "`size=3` in this link was not used:** `size` must be a whole number from 8 to 1024" in message


def test_good_values_give_no_notice():
    at = open_link("../pages/build.py", backbone="VGG16", preset="custom", custom_size="96",
                   dropout="0.5", hidden="0", classes="10")
    assert not at.toast
    assert (at.number_input(key="custom_size").value, at.slider(key="dropout").value) == (96, 0.5)
    assert (at.number_input(key="hidden").value, at.number_input(key="classes").value) == (0, 10)


def test_a_very_long_value_is_shortened_in_the_notice():
    at = open_link("../pages/build.py", backbone="VGG16", preset="128", classes="9" * 500)
    assert at.number_input(key="classes").value == 2
    assert "`classes=" + "9" * 57 + "...` in this link" in notices(at)
