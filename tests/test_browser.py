"""The app in a real browser: headless Debian Chromium driven by Playwright.

The server runs on a loopback port with the test's own Keras cache (untrained
MobileNetV2 weights written where Keras keeps ImageNet files). Screenshots go
to ``screenshots/`` (printed at the end of the run).
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import APP, ROOT, image_bytes

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log: Path):
    """A fresh server process for the app on a free loopback port; yields its URL once healthy."""
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--server.fileWatcherType", "none"],
            stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the app did not start in 90 s:\n{log.read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(cached_mobilenet, tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(120_000)
        yield tab
        browser.close()


def wait_until_idle(tab) -> None:
    """Wait for Streamlit to finish running the script (its status widget disappears)."""
    tab.wait_for_load_state("networkidle")
    tab.locator('[data-testid="stApp"]').wait_for()
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000
    )


def test_predict_an_uploaded_image(server, page):
    page.goto(f"{server}/predict?backbone=MobileNetV2&weights=ImageNet")
    wait_until_idle(page)
    page.locator('[data-testid="stTable"]').wait_for()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "made-up.png", "mimeType": "image/png", "buffer": image_bytes((120, 90), seed=7)}]
    )
    page.get_by_text("What the network sees of made-up.png").wait_for()
    wait_until_idle(page)
    rows = page.locator('[data-testid="stTable"] tbody tr')
    assert rows.count() == 5
    assert page.get_by_text("Prediction took").is_visible()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1
    page.screenshot(path=SHOTS / "predict.png", full_page=True)


def test_bad_upload_shows_a_message_not_a_traceback(server, page):
    page.goto(f"{server}/predict?backbone=MobileNetV2&weights=ImageNet")
    wait_until_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"plain text"}]
    )
    page.get_by_text("That file cannot be used.").wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0


def open_and_see(tab, url: str, text: str, shot: str) -> None:
    """Open ``url``, wait for ``text`` once the app is idle, and keep a screenshot."""
    tab.goto(url)
    wait_until_idle(tab)
    tab.get_by_text(text).first.wait_for()
    tab.screenshot(path=SHOTS / shot, full_page=True)


def test_layers_page(server, page):
    open_and_see(page, f"{server}/layers?backbone=VGG16", "138,357,544", "layers.png")


def test_build_page_explains_a_too_small_input(server, page):
    open_and_see(page, f"{server}/build?backbone=VGG16&preset=custom&custom_size=16",
                 "at least 32x32 for VGG16", "build-too-small.png")
    open_and_see(page, f"{server}/build?backbone=VGG16&preset=128&training=Train+from+a+layer"
                 "&trainable_from=block5_conv1", "4x4x512", "build.png")


def test_train_the_sample_dataset_for_two_epochs(server, page):
    page.goto(f"{server}/train?backbone=MobileNetV2&weights=Random+%28untrained%29")
    wait_until_idle(page)
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("2")
    epochs.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Confusion matrix").wait_for(timeout=180_000)
    wait_until_idle(page)
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 3
    page.screenshot(path=SHOTS / "train.png", full_page=True)
    page.get_by_text("Validation accuracy").wait_for()
    open_and_see(page, f"{server}/runs", "Open a run", "runs.png")


def test_a_fresh_servers_first_request_can_be_a_deep_link(cached_mobilenet, page, tmp_path):
    """The very first request of a new server process is a link to a page with a choice in it."""
    with streamlit_server(tmp_path / "streamlit.log") as url:
        page.goto(f"{url}/layers?backbone=MobileNetV2")
        wait_until_idle(page)
        page.get_by_text("3,538,984").first.wait_for()  # MobileNetV2's parameters, with its top
        sidebar = page.locator('[data-testid="stSidebar"]')
        for section in ("Learn", "Reuse a pretrained network", "Train on your images"):
            assert sidebar.get_by_text(section, exact=True).is_visible()
        assert sidebar.get_by_role("link", name="Layers").is_visible()
        assert sidebar.get_by_text("streamlit_app", exact=True).count() == 0  # no file names as pages
        assert sidebar.get_by_role("combobox", name="Backbone").input_value() == "MobileNetV2"
        assert "backbone=MobileNetV2" in page.url
        page.screenshot(path=SHOTS / "fresh-deep-link.png")
