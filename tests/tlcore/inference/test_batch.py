"""Batch prediction (many images and zips in, a table and a CSV out) and the camera on Predict and Train."""

import io
import stat
import zipfile

import keras
import pandas as pd
import pytest
from support import image_bytes, open_page, zip_of

import tlcore

CLASSES = ["circle", "square", "triangle"]


def jpeg(seed: int, size=(64, 48)) -> bytes:
    return image_bytes(size, fmt="JPEG", seed=seed)


@pytest.fixture(scope="module")
def tiny_model() -> keras.Model:
    """Three classes from 32x32 pixels: enough to exercise every path without a backbone."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))


def test_many_images_and_a_zip_give_one_row_each_in_upload_order(tiny_model):
    archive = zip_of({"photos/a/1.png": image_bytes(seed=1), "photos/b/2.jpg": jpeg(2),
                        "__MACOSX/photos/a/._1.png": b"junk", "photos/.DS_Store": b"junk", "photos/notes.txt": b"hi"})
    files = [("one.png", image_bytes(seed=3)), ("more.zip", archive), ("two.jpg", jpeg(4))]
    items = tlcore.batch_inputs(files)
    assert [item.name for item in items] == ["one.png", "more.zip/photos/a/1.png", "more.zip/photos/b/2.jpg",
                                             "more.zip/photos/notes.txt", "two.jpg"]
    seen = []
    result = tlcore.predict_batch(tiny_model, items, backbone="MobileNetV2", labels=CLASSES, batch_size=2,
                                  progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    table = result.table
    assert list(table.columns) == ["file", "top-1", "probability", "top-5"]
    assert table["file"].tolist() == ["one.png", "more.zip/photos/a/1.png", "more.zip/photos/b/2.jpg", "two.jpg"]
    assert len(result.thumbnails) == 4 and all(t.startswith("data:image/jpeg;base64,") for t in result.thumbnails)
    assert result.skipped == (result.skipped[0],) and result.skipped[0].startswith("more.zip/photos/notes.txt: ")
    assert "must be JPEG, PNG, WebP, BMP, GIF or TIFF" in result.skipped[0]
    assert result.top_k.columns.tolist() == ["row", "rank", "label", "class_id", "probability"]
    assert result.top_k["row"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # top-5 clamped to the 3 classes
    for row in table.itertuples():
        top = result.top_k_of(row.Index)
        assert row._2 == top.label.iloc[0] and row.probability == pytest.approx(top.probability.iloc[0])
        assert len(top) == 3 and row._4.count(" · ") == 2


def test_rows_agree_with_one_image_predictions(tiny_model):
    data = [image_bytes((40, 70), seed=s) for s in range(3)]
    result = tlcore.predict_batch(tiny_model, tlcore.batch_inputs([(f"{i}.png", d) for i, d in enumerate(data)]),
                                  backbone="MobileNetV2", labels=CLASSES, mode="squash")
    for row, source in enumerate(data):
        top = result.top_k_of(row)
        single = tlcore.predict_top_k(tiny_model, source, backbone="MobileNetV2", labels=CLASSES, k=5, mode="squash")
        pd.testing.assert_frame_equal(top, single, atol=1e-6)


def test_csv_holds_the_table_and_the_skipped_files(tiny_model):
    items = tlcore.batch_inputs([("ok.png", image_bytes(seed=1)), ("bad.png", b"not an image")])
    result = tlcore.predict_batch(tiny_model, items, backbone="MobileNetV2", labels=CLASSES)
    frame = pd.read_csv(io.BytesIO(result.csv()))
    assert frame.columns.tolist() == ["file", "top-1", "probability", "top-5"]
    assert frame["file"].tolist() == ["ok.png", "bad.png"]
    assert frame.loc[0, "top-1"] in CLASSES and 0 < frame.loc[0, "probability"] <= 1
    assert frame.loc[1, "top-5"].startswith("skipped: An image must be")


def crafted(name: str, **info_attributes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fine.png", image_bytes())
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # past zipfile's own clean-up, as a crafted archive would be
        for key, value in info_attributes.items():
            setattr(info, key, value)
        archive.writestr(info, image_bytes(seed=2))
    return buffer.getvalue()


@pytest.mark.parametrize("archive,message", [
    (crafted("../evil.png"), "must be relative paths"),
    (crafted("/etc/evil.png"), "must be relative paths"),
    (crafted("link.png", external_attr=(stat.S_IFLNK | 0o777) << 16), "may not contain links"),
    (zip_of({"bomb.png": b"\0" * 2_000_000}), "compressed at most 100:1"),
    (b"PK\x03\x04 but nothing after", "must be a readable .zip file"),
])
def test_bad_zips_are_refused_whole_by_the_dataset_checks(archive, message):
    with pytest.raises(tlcore.DatasetError, match=message):
        tlcore.batch_inputs([("ok.png", image_bytes()), ("upload.zip", archive)])


def test_budgets_are_the_datasets(monkeypatch):
    monkeypatch.setenv("TL_MAX_DATASET_IMAGES", "2")
    with pytest.raises(tlcore.DatasetError, match="at most 2 images .TL_MAX_DATASET_IMAGES"):
        tlcore.batch_inputs([(f"{i}.png", image_bytes(seed=i)) for i in range(3)])
    monkeypatch.setenv("TL_MAX_DATASET_IMAGES", "100")
    one = image_bytes((64, 64))
    monkeypatch.setenv("TL_MAX_ARCHIVE_BYTES", str(int(1.5 * len(one))))  # each upload fits, not both together
    with pytest.raises(tlcore.DatasetError, match=r"at most [\d,]+ bytes in all.*TL_MAX_ARCHIVE_BYTES.*at 2.zip"):
        tlcore.batch_inputs([("1.zip", zip_of({"a.png": one})), ("2.zip", zip_of({"b.png": one}))])


def test_labels_must_match_the_outputs(tiny_model):
    with pytest.raises(tlcore.ConfigError, match="Labels must name each of the model's 3 outputs"):
        tlcore.predict_batch(tiny_model, [], backbone="MobileNetV2", labels=["a", "b"])


def test_a_batch_runs_in_the_precision_asked_for_whatever_tl_precision_says(tiny_model, monkeypatch):
    """A trained run whose bfloat16 check failed insists on float32 (``precision_for_run``), in batches too."""
    items = tlcore.batch_inputs([(f"{i}.png", image_bytes(seed=i)) for i in range(4)])
    exact = tlcore.predict_batch(tiny_model, items, backbone="MobileNetV2", labels=CLASSES).top_k
    monkeypatch.setenv("TL_PRECISION", "bfloat16")
    rounded = tlcore.predict_batch(tiny_model, items, backbone="MobileNetV2", labels=CLASSES).top_k
    assert not rounded["probability"].equals(exact["probability"])  # the setting alone: bfloat16
    insisted = tlcore.predict_batch(tiny_model, items, backbone="MobileNetV2", labels=CLASSES, precision="float32")
    pd.testing.assert_frame_equal(insisted.top_k, exact)


def _biased_model(path, winner: int):
    """Three outputs, ``winner`` always first: the image does not matter, the model does."""
    inputs = keras.Input((32, 32, 3))
    scores = keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant([5.0 * (i == winner) for i in range(3)]))
    keras.Model(inputs, scores(keras.layers.GlobalAveragePooling2D()(inputs))).save(path)
    return path.read_bytes()


@pytest.mark.slow
def test_another_uploaded_model_or_other_class_names_classify_the_batch_again(tmp_path):
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="batch", predict_model="uploaded",
                   model_classes="cat, dog, bird")
    at.file_uploader(key="model_file").set_value(
        ("first.keras", _biased_model(tmp_path / "first.keras", 0), "application/octet-stream")).run()
    upload_batch(at, BATCH)
    assert set(at.dataframe[0].value["top-1"]) == {"cat"}
    at.file_uploader(key="model_file").set_value(  # the same images, another model: not the first one's table
        ("second.keras", _biased_model(tmp_path / "second.keras", 2), "application/octet-stream")).run()
    assert not at.exception and not at.error
    assert set(at.dataframe[0].value["top-1"]) == {"bird"}
    at.text_input(key="model_classes").set_value("apple, pear, plum").run()  # other names for the same outputs
    assert set(at.dataframe[0].value["top-1"]) == {"plum"}


# The Predict page: batch mode for ImageNet, an uploaded model and a trained run; the camera.

@pytest.fixture(scope="module")
def finished_run():
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    dataset = tlcore.sample_dataset(per_class=8, size=32)
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    result = tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=1, batch_size=8))
    run_id = store.create(result.spec, result.config, dataset.summary(), name="shapes for batches", owner="tester")
    store.finish(run_id, result)
    return store.get(run_id)


def upload_batch(at, files):
    at.file_uploader(key="batch_files").set_value(files).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    return at


BATCH = [("a.png", image_bytes(seed=1), "image/png"),
         ("b.zip", zip_of({"x/1.jpg": jpeg(2), "x/2.png": image_bytes(seed=3), "x/3.txt": b"no"}),
          "application/zip")]


@pytest.mark.slow
def test_predict_page_batch_with_imagenet_gives_a_table_thumbnails_and_a_csv():
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="batch")
    upload_batch(at, BATCH)
    table = at.dataframe[0].value
    assert table["file"].tolist() == ["a.png", "b.zip/x/1.jpg", "b.zip/x/2.png"]
    assert table["image"].str.startswith("data:image/jpeg;base64,").all()
    assert "3 image(s) classified" in at.subheader[0].value
    assert at.dataframe[1].value["file"].tolist() == ["b.zip/x/3.txt"]  # the skipped file and why
    assert any(b.label == "Download the table (CSV)" for b in at.get("download_button"))
    assert at.session_state["batch_result"][1].table["top-5"].str.count(" · ").eq(4).all()  # 1,000 classes: 5


@pytest.mark.slow
def test_predict_page_batch_with_a_trained_run_and_with_its_downloaded_model(finished_run):
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="batch",
                   predict_model=finished_run.id)
    upload_batch(at, BATCH)
    assert set(at.dataframe[0].value["top-1"]) <= set(finished_run.class_names)
    from_run = at.session_state["batch_result"][1].table
    keras_file = tlcore.run_keras_file(finished_run).read_bytes()  # the run page's "Download model (.keras)"
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="batch", predict_model="uploaded",
                   model_classes=", ".join(finished_run.class_names))
    at.file_uploader(key="model_file").set_value(("mine.keras", keras_file, "application/octet-stream")).run()
    upload_batch(at, BATCH)
    pd.testing.assert_frame_equal(at.session_state["batch_result"][1].table, from_run)


@pytest.mark.slow
def test_a_read_only_visitor_sees_a_large_result_that_is_not_kept(monkeypatch):
    import ui.batch

    monkeypatch.setenv("TL_READ_ONLY", "1")
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="batch")
    upload_batch(at, BATCH)
    kept = at.session_state["batch_result"][1]  # a small result is kept, as for everyone
    assert kept.table["file"].tolist() == ["a.png", "b.zip/x/1.jpg", "b.zip/x/2.png"]
    assert 0 < kept.nbytes() < 100_000  # a few KB an image
    monkeypatch.setattr(ui.batch, "READ_ONLY_KEPT_MB", 1_000 / 2**20)  # 1,000 bytes: no result fits
    upload_batch(at, BATCH[:1])  # another batch: the last result goes, the new one is shown but not kept
    assert at.dataframe[0].value["file"].tolist() == ["a.png"] and "1 image(s) classified" in at.subheader[0].value
    assert "batch_result" not in at.session_state
    assert any("shown but not kept: read-only visitors keep results up to" in c.value for c in at.caption)
    assert any(b.label == "Download the table (CSV)" for b in at.get("download_button"))


@pytest.mark.slow
def test_a_bad_zip_in_a_batch_is_explained():
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="batch")
    at.file_uploader(key="batch_files").set_value([("evil.zip", crafted("../evil.png"), "application/zip")]).run()
    assert not at.exception and "must be relative paths" in at.error[0].value and not at.dataframe


@pytest.mark.slow
def test_predict_with_the_camera():
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_input="camera")
    assert at.camera_input(key="camera_photo").label == "Take a photo"
    at.camera_input(key="camera_photo").set_value(("image.jpg", jpeg(7, (120, 90)), "image/jpeg")).run()
    assert not at.exception and not at.error
    assert len(at.table[0].value) == 5
    assert any("What the network sees of your photo" in c for image in at.get("image") for c in image.captions)


@pytest.mark.slow
def test_train_images_per_class_from_the_camera():
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)
    at = open_page("../pages/train.py", transfer_spec=spec)
    at.radio(key="dataset_source").set_value("Images per class").run()
    at.text_input[0].set_value("apples, pears").run()
    assert "at least two images" in at.info[0].value and not at.camera_input  # the camera is off until wanted
    shots = 0
    for name in ("apples", "pears"):
        at.radio(key="camera_class").set_value(name).run()
        for _ in range(2):
            at.camera_input(key=f"camera-{shots}").set_value(("image.jpg", jpeg(shots), "image/jpeg")).run()
            shots += 1
            assert not at.exception
            assert at.camera_input(key=f"camera-{shots}").value is None  # a fresh camera for the next photo
    assert {n: len(v) for n, v in at.session_state["camera_shots"].items()} == {"apples": 2, "pears": 2}
    assert "4 images in 2 classes" in " ".join(c.value for c in at.caption)
