"""AppTest: a link may open Features' dataset map, but only a visitor's click places the images.

``?features_map=dataset`` used to pass a whole dataset through the network as the page opened, for every new
session (a CPU-minute for VGG16 on the sample). Now the link opens the view with a *Place the images* button;
what the session has placed stays shown, and choosing the view on the page is itself a click.
"""

import pytest
from support import RANDOM, open_link, open_page

import tlcore

LINK = dict(backbone="MobileNetV2", features_map="dataset", map_images="8")


@pytest.fixture
def passes(monkeypatch):
    """Every call of ``tlcore.dataset_map`` (the pass over the dataset), counted, and then made as usual."""
    calls = []
    real = tlcore.dataset_map

    def counted(*args, **kwargs):
        calls.append(kwargs.get("limit"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tlcore, "dataset_map", counted)
    return calls


def placed(at) -> bool:
    return any(" of 256 images" in heading.value for heading in at.subheader)


def test_a_map_link_opens_the_view_and_places_the_images_only_when_asked(passes):
    from ui.dataset_map import _LAST

    at = open_link("../pages/features.py", weights=RANDOM, **LINK)
    assert not at.exception and not at.error
    assert passes == [] and _LAST not in at.session_state and not placed(at)  # nothing computed on opening
    assert at.radio(key="features_map").value == "dataset"  # the view the link chose...
    assert at.query_params["features_map"] == "dataset"  # ...and the address still says so
    assert any("This link opens the dataset map. Placing its 8 images" in c.value for c in at.caption)
    at.number_input(key="map_images").set_value(6).run()  # another choice is not a request to place them
    assert passes == [] and not placed(at)
    [button] = [b for b in at.button if b.key == "map-place"]
    assert button.label == "Place the images"
    button.click().run()
    assert not at.exception and not at.error
    assert passes == [6] and any("6 of 256 images" in h.value for h in at.subheader)
    at.run()  # a rerun shows the map the session placed
    assert passes == [6] and placed(at) and not any(b.key == "map-place" for b in at.button)
    at.number_input(key="map_images").set_value(8).run()  # asked once: the visitor's next choices place again
    assert passes == [6, 8] and any("8 of 256 images" in h.value for h in at.subheader)


def test_every_new_session_from_the_link_computes_nothing_until_its_click(passes):
    for _ in range(2):
        at = open_link("../pages/features.py", weights=RANDOM, **LINK)
        assert not at.exception and not placed(at)
        assert any(b.key == "map-place" for b in at.button)
    assert passes == []


def test_choosing_the_map_on_the_page_is_the_click(passes):
    at = open_page("../pages/features.py", backbone="MobileNetV2", map_images=8)
    assert passes == []  # the images given here: no map
    at.radio(key="features_map").set_value("dataset").run()
    assert not at.exception and not at.error
    assert passes == [8] and placed(at) and not any(b.key == "map-place" for b in at.button)
