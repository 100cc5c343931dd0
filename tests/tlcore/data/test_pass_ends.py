"""Every pass ends when its last batch is used: no pipeline here runs tf.data's autotuner, whose tuning thread a
finished pass waited for (up to the pass's own length again; ``bench/pass_ends.py``)."""

import numpy as np
import pytest

import tlcore
from tlcore.data.pipeline import HeldRows, image_batches, row_batches


@pytest.fixture(scope="module")
def shapes():
    return tlcore.sample_dataset(per_class=2, size=32, seed=0)


def _tuned(data) -> bool:
    return data.options().autotune.enabled is not False


def test_image_passes_run_untuned_and_still_give_every_image_in_order(shapes):
    preprocess = tlcore.get_backbone("MobileNetV2").preprocess
    data = image_batches(shapes, np.arange(len(shapes)), (32, 32), preprocess=preprocess, batch_size=3)
    assert not _tuned(data)
    labels = np.concatenate([y.numpy() for _, y in data])
    assert labels.tolist() == list(shapes.labels)
    shuffled = image_batches(shapes, np.arange(len(shapes)), (32, 32), preprocess=preprocess, batch_size=3, seed=1)
    assert not _tuned(shuffled)
    assert sorted(np.concatenate([y.numpy() for _, y in shuffled]).tolist()) == sorted(shapes.labels)


@pytest.mark.parametrize("kind", ["array", "held", "mapped"])
def test_row_passes_run_untuned_wherever_the_rows_are(tmp_path, kind):
    rows = np.arange(40, dtype=np.float32).reshape(10, 4)
    if kind == "held":
        held = HeldRows(rows.shape)
        held.put(0, rows)
        rows = held
    elif kind == "mapped":
        np.save(tmp_path / "rows.npy", rows)
        rows = np.load(tmp_path / "rows.npy", mmap_mode="r")
    labels = np.arange(10) % 2
    data = row_batches(rows, labels, np.arange(2, 9), batch_size=3)
    assert not _tuned(data)
    x = np.concatenate([batch.numpy() for batch, _ in data])
    np.testing.assert_array_equal(x[:, 0], np.arange(2, 9) * 4)
