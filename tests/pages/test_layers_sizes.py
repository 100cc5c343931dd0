"""AppTest: Layers with the top kept never stops on the size field it has switched off."""

from support import open_link


def test_a_size_left_from_without_the_top_does_not_stop_another_network_with_its_top():
    """48 px, set with the top off for VGG16, is too small for InceptionV3 without its top (75 px at least):
    with the top kept the field is off, so the page shows InceptionV3's layers, compared at its own size."""
    at = open_link("../pages/layers.py", backbone="InceptionV3", include_top="true", size="48", weights="random")
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "Layers" and int(at.metric[0].value.replace(",", "")) > 300
    assert any("(299x299)" in c.value for c in at.caption)  # the comparison at InceptionV3's own size
    at.toggle(key="include_top").set_value(False).run()  # without the top the size applies, and is refused
    assert any(e.value.startswith("**That input size does not work.**") for e in at.error)
