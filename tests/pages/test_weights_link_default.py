"""AppTest: a link's ``weights`` value that cannot be used falls back to what this server picks with no value.

On a server without ImageNet weights (offline, empty Keras cache) a fresh visit starts on random weights; a link
with ``?weights=random`` (not one of the choices) used to start on ImageNet, the one choice that cannot work here.
"""


import pytest
from support import RANDOM, open_link


@pytest.mark.parametrize("raw", ["random", "imagenet", "My weights"])
def test_a_bad_weights_value_offline_starts_on_the_servers_default_and_says_which(offline, store, raw):
    from ui.first_screen import WEIGHTS_DEFAULTED

    at = open_link("../pages/home.py", backbone="MobileNetV2", weights=raw)
    assert at.sidebar.radio(key="weights").value == RANDOM  # what a link without weights starts on here
    assert at.session_state[WEIGHTS_DEFAULTED]  # not chosen: Predict may start on a trained run, as without it
    notice = "\n".join(toast.value for toast in at.toast)
    assert f"`weights={raw}` in this link was not used:** `weights` must be one of ImageNet, {RANDOM}, " in notice
    assert f"Using the default, `{RANDOM}`." in notice
    assert at.query_params["weights"] == RANDOM
    assert not at.error


def test_a_good_weights_value_is_still_the_links_choice(offline, store):
    from ui.first_screen import WEIGHTS_DEFAULTED

    at = open_link("../pages/home.py", backbone="MobileNetV2", weights="ImageNet")
    assert at.sidebar.radio(key="weights").value == "ImageNet" and not at.toast
    assert WEIGHTS_DEFAULTED not in at.session_state  # chosen by the link


def test_a_bad_weights_value_where_imagenet_can_be_had_starts_on_imagenet(cached_mobilenet, store):
    at = open_link("../pages/home.py", backbone="MobileNetV2", weights="random")
    assert at.sidebar.radio(key="weights").value == "ImageNet"
    assert "Using the default, `ImageNet`." in "\n".join(toast.value for toast in at.toast)
