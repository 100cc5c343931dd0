"""Test set-up: hermetic Keras cache and data folder, quiet TensorFlow, session fixtures.

Helpers that tests import (made-up images, opening a page) are in ``support.py``.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Beside, never inside, the folder of the process that started this one (pytest-xdist's): Ray's socket paths must
# stay under 108 characters.
os.environ.setdefault("TL_TESTS_TEMP_PARENT", tempfile.gettempdir())
_HOME = Path(tempfile.mkdtemp(prefix="tl-tests-", dir=os.environ["TL_TESTS_TEMP_PARENT"]))
# The process's temporary folder too, inherited by its Ray instance and workers, servers and subprocesses: what they
# leave there (Ray's session folders, Streamlit's AppTest scripts, Keras's export folders, the autograph sources of
# programs run as a person would, empty worker folders) goes when the process ends, not into /tmp.
os.environ["TMPDIR"] = str(_HOME)
tempfile.tempdir = None  # read TMPDIR again
os.environ["KERAS_HOME"] = str(_HOME / "keras")  # never the user's real cache
os.environ["TL_DATA_DIR"] = str(_HOME / "data")
os.environ.setdefault("TL_PRECISION", "float32")  # exact float32 values, no calibrations; test_precision.py sets its own
os.environ.setdefault("TL_LITE_ANSWERS", "0")  # no LiteRT copies written behind every page; test_lite.py sets its own
# One test process per core (pytest-xdist's -n auto), so one TensorFlow thread each (its Ray workers, servers and
# subprocesses inherit it): more threads only contend for the same cores. Measured on 2 cores, the fast tier in
# turns, twice each: 76.5 / 74.2 s with TensorFlow's default threads, 70.2 / 66.1 s with one (CPU time 137-140 s -> 122-130 s).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# Ray reads these when it is imported, and a test module may import it before tlcore does:
# no usage statistics, and a local instance on 127.0.0.1 only.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tlcore, ui
sys.path.insert(0, str(Path(__file__).resolve().parent))  # support.py, for tests in every folder

import pytest  # noqa: E402
from live_app import SHOTS  # noqa: E402


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache for one test."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


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


@pytest.fixture(scope="session")
def small_run():
    """(dataset, TrainResult) of a small finished run, trained once per test process for the files that only read
    it (the run store's and the bundles' tests): MobileNetV2 at 32 px, untrained base, 2 epochs."""
    import tlcore

    dataset = tlcore.sample_dataset(per_class=8, size=32, seed=1)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    return dataset, tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=2, batch_size=8))


def pytest_configure(config):
    """With ``-p randomly`` (pytest-randomly; off by default, so CI is the files' order) the files, and the tests in
    each, run shuffled with one seed for every process, printed in the header (``--randomly-seed=N`` replays it).
    It leaves Python's and NumPy's random state alone: the tests seed what they need, and one reseed in every
    process would have the processes draw the same "random" values (ports, names) at once."""
    if hasattr(config.option, "randomly_reset_seed"):
        config.option.randomly_reset_seed = False


def pytest_unconfigure(config):
    """Each test process takes its Ray instance down (as the server's lifespan does), then removes its own
    Keras cache, data and temporary folder: a session's runs take over a gigabyte."""
    if "tlcore.training.worker" in sys.modules:
        sys.modules["tlcore.training.worker"].disconnect()
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if SHOTS.is_dir() and any(SHOTS.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {SHOTS}")


@pytest.fixture(scope="session")
def ray_address() -> str:
    """The test session's one Ray instance (started once, on 127.0.0.1), for servers the tests start."""
    import tlcore

    return tlcore.connect_ray()
