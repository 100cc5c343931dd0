"""README's pictures of real results, made offline: a run that learns, then Predict with it.

Run: .venv/bin/python docs/make_screenshots.py

1. Trains one run the way the Train page does (a Ray worker, through ``JobQueue``): the
   built-in sample shapes (64 per class, 64 px), MobileNetV2 from random weights with every
   layer trainable (no ImageNet weights can be downloaded here), 15 epochs.
2. Starts the app on a loopback port with that run store and takes, in Debian Chromium:
   ``docs/run.png`` (the run's curves and confusion matrix on the Runs page) and
   ``docs/predict-run.png`` (Predict with that run on a newly drawn triangle the run never saw),
   plus ``docs/layers.png`` and ``docs/build.png`` (VGG16's tables, architecture only).
3. What the network sees: ``docs/predict-gradcam.png`` (that run's Grad-CAM on the new triangle),
   ``docs/layers-sees.png`` (VGG16's block1_conv2 channels on the cat sample, untrained filters),
   ``docs/features-map.png`` (the sample shapes as a map) and ``docs/build-diagram.png``.
4. Clicks Home's develop-a-model demo (the real recipe, three runs in Ray workers) and takes
   ``docs/home-demo.png`` when both target curves and the gap are on screen.
0. Before any of it, ``docs/home-first-screen.png``: Home as a newcomer first sees it on a fresh
   server with no internet and no ImageNet weights (1400x1000). ``--first-screen`` takes only this one.
Every number in the pictures is what the code computed; the script prints them too.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(tempfile.mkdtemp(prefix="tl-screenshots-"))
os.environ.update({"TL_DATA_DIR": str(HOME / "data"), "KERAS_HOME": str(HOME / "keras"),
                   "TF_CPP_MIN_LOG_LEVEL": "3", "TL_PRECISION": "float32"})
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from live_app import launch_chromium, picture, streamlit_server, wait_until_idle  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

import tlcore  # noqa: E402
from tlcore.data.samples import draw_sample  # noqa: E402

DOCS = ROOT / "docs"
SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(64, 64, 3), weights=None,
                           trainable_from="all", hidden_units=64, dropout=0.2)
CONFIG = tlcore.TrainConfig(epochs=15, batch_size=16, learning_rate=1e-3)


def train_run() -> str:
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    dataset = tlcore.sample_dataset(per_class=64, size=64)
    job = tlcore.JobQueue().submit(SPEC, dataset, CONFIG, store)
    snapshot = job.wait()
    assert snapshot.state == "done", snapshot.error
    record = store.get(job.run_id)
    print(f"run {job.run_id}: validation accuracy {record.result.accuracy:.1%}, "
          f"last training accuracy {record.history['accuracy'].iloc[-1]:.1%}")
    return job.run_id


def new_triangle() -> bytes:
    """A triangle drawn with a seed the sample dataset never used."""
    buffer = io.BytesIO()
    draw_sample("triangle", 64, np.random.default_rng(2026)).save(buffer, "PNG")
    return buffer.getvalue()


def to_top(locator) -> None:
    """Scroll so that ``locator`` sits at the top of the window (its section fills the picture)."""
    locator.first.evaluate("element => element.scrollIntoView({block: 'start'})")


def first_screen() -> None:
    """Home on a fresh server (an empty run store and Keras cache, no internet), as a first visit sees it."""
    with streamlit_server(HOME / "first-screen.log") as server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto(server)
        tab.get_by_text("Five ways to reuse a network").wait_for()
        wait_until_idle(tab)
        tab.get_by_role("link", name="Look inside").wait_for()  # the cards' links are drawn a moment later
        tab.wait_for_timeout(1000)
        tab.screenshot(path=DOCS / "home-first-screen.png")
        browser.close()
    print("written:", DOCS / "home-first-screen.png")


def main() -> None:
    first_screen()
    run_id = train_run()
    image = HOME / "new-triangle.png"
    image.write_bytes(new_triangle())
    with streamlit_server(HOME / "streamlit.log") as server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto(f"{server}/runs?run={run_id}")
        wait_until_idle(tab)
        tab.get_by_text("Confusion matrix").wait_for()
        picture(tab.locator('[data-testid="stVegaLiteChart"]').nth(1))  # wait until drawn
        tab.get_by_text("Open a run").scroll_into_view_if_needed()
        tab.screenshot(path=DOCS / "run.png")

        tab.goto(f"{server}/predict?predict_model={run_id}&backbone=MobileNetV2&weights=Random+%28untrained%29")
        wait_until_idle(tab)
        tab.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(image))
        wait_until_idle(tab)
        tab.get_by_text("triangle").first.wait_for()
        picture(tab.locator('[data-testid="stVegaLiteChart"]').first)
        table = tab.locator('[data-testid="stTable"], [data-testid="stDataFrame"]').first
        picture(table)
        tab.screenshot(path=DOCS / "predict-run.png")
        print("Predict:", table.inner_text()[:200].replace("\n", " "))
        heading = tab.get_by_text("Where the network looks")
        heading.wait_for()
        tab.get_by_text("over what the network sees").first.wait_for()
        to_top(tab.get_by_text("Prediction took"))
        tab.screenshot(path=DOCS / "predict-gradcam.png")

        tab.goto(f"{server}/layers?backbone=VGG16&weights=Random+%28untrained%29")
        wait_until_idle(tab)
        picture(tab.locator('[data-testid="stDataFrame"]').first)
        tab.screenshot(path=DOCS / "layers.png")
        tab.goto(f"{server}/build?backbone=VGG16&preset=128&training=Train+from+a+layer"
                 "&trainable_from=block5_conv1&weights=Random+%28untrained%29")
        wait_until_idle(tab)
        picture(tab.locator('[data-testid="stDataFrame"]').first)
        tab.screenshot(path=DOCS / "build.png", full_page=False)
        to_top(tab.get_by_text("The model in blocks"))
        tab.locator('[data-testid="stGraphVizChart"] svg g.node').first.wait_for()
        tab.screenshot(path=DOCS / "build-diagram.png")

        tab.goto(f"{server}/layers?backbone=VGG16&weights=Random+%28untrained%29")
        wait_until_idle(tab)
        tab.get_by_role("combobox", name="Convolutional layer").click()
        tab.get_by_role("option", name="block1_conv2", exact=True).click()
        wait_until_idle(tab)
        tab.get_by_text("block1_conv2 is convolutional layer 2 of 13").wait_for()
        to_top(tab.get_by_text("What a layer sees"))
        tab.screenshot(path=DOCS / "layers-sees.png")

        tab.goto(f"{server}/features?backbone=MobileNetV2&weights=Random+%28untrained%29&features_map=dataset")
        wait_until_idle(tab)
        tab.get_by_role("button", name="Place the images").click()
        wait_until_idle(tab)
        tab.get_by_text("Nearest neighbour of the same class").first.wait_for()
        chart = tab.locator('[data-testid="stVegaLiteChart"]').last
        picture(chart)
        to_top(tab.get_by_text("Nearest neighbour of the same class"))
        tab.screenshot(path=DOCS / "features-map.png")

        tab.goto(server)
        wait_until_idle(tab)
        tab.get_by_role("button", name="Run the develop-a-model demo").click()
        tab.get_by_text("Gap", exact=True).wait_for(timeout=900_000)
        wait_until_idle(tab)
        picture(tab.locator('[data-testid="stVegaLiteChart"]').first)
        to_top(tab.get_by_text("Transfer against scratch"))
        tab.screenshot(path=DOCS / "home-demo.png")
        print("Home demo:", " ".join(m.inner_text().replace("\n", " ") for m in tab.locator('[data-testid="stMetric"]').all()))
        browser.close()
    print("written:", ", ".join(str(DOCS / name) for name in (
        "run.png", "predict-run.png", "predict-gradcam.png", "layers.png", "build.png", "build-diagram.png",
        "layers-sees.png", "features-map.png", "home-demo.png")))


if __name__ == "__main__":
    first_screen() if "--first-screen" in sys.argv else main()
