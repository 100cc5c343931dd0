"""A run that held no images out is measured on the images it trained on: the Runs page says "Training accuracy",
not "Validation accuracy" (all 64 rows of such a run's evaluation were training images: a reviewer's finding)."""

import pytest
from support import open_page

import tlcore

pytestmark = pytest.mark.slow  # trains a small run, then opens Runs


@pytest.mark.parametrize("fraction,shown", [(0.0, "Training accuracy"), (0.5, "Validation accuracy")])
def test_the_run_page_names_what_its_accuracy_was_measured_on(tmp_path, monkeypatch, fraction, shown):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))
    store = tlcore.RunStore(tmp_path / "data" / "runs")
    dataset = tlcore.sample_dataset(per_class=4, size=32, seed=2)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=0)
    config = tlcore.TrainConfig(epochs=1, batch_size=8, validation_fraction=fraction)
    run_id = store.create(spec, config, dataset.summary())
    store.finish(run_id, tlcore.train(spec, dataset, config))
    at = open_page("../pages/runs.py", backbone="MobileNetV2")
    labels = [metric.label for metric in at.metric]
    assert shown in labels and {"Training accuracy", "Validation accuracy"} - {shown} & set(labels) == set(), labels
