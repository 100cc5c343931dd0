"""Hostile round 4: a damaged archive member, a model that is no image classifier, a run row with an odd date."""

import io
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest
from support import image_bytes

import tlcore
from tlcore.inference.batch import archive_items
from tlcore.models.model_files import model_outline

CLASSES = {"a": 3, "b": 3}


def _classes_zip(damaged: str | None = None) -> bytes:
    """A zip of two class folders of PNGs, stored uncompressed; one byte of ``damaged``'s data flipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, count in CLASSES.items():
            for i in range(count):
                archive.writestr(f"{name}/{i}.png", image_bytes(seed=10 * len(name) + i, size=(24, 24)))
    data = bytearray(buffer.getvalue())
    if damaged:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            info = archive.getinfo(damaged)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + info.compress_size // 2] ^= 0xFF  # past the image's first bytes: its CRC-32 no longer holds
    return bytes(data)


def test_a_damaged_member_refuses_the_dataset_in_words_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    assert tlcore.load_dataset(_classes_zip()).counts == CLASSES  # the same archive intact loads
    with pytest.raises(tlcore.DatasetError, match=r"Archive members must unpack intact\. Received: 'b/1\.png' "
                                                  r"is damaged \(Bad CRC-32"):
        tlcore.load_dataset(_classes_zip(damaged="b/1.png"))
    assert len(tlcore.list_datasets()) == 1  # only the intact one is stored


def test_a_damaged_member_of_a_batch_is_one_skipped_file_with_its_reason():
    items, _ = archive_items("batch.zip", _classes_zip(damaged="a/2.png"))
    read = {}
    for item in items:
        try:
            read[item.name] = len(item.read())
        except tlcore.DatasetError as exc:  # predict_batch lists such a file as skipped, with this reason
            read[item.name] = str(exc)
    assert read["batch.zip/a/2.png"].startswith("Archive members must unpack intact. Received: 'a/2.png' is damaged")
    assert all(isinstance(size, int) and size > 0 for name, size in read.items() if name != "batch.zip/a/2.png")


def _saved(tmp_path, model: keras.Model) -> str:
    path = tmp_path / "model.keras"
    model.save(path)
    return str(path)


def _dense_scores(x, classes=3, name="scores"):
    return keras.layers.Dense(classes, activation="softmax", name=name)(x)


@pytest.mark.parametrize("case, received", [
    ("flat input", r"inputs \[\(16,\)\] and outputs \[\(3,\)\]"),
    ("one channel", r"inputs \[\(32, 32, 1\)\] and outputs \[\(3,\)\]"),
    ("two inputs", r"inputs \[\(32, 32, 3\), \(32, 32, 3\)\] and outputs \[\(3,\)\]"),
    ("two outputs", r"inputs \[\(32, 32, 3\)\] and outputs \[\(3,\), \(3,\)\]"),
    ("a feature map out", r"inputs \[\(32, 32, 3\)\] and outputs \[\(32, 32, 4\)\]"),
])
def test_a_model_file_that_is_no_image_classifier_is_refused_before_its_weights_load(case, received, tmp_path):
    image = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    if case == "flat input":
        flat = keras.Input((16,))
        model = keras.Model(flat, _dense_scores(flat))
    elif case == "one channel":
        grey = keras.Input((32, 32, 1))
        model = keras.Model(grey, _dense_scores(keras.layers.GlobalAveragePooling2D()(grey)))
    elif case == "two inputs":
        other = keras.Input((32, 32, 3))
        joined = keras.layers.Add()([image, other])
        model = keras.Model([image, other], _dense_scores(keras.layers.GlobalAveragePooling2D()(joined)))
    elif case == "two outputs":
        model = keras.Model(image, [_dense_scores(pooled), _dense_scores(pooled, name="more")])
    else:
        model = keras.Model(image, keras.layers.Conv2D(4, 3, padding="same")(image))
    path = _saved(tmp_path, model)
    expected = rf"must take one colour image, \(height, width, 3\), and give one vector of class scores.*{received}"
    with pytest.raises(tlcore.ModelFileError, match=expected):
        model_outline(path)  # what an upload's worker is started from
    with pytest.raises(tlcore.ModelFileError, match=expected):
        tlcore.load_model_file(path)


def test_an_image_classifier_still_loads_and_answers(tmp_path):
    image = keras.Input((32, 32, 3))
    model = keras.Model(image, _dense_scores(keras.layers.GlobalAveragePooling2D()(image)))
    loaded = tlcore.load_model_file(_saved(tmp_path, model))
    pixels = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-6)


def test_a_run_row_with_a_date_out_of_range_leaves_the_list_readable(tmp_path):
    """A row indexed before imports checked dates (or edited by hand): the list reads, that run without a date."""
    store = tlcore.RunStore(tmp_path / "runs")
    row = ("20260101-000000-abcdef", 1e20, "odd", "MobileNetV2", 32, "frozen", "shapes", "done", 0.5, 1, 2.0, "", "", "", 0.25)
    store.add_rows([row, ("20260101-000001-abcdef", 1_780_000_000.0, *row[2:])])
    created = store.list().set_index("id")["created"]
    assert pd.isna(created["20260101-000000-abcdef"])
    assert str(created["20260101-000001-abcdef"]) == "2026-05-28 20:26:40"
