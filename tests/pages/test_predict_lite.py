"""Predict answers with the network's LiteRT copy once a Keras load wrote it (issue 18): after a restart the
top-5 comes before Keras is loaded, equals Keras's answer, and the heatmap still comes from Keras."""

import threading

import numpy as np
import pytest
from support import open_page

import tlcore
from ui import models

pytestmark = pytest.mark.slow  # ResNet50 at 224 px twice, and its 102 MB copy written (about 10 s)

NETWORK = "ResNet50"  # untrained and seeded: a peaked softmax, so the order of the top-5 means something


@pytest.fixture
def restartable(tmp_path, monkeypatch):
    """LiteRT copies on, in a data folder of this test's own; the process's cached networks forgotten before and
    after (``restart()`` forgets them in between, as a new server would start without them)."""
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TL_LITE_ANSWERS", "1")

    def restart():
        models._classifier.clear()
        models._lite.clear()
        models._LITE_WRITES.clear()
        models._KERAS_HELD.clear()

    restart()
    yield restart
    restart()


def _wait_for_the_copy() -> None:
    for thread in threading.enumerate():
        if thread.name == "lite-copy":
            thread.join(timeout=300)


def test_after_a_restart_the_copy_answers_before_keras_loads(restartable, monkeypatch):
    first = open_page("../pages/predict.py", backbone=NETWORK, predict_model="imagenet", sample="cat")
    assert "with its LiteRT copy" not in " ".join(c.value for c in first.caption)  # no copy yet: Keras answers
    keras_table = first.table[0].value
    _wait_for_the_copy()
    key = tlcore.lite_key(NETWORK, None, seed=tlcore.UNTRAINED_SEED)
    assert key.path.is_file()

    restartable()
    events, real_top_k, real_load = [], tlcore.LiteClassifier.top_k, tlcore.load_backbone

    def top_k(self, *args, **kwargs):
        events.append("LiteRT top-5")
        return real_top_k(self, *args, **kwargs)

    def load(*args, **kwargs):
        events.append("Keras load")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tlcore.LiteClassifier, "top_k", top_k)
    monkeypatch.setattr(tlcore, "load_backbone", load)
    again = open_page("../pages/predict.py", backbone=NETWORK, predict_model="imagenet", sample="cat")
    assert events == ["LiteRT top-5", "Keras load"]  # the answer first; Keras only for the heatmap
    assert any("one forward pass with its LiteRT copy" in c.value for c in again.caption)
    lite_table = again.table[0].value
    assert list(lite_table["label"]) == list(keras_table["label"])
    assert np.allclose(lite_table["probability"], keras_table["probability"], atol=1e-5)
    assert any(caption.startswith("Heat for ") for image in again.image for caption in image.captions)

    again.run()  # a rerun shows the kept table: neither runtime runs again
    assert events == ["LiteRT top-5", "Keras load"] and not again.exception

    again.selectbox(key="sample").set_value("rocket").run()  # Keras is loaded now: it answers, the copy is let go
    assert events == ["LiteRT top-5", "Keras load"] and not again.exception
    assert not any("LiteRT" in c.value for c in again.caption)
    assert "What the network sees of the rocket sample" in " ".join(c.value for c in again.caption) + " ".join(
        caption for image in again.image for caption in image.captions)


def test_bfloat16_asked_for_is_answered_by_keras(restartable, monkeypatch):
    monkeypatch.setenv("TL_PRECISION", "bfloat16")
    assert models.lite_classifier(models.WeightsChoice(NETWORK, None, "random")) is None
