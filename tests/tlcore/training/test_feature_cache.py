"""Streaming images and frozen-prefix features on disk, reused by key."""

import dataclasses

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
