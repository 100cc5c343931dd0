"""Streaming images and frozen-prefix features on disk, reused by key."""

import dataclasses
import os
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import tlcore
from tlcore.data.pipeline import fitted_pixels, image_batches, row_batches
from tlcore.training.config import FEATURES_PHASE
from tlcore.training.feature_cache import FeatureCache, cache_key
from tlcore.training.train import frozen_split

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)


@pytest.fixture(scope="module")
def shapes():
    return tlcore.sample_dataset(per_class=6, size=40, seed=4)


def test_image_batches_stream_the_stored_files_fitted_and_preprocessed(shapes):
    preprocess = tlcore.get_backbone("MobileNetV2").preprocess
    batches = list(image_batches(shapes, [3, 0, 7], (32, 32), preprocess=preprocess, batch_size=2))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 32, 32, 3), (1, 32, 32, 3)]
    expected = preprocess(np.stack([fitted_pixels(str(shapes.files[i]), (32, 32)) for i in (3, 0, 7)])
                          .astype("float32"))
    np.testing.assert_allclose(np.concatenate([x.numpy() for x, _ in batches]), expected, atol=1e-5)
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == [shapes.labels[i] for i in (3, 0, 7)]


def test_seeded_batches_are_reshuffled_every_epoch_and_the_same_for_the_same_seed():
    rows = np.arange(20, dtype="float32").reshape(10, 2)
    labels = np.arange(10)
    data = row_batches(rows, labels, np.arange(10), batch_size=4, seed=3)
    first = [int(y) for _, ys in data for y in ys.numpy()]
    second = [int(y) for _, ys in data for y in ys.numpy()]
    again = [int(y) for _, ys in row_batches(rows, labels, np.arange(10), batch_size=4, seed=3) for y in ys.numpy()]
    assert sorted(first) == list(range(10)) and first != second and first == again
    for x, y in row_batches(rows, labels, np.arange(10), batch_size=4, seed=3):  # rows stay with their labels
        np.testing.assert_array_equal(x.numpy()[:, 0], 2 * y.numpy())


@pytest.mark.slow
def test_features_are_computed_once_kept_on_disk_and_memory_mapped(tmp_path, shapes):
    model = tlcore.build_transfer_model(dataclasses.replace(SPEC, num_classes=4))
    prefix, _ = frozen_split(model)
    cache = FeatureCache(tmp_path)
    progress = []
    rows, found = cache.features(prefix, shapes, backbone="MobileNetV2",
                                 preprocess=tlcore.get_backbone("MobileNetV2").preprocess,
                                 on_progress=lambda done, total: progress.append((done, total)))
    assert not found and isinstance(rows, np.memmap) and rows.shape == (24, 1280)
    assert progress[-1] == (24, 24) and len(list(tmp_path.glob("*.npy"))) == 1
    again, found = cache.features(prefix, shapes, backbone="MobileNetV2",
                                  preprocess=tlcore.get_backbone("MobileNetV2").preprocess)
    assert found
    np.testing.assert_array_equal(np.asarray(again), np.asarray(rows))
    x = tlcore.get_backbone("MobileNetV2").preprocess(fitted_pixels(str(shapes.files[5]), (32, 32))[None]
                                                      .astype("float32"))
    np.testing.assert_allclose(rows[5], prefix(x).numpy()[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_key_follows_the_dataset_the_weights_the_size_the_cut_and_the_fitting(tmp_path, shapes):
    def prefix(spec):
        keras.utils.set_random_seed(0)
        return frozen_split(tlcore.build_transfer_model(dataclasses.replace(spec, num_classes=4)))[0]

    base = prefix(SPEC)
    key = cache_key(base, shapes, backbone="MobileNetV2", mode="crop")
    assert key == cache_key(prefix(SPEC), shapes, backbone="MobileNetV2", mode="crop")  # rebuilt: same seeds
    other_data = tlcore.sample_dataset(per_class=6, size=40, seed=5)
    changed_weights = prefix(SPEC)
    changed_weights.weights[0].assign(changed_weights.weights[0] + 1.0)
    others = {
        "dataset": cache_key(base, other_data, backbone="MobileNetV2", mode="crop"),
        "weights": cache_key(changed_weights, shapes, backbone="MobileNetV2", mode="crop"),
        "size": cache_key(prefix(dataclasses.replace(SPEC, input_shape=(40, 40, 3))), shapes,
                          backbone="MobileNetV2", mode="crop"),
        "cut": cache_key(prefix(dataclasses.replace(SPEC, trainable_from="block_16_expand")), shapes,
                         backbone="MobileNetV2", mode="crop"),
        "fitting": cache_key(base, shapes, backbone="MobileNetV2", mode="squash"),
    }
    assert len({key, *others.values()}) == 1 + len(others), others

    # a whole frozen base at 64 px leaves a 2x2 map: a pooling window of 1 or 2 before the global pooling gives
    # vectors of the same length, of different values (a run at one window must not read the other's features)
    windows = {size: prefix(dataclasses.replace(SPEC, input_shape=(64, 64, 3), pool_size=size)) for size in (1, 2)}
    assert windows[1].output.shape == windows[2].output.shape
    assert cache_key(windows[1], shapes, backbone="MobileNetV2", mode="crop") != cache_key(
        windows[2], shapes, backbone="MobileNetV2", mode="crop")
    assert cache_key(windows[2], shapes, backbone="MobileNetV2", mode="crop") == cache_key(
        prefix(dataclasses.replace(SPEC, input_shape=(64, 64, 3), pool_size=2)), shapes, backbone="MobileNetV2",
        mode="crop")


@pytest.mark.slow
def test_a_second_run_with_another_head_never_runs_the_base(tmp_path, shapes, monkeypatch):
    cache = FeatureCache(tmp_path)
    seen = []
    first = tlcore.train(SPEC, shapes, tlcore.TrainConfig(epochs=2, batch_size=8), cache=cache,
                         on_batch=lambda p: seen.append(p.phase))
    assert first.feature_cache and FEATURES_PHASE in seen

    def no_base(*args, **kwargs):
        raise AssertionError("the frozen base ran again")

    monkeypatch.setattr(FeatureCache, "_extract", no_base)
    seen.clear()
    second = tlcore.train(dataclasses.replace(SPEC, hidden_units=16, dropout=0.5), shapes,
                          tlcore.TrainConfig(epochs=2, batch_size=8, learning_rate=3e-4),
                          cache=cache, on_batch=lambda p: seen.append(p.phase))
    assert second.feature_cache and FEATURES_PHASE not in seen and len(second.history) == 2
    assert second.evaluation.confusion.sum() == first.evaluation.confusion.sum() > 0


@pytest.mark.slow
def test_training_never_asks_for_the_whole_dataset_as_an_array(shapes, monkeypatch, tmp_path):
    assert not hasattr(tlcore.ImageDataset, "arrays")
    result = tlcore.train(SPEC, shapes, tlcore.TrainConfig(epochs=1, batch_size=8, cache_features=False))
    assert not result.feature_cache and len(result.history) == 1


@pytest.mark.slow
def test_old_feature_files_make_room_and_a_run_streams_when_even_that_is_not_enough(tmp_path, shapes, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))  # a data folder of its own: its usage is exactly known
    cache = FeatureCache(tmp_path / "features")
    tlcore.train(SPEC, shapes, tlcore.TrainConfig(epochs=1, batch_size=8), cache=cache)
    stale = list(cache.root.glob("*.npy"))
    assert stale
    for path in stale:  # used an hour ago: files used in the last minutes are never deleted
        os.utime(path, (time.time() - 3600,) * 2)
    used = tlcore.core.storage.data_usage().used
    needed = 24 * 1280 * 4  # the next run's features; the stale file is as large
    monkeypatch.setenv("TL_MAX_DATA_GB", str((used + needed // 2) / 2**30))  # fits once the stale file goes
    other = dataclasses.replace(SPEC, input_shape=(40, 40, 3))
    made_room = tlcore.train(other, shapes, tlcore.TrainConfig(epochs=1, batch_size=8), cache=cache)
    assert made_room.feature_cache and not any(path.exists() for path in stale)
    monkeypatch.setenv("TL_MAX_DATA_GB", str(used / 2**30 / 2))  # no room at all
    streamed = tlcore.train(dataclasses.replace(SPEC, input_shape=(48, 48, 3)), shapes,
                            tlcore.TrainConfig(epochs=1, batch_size=8), cache=cache)
    assert not streamed.feature_cache and len(streamed.history) == 1


def _feature_file(cache: FeatureCache, key: str, rows: int, age: float) -> Path:
    cache.root.mkdir(parents=True, exist_ok=True)
    np.save(cache.path(key), np.arange(rows * 256, dtype=np.float32).reshape(rows, 256))
    os.utime(cache.path(key), (time.time() - age,) * 2)
    return cache.path(key)


def test_making_room_spares_files_in_recent_use_and_passes_still_writing(tmp_path, shapes, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    cache = FeatureCache(tmp_path / "features")
    old = _feature_file(cache, "old", 400, age=3600)
    recent = _feature_file(cache, "recent", 400, age=60)  # a sweep's trials may open it any moment
    writing = cache.partial("other")  # a pass still writing, not yet renamed into place
    writing.write_bytes(b"\0" * 400 * 1024)
    used = tlcore.core.storage.data_usage().used
    monkeypatch.setenv("TL_MAX_DATA_GB", str((used + 1000) / tlcore.core.storage.GB))  # fits once the old file goes
    cache._make_room(400 * 1024, shapes)
    assert not old.exists() and recent.exists() and writing.exists()
    with pytest.raises(tlcore.StorageError):  # the rest is in use: no room, so a run streams its images instead
        cache._make_room(2 * 400 * 1024, shapes)
    assert recent.exists() and writing.exists()


def test_rows_of_a_feature_file_deleted_while_in_use_are_still_read(tmp_path):
    """Deleted under a running job (room made by another machine's job in an older release, or by hand):
    the mapping keeps the contents, and the job reads on."""
    from tlcore.data.pipeline import read_rows

    cache = FeatureCache(tmp_path / "features")
    path = _feature_file(cache, "gone", 50, age=0)
    rows = cache.load("gone")
    wanted = np.array([1, 2, 3, 40])
    expected = read_rows(rows, wanted)
    path.unlink()
    np.testing.assert_array_equal(read_rows(rows, wanted), expected)
    assert expected[3, 0] == 40 * 256


def test_stop_during_the_feature_pass_ends_the_run_there_and_keeps_nothing_of_it(tmp_path):
    """Before, a Stop waited for the whole pass (minutes on a large dataset), then trained a batch."""
    import threading

    many = tlcore.sample_dataset(per_class=20, size=32, seed=9)  # 80 images: three batches of the pass
    cache, stop, seen = FeatureCache(tmp_path / "features"), threading.Event(), []

    def on_batch(progress):
        seen.append(progress)
        if progress.phase == FEATURES_PHASE:
            stop.set()  # pressed once the first batch of the pass is done

    with pytest.raises(tlcore.StoppedBeforeTraining, match=r"stopped while its frozen features were computed "
                                                           r"\(32 of 80 images\): nothing was trained"):
        tlcore.train(SPEC, many, tlcore.TrainConfig(epochs=1, batch_size=8), on_batch=on_batch, stop=stop,
                     cache=cache)
    assert [p.phase for p in seen] == [FEATURES_PHASE]  # no training batch
    assert not cache.root.exists() or not any(cache.root.iterdir())  # no features file, no partial one


def test_a_partial_file_of_a_killed_pass_is_removed_by_the_next_pass_on_the_machine(tmp_path):
    import subprocess
    import sys

    cache = FeatureCache(tmp_path / "features")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = cache.root / f".tl-partial-{int(ended.stdout)}-somekey.0123.npy"  # its process is gone
    mine = cache.partial("mine")
    mine.write_bytes(b"\0" * 64)
    left.write_bytes(b"\0" * 64)
    fresh = cache.partial("next")
    assert not left.exists() and mine.exists()  # this process is alive: its file stays
    assert fresh.name.startswith(f".tl-partial-{os.getpid()}-next.") and fresh.suffix == ".npy"
