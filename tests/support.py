"""Helpers the tests import: made-up images, and the app opened on a page (AppTest)."""

import io
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(size=(64, 48), fmt="PNG", mode="RGB", seed=0, **save) -> bytes:
    """A made-up image encoded in ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")  # the entrypoint; page paths are relative to it
RANDOM = "Random (untrained)"


def open_page(page: str, *, backbone: str = "VGG16", weights: str = RANDOM, **state):
    """An AppTest of the app on ``page`` (e.g. "../pages/build.py", relative to the entrypoint),
    with the sidebar's choices and any session state set."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["backbone"] = backbone
    at.session_state["weights"] = weights
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != "../pages/home.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at
