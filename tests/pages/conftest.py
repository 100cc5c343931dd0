"""What the pages' tests share: a run store of the test's own and a small finished run to put in it."""

import pytest
from support import image_bytes

import tlcore


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
