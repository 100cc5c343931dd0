"""AppTest: Layers with the top kept never stops on the size field it has switched off."""

from support import open_link


def test_a_size_left_from_without_the_top_does_not_stop_another_network_with_its_top():
    """16 px, set with the top off for another network, is too small for MobileNetV2 without its top (32 px at
    least): with the top kept the field is off, so the page shows MobileNetV2's layers, compared at its own size."""
    at = open_link("../pages/layers.py", backbone="MobileNetV2", include_top="true", size="16", weights="random")
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "Layers" and int(at.metric[0].value.replace(",", "")) > 150
    assert any("(224x224)" in c.value for c in at.caption)  # the comparison at MobileNetV2's own size
    at.toggle(key="include_top").set_value(False).run()  # without the top the size applies, and is refused
    assert any(e.value.startswith("**That input size does not work.**") for e in at.error)
