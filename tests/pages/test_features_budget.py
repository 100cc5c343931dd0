"""The Features page holds its images' vectors within TL_MAX_MAP_FEATURE_MB, checked before any image is read,
and draws a long vector's line from an even sample of its values (an early layer's vector has hundreds of
thousands: the page held them all in a chart table and a CSV made on every rerun)."""

import numpy as np
import pytest
from support import image_bytes, open_page

import tlcore
from ui import charts

EARLY = "Conv1"  # MobileNetV2's first convolution: 112 x 112 x 32 = 401,408 values an image


def _layer_box(at):
    return next(box for box in at.selectbox if box.label == "Feature layer")


def test_an_early_layer_over_the_budget_is_refused_in_words(monkeypatch):
    monkeypatch.setenv("TL_MAX_MAP_FEATURE_MB", "1")
    at = open_page("../pages/features.py", backbone="MobileNetV2")
    assert not at.error  # the default layer's 1,280 values fit
    _layer_box(at).set_value(EARLY).run()
    assert not at.exception
    assert at.error[0].value == (
        "Feature vectors held at once may take at most 1 MB on this server (TL_MAX_MAP_FEATURE_MB); choose a later "
        "layer or fewer images. Received: 3 images x 401,408 values from Conv1 = 5 MB")
    assert not at.dataframe  # nothing extracted, nothing shown


@pytest.mark.slow
def test_a_long_vectors_line_draws_an_even_sample_and_the_downloads_hold_every_value():
    at = open_page("../pages/features.py", backbone="MobileNetV2")
    _layer_box(at).set_value(EARLY).run()
    assert not at.exception and not at.error
    assert "3 vectors of 401,408 values from `Conv1`" in at.subheader[0].value
    assert any("The lines draw 2,048 of the 401,408 values" in c.value for c in at.caption)
    assert {b.label for b in at.get("download_button")} >= {"Download CSV", "Download .npy"}


def test_the_line_chart_samples_a_long_vector_evenly_and_keeps_a_short_one_whole():
    rng = np.random.default_rng(0)
    long, short = rng.random((2, 401_408), np.float32), rng.random((2, 100), np.float32)
    drawn = charts.feature_lines(long, ["a", "b"]).data
    assert len(drawn) == 2 * charts.FEATURE_LINE_POINTS
    picked = drawn["index"].to_numpy()[:charts.FEATURE_LINE_POINTS]
    assert picked[0] == 0 and picked[-1] == 401_407 and np.all(np.diff(picked) > 0)
    assert np.array_equal(drawn["value"].to_numpy()[:charts.FEATURE_LINE_POINTS], long[0, picked])
    whole = charts.feature_lines(short, ["a", "b"]).data
    assert len(whole) == 200 and list(whole["index"][:100]) == list(range(100))


def test_the_room_for_vectors_is_counted_from_the_extractors_shape(monkeypatch):
    import keras

    inputs = keras.Input((32, 32, 3))
    extractor = keras.Model(inputs, keras.layers.Conv2D(64, 3, padding="same", name="wide")(inputs))
    monkeypatch.setenv("TL_MAX_MAP_FEATURE_MB", "1")
    tlcore.check_feature_room(extractor, 4)  # 4 x 65,536 x 4 bytes: exactly 1 MB
    with pytest.raises(tlcore.BudgetError, match=r"Received: 5 images x 65,536 values from wide = 1 MB"):
        tlcore.check_feature_room(extractor, 5)
    # a notebook or the command line asks for what it wants: extract_features itself counts nothing
    assert tlcore.extract_features(extractor, [image_bytes((32, 32), seed=1)] * 5, backbone="MobileNetV2").shape == (
        5, 65_536)
