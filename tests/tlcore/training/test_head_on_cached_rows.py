"""A head trained on cached rows: in memory or memory-mapped, a block of steps per call or one, the same model."""

import dataclasses
import threading

import numpy as np
import pytest

import tlcore
from tlcore.data.pipeline import HeldRows
from tlcore.training import feature_cache
from tlcore.training.feature_cache import FeatureCache
from tlcore.training.train import _memory_room, head_rows

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
CONFIG = tlcore.TrainConfig(epochs=2, batch_size=4)


def test_rows_are_read_into_memory_only_when_twice_their_size_fits(tmp_path):
    np.save(tmp_path / "rows.npy", np.ones((10, 4), np.float32))
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    held = head_rows(mapped, 2 * 10 * 4 * 4)
    assert isinstance(held, HeldRows) and np.array_equal(held[:], np.ones((10, 4)))
    assert isinstance(head_rows(mapped, 2 * 10 * 4 * 4 - 1), np.memmap)


@pytest.mark.slow
def test_in_memory_mapped_and_watched_runs_train_the_same_model(tmp_path, monkeypatch):
    shapes = tlcore.sample_dataset(per_class=6, size=32, seed=2)
    cache = FeatureCache(tmp_path / "features")
    quiet = tlcore.train(SPEC, shapes, CONFIG, cache=cache)  # in memory, a block of steps per call
    seen = []
    watched = tlcore.train(SPEC, shapes, CONFIG, cache=cache, on_batch=seen.append,
                           stop=threading.Event())  # every batch back in Python
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "0.001")  # no room in memory: read from the mapped file
    mapped = tlcore.train(SPEC, shapes, CONFIG, cache=cache, checked=True)
    assert quiet.feature_cache and watched.feature_cache and mapped.feature_cache
    batches = -(-len(shapes.split(CONFIG.validation_fraction, seed=CONFIG.seed)[0]) // CONFIG.batch_size)
    assert [(p.epoch, p.batch) for p in seen if p.phase == "train"] == [
        (e, b) for e in (1, 2) for b in range(1, batches + 1)]
    for other in (watched, mapped):
        np.testing.assert_allclose(other.history["loss"], quiet.history["loss"], rtol=1e-5)
        for a, b in zip(quiet.model.get_weights(), other.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    assert quiet.history["complete"].all() and len(quiet.history) == 2


@pytest.mark.slow
def test_the_full_model_predicts_what_the_head_gave_on_cached_rows(tmp_path):
    shapes = tlcore.sample_dataset(per_class=6, size=32, seed=2)
    cache = FeatureCache(tmp_path / "features")
    tlcore.train(SPEC, shapes, CONFIG, cache=cache)
    reuse = tlcore.train(dataclasses.replace(SPEC, hidden_units=16), shapes, CONFIG, cache=cache)
    data = tlcore.training.train.TrainingData(shapes, "MobileNetV2", (32, 32))
    images = np.concatenate([x.numpy() for x, _ in data.images(reuse.evaluation.indices, 64)])
    np.testing.assert_allclose(reuse.model.predict(images, verbose=0), reuse.evaluation.probabilities,
                               rtol=1e-4, atol=1e-5)


def test_the_room_for_rows_is_the_job_budget_less_the_estimate_of_the_model_as_built(monkeypatch):
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "6")
    spec = dataclasses.replace(SPEC, num_classes=4)
    model = tlcore.build_transfer_model(spec)
    assert _memory_room(model, 16) == 6 * 2**30 - tlcore.estimate_job_memory(spec, 16) > 0
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "1")  # less than the process itself: no room, rows stay on disk
    assert _memory_room(model, 16) == 0


def test_rows_read_into_memory_are_the_files_a_block_at_a_time_and_a_short_file_is_refused(tmp_path, monkeypatch):
    rows = np.random.default_rng(0).standard_normal((37, 3, 5)).astype(np.float32)
    np.save(tmp_path / "rows.npy", rows)
    monkeypatch.setattr(feature_cache, "READ_BYTES", 4 * 15 * 8)  # blocks of 8 rows: the last one short
    held = FeatureCache.read(np.load(tmp_path / "rows.npy", mmap_mode="r"))
    assert held.shape == (37, 3, 5) and len(held) == 37 and held.nbytes == rows.nbytes
    np.testing.assert_array_equal(held[:], rows)
    np.testing.assert_array_equal(held[np.array([36, 0, 9])], rows[[36, 0, 9]])
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    with open(tmp_path / "rows.npy", "r+b") as handle:
        handle.truncate(mapped.offset + 100 * 4)
    with pytest.raises(tlcore.StorageError, match=r"rows.npy holds 528 bytes, fewer than the 2,348 its header promises; "
                                                  r"compute the features again"):
        FeatureCache.read(mapped)
