"""Helpers the tests import: made-up images and zips, the demo at its smallest, and the app opened on a page."""

import dataclasses
import io
import zipfile
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


def zip_of(members: dict[str, bytes]) -> bytes:
    """A deflated zip of ``members`` (member name -> bytes), in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tiny_demo_recipe():
    """The develop-a-model demo at its smallest: VGG16 at 32 px, 4 images a class, one epoch a run."""
    import tlcore

    recipe = tlcore.DEMO_RECIPE
    return tlcore.DemoRecipe(
        seed=5, size=32, source_per_class=4, target_per_class=4,
        source_spec=dataclasses.replace(recipe.source_spec, backbone="VGG16", input_shape=(32, 32, 3)),
        source_config=dataclasses.replace(recipe.source_config, epochs=1, batch_size=8),
        target_spec=dataclasses.replace(recipe.target_spec, backbone="VGG16", input_shape=(32, 32, 3)),
        target_config=dataclasses.replace(recipe.target_config, epochs=1, batch_size=8, validation_fraction=0.5),
    )
