"""A restarted server answers Predict's top-5 with the network's LiteRT copy before TensorFlow is loaded, and an
image uploaded right after that first answer gets its own top-5 at once, not after the first image's heatmap
(issue 18: launch to first top-5 under 5 s)."""

import os
from pathlib import Path

import pytest
from live_app import SHOTS, streamlit_server, wait_until_idle
from support import transfer_lab

pytestmark = pytest.mark.browser

CAT = Path(__file__).resolve().parents[2] / "samples" / "cat.jpg"
HEAT_SEEN = """() => {
  window.heatSeen = false;
  new MutationObserver(() => {
    if (document.body && document.body.innerText.includes('over what the network sees')) window.heatSeen = true;
  }).observe(document, {subtree: true, childList: true, characterData: true});
}"""
TABLE_OF = """name => document.body.innerText.includes(`What the network sees of ${name}`)
  && document.body.innerText.includes('one forward pass with its LiteRT copy')
  && [...document.querySelectorAll('[data-testid="stTable"]')].some(t => t.querySelectorAll('tbody tr').length === 5
     && !t.closest('[data-stale="true"]'))"""


def test_a_restarted_server_answers_before_tensorflow_and_a_quick_upload_is_not_kept_waiting(
        cached_mobilenet, browser, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    written = transfer_lab("lite-copy", "--backbone", "MobileNetV2", data_dir=data)  # what a first server writes
    assert written.returncode == 0, written.stderr[-2000:]
    assert "MobileNetV2-imagenet-" in written.stdout
    env = {**os.environ, "TL_DATA_DIR": str(data), "TL_LITE_ANSWERS": "1"}

    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(120_000)
    tab.add_init_script(f"({HEAT_SEEN})()")  # from the page's start: whether a heatmap was ever drawn
    with streamlit_server(tmp_path / "streamlit.log", env=env) as url:
        tab.goto(f"{url}/predict?backbone=MobileNetV2&weights=ImageNet")
        tab.wait_for_function(TABLE_OF, arg="the cat sample", polling="raf")
        assert not tab.evaluate("() => window.heatSeen")  # the answer came before Keras could draw the heatmap

        tab.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(CAT))
        tab.wait_for_function(TABLE_OF, arg="cat.jpg", polling="raf")
        assert not tab.evaluate("() => window.heatSeen")  # the cat did not wait for the sample's heatmap

        wait_until_idle(tab)
        tab.get_by_text("over what the network sees").first.wait_for()  # the cat's heatmap, from Keras
        assert "What the network sees of cat.jpg" in tab.locator("body").inner_text()
        tab.screenshot(path=SHOTS / "predict-lite.png")
    tab.close()
