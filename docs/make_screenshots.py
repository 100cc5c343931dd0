"""README's pictures of real results, made offline: a run that learns, then Predict with it.

Run: .venv/bin/python docs/make_screenshots.py

1. Trains one run the way the Train page does (a Ray worker, through ``JobQueue``): the
   built-in sample shapes (64 per class, 64 px), MobileNetV2 from random weights with every
   layer trainable (no ImageNet weights can be downloaded here), 15 epochs.
2. Starts the app on a loopback port with that run store and takes, in Debian Chromium:
   ``docs/run.png`` (the run's curves and confusion matrix on the Runs page) and
   ``docs/predict-run.png`` (Predict with that run on a newly drawn triangle the run never saw),
   plus ``docs/layers.png`` and ``docs/build.png`` (VGG16's tables, architecture only).
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
from playwright.sync_api import sync_playwright  # noqa: E402

import tlcore  # noqa: E402
from live_app import launch_chromium, picture, streamlit_server, wait_until_idle  # noqa: E402
from tlcore.datasets import _draw_sample  # noqa: E402

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
    print(f"run {job.run_id}: validation accuracy {record.result['accuracy']:.1%}, "
          f"last training accuracy {record.history['accuracy'].iloc[-1]:.1%}")
    return job.run_id


def new_triangle() -> bytes:
    """A triangle drawn with a seed the sample dataset never used."""
    buffer = io.BytesIO()
    _draw_sample("triangle", 64, np.random.default_rng(2026)).save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
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

        tab.goto(f"{server}/layers?backbone=VGG16&weights=Random+%28untrained%29")
        wait_until_idle(tab)
        picture(tab.locator('[data-testid="stDataFrame"]').first)
        tab.screenshot(path=DOCS / "layers.png")
        tab.goto(f"{server}/build?backbone=VGG16&preset=128&training=Train+from+a+layer"
                 "&trainable_from=block5_conv1&weights=Random+%28untrained%29")
        wait_until_idle(tab)
        picture(tab.locator('[data-testid="stDataFrame"]').first)
        tab.screenshot(path=DOCS / "build.png", full_page=False)
        browser.close()
    print("written:", ", ".join(str(DOCS / name) for name in ("run.png", "predict-run.png", "layers.png", "build.png")))


if __name__ == "__main__":
    main()
