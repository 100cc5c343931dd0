"""Test set-up: hermetic Keras cache and data folder, quiet TensorFlow, shared helpers."""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_HOME = Path(tempfile.mkdtemp(prefix="tl-tests-"))
os.environ["KERAS_HOME"] = str(_HOME / "keras")  # never the user's real cache
os.environ["TL_DATA_DIR"] = str(_HOME / "data")
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
