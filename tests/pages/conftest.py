"""What the pages' tests share: a server without the internet, a run store of the test's own and a small finished
run to put in it."""

import urllib.error

import pytest
from support import image_bytes

import tlcore


@pytest.fixture
def offline(keras_home, monkeypatch):
    """No network for the weights (the probe and the download), and nothing remembered about it."""
    import ui.first_screen

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("tlcore.models.imagenet_files.urllib.request.urlopen", refuse)
    ui.first_screen._reachable.clear()
    ui.first_screen._unreachable.clear()
    yield keras_home
    ui.first_screen._reachable.clear()
    ui.first_screen._unreachable.clear()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty run store of this test's own (the pages' store is the one of the data folder set here)."""
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    return tlcore.RunStore(tmp_path / "data" / "runs")


@pytest.fixture(scope="module")
def trained():
    """A finished two-class run's dataset and training result (MobileNetV2 at 32 px, one epoch), trained once
    per test module; each test stores it in its own ``store``."""
    images = {name: [image_bytes((40, 40), seed=10 * k + i) for i in range(3)] for k, name in enumerate(("ant", "bee"))}
    dataset = tlcore.load_dataset(images)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    return dataset, tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=1, batch_size=4, validation_fraction=0.5))
