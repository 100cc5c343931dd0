"""Test set-up: hermetic Keras cache and data folder, quiet TensorFlow, shared helpers."""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_HOME = Path(tempfile.mkdtemp(prefix="tl-tests-"))
os.environ["KERAS_HOME"] = str(_HOME / "keras")  # never the user's real cache
os.environ["TL_DATA_DIR"] = str(_HOME / "data")
os.environ.setdefault("TL_PRECISION", "float32")  # exact float32 values, no calibrations; test_precision.py sets its own
# Ray reads these when it is imported, and a test module may import it before tlcore does:
# no usage statistics, and a local instance on 127.0.0.1 only.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import io  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def image_bytes(size=(64, 48), fmt="PNG", mode="RGB", seed=0, **save) -> bytes:
    """A made-up image encoded in ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache for one test."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


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


@pytest.fixture(scope="session")
def cached_mobilenet() -> Path:
    """Untrained MobileNetV2 weights written where Keras caches ImageNet weights.

    They are written in the legacy layout of Keras's real files, so the app
    finds them "cached" and loads them through the real ImageNet path.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    import tlcore

    status = tlcore.weights_status("MobileNetV2")
    if not status.cached:
        status.path.parent.mkdir(parents=True, exist_ok=True)
        model = tlcore.load_backbone("MobileNetV2", weights=None)
        with h5py.File(status.path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return status.path


def pytest_terminal_summary(terminalreporter):
    shots = Path(__file__).resolve().parents[1] / "screenshots"
    if shots.is_dir() and any(shots.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {shots}")


@pytest.fixture(scope="session")
def ray_address() -> str:
    """The test session's one Ray instance (started once, on 127.0.0.1), for servers the tests start."""
    import tlcore

    return tlcore.connect_ray()
