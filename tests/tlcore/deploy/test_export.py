"""Exports that deploy: one small trained run, every format, verified in ONE fresh Python process without tlcore.

The verifier (``VERIFY`` below) runs with ``python -I`` in a temporary folder, so neither this repository
nor ``tlcore`` can be imported; it unzips each export, loads the model the way a deployment would
(``keras.saving.load_model``, ``tf.lite.Interpreter``, ``tf.saved_model.load``), runs the validation
images, and imports each export's own ``predict.py`` and runs it on the image files.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import tlcore
from tlcore.deploy import export

pytestmark = pytest.mark.slow  # a trained run, every export, and a fresh process checking them

FLOAT32_FORMATS = ("keras", "tflite-float32", "savedmodel")
TOLERANCE = {"keras": 1e-4, "tflite-float32": 1e-4, "savedmodel": 1e-4, "tflite-float16": 1e-2}
MIN_INT8_AGREEMENT = 0.95

VERIFY = r'''
import importlib.util, json, sys, zipfile
from pathlib import Path

assert importlib.util.find_spec("tlcore") is None, "tlcore must not be importable here"
import numpy as np

folder = Path(sys.argv[1])
pixels = np.load(folder / "pixels.npy")
reference = np.load(folder / "reference.npy")
images = sorted(str(p) for p in (folder / "images").glob("*.png"))
report = {}


def outputs(fmt, root):
    if fmt == "keras":
        import keras
        from keras.applications.vgg16 import preprocess_input
        model = keras.saving.load_model(root / "model.keras", compile=False)
        return np.asarray(model(preprocess_input(pixels.copy()), training=False))
    import tensorflow as tf
    if fmt == "savedmodel":
        serve = tf.saved_model.load(str(root / "saved_model" / "1")).signatures["serving_default"]
        return serve(images=tf.constant(pixels))["probabilities"].numpy()
    interpreter = tf.lite.Interpreter(model_path=str(root / "model.tflite"))
    runner = interpreter.get_signature_runner()
    return np.concatenate([runner(images=row[None])["probabilities"] for row in pixels])


for path in sorted(folder.glob("*.zip")):
    fmt = path.stem
    unpacked = folder / f"unpacked-{fmt}"  # in the test's own folder, which pytest removes
    unpacked.mkdir()
    with zipfile.ZipFile(path) as archive:
        archive.extractall(unpacked)
    (root,) = unpacked.iterdir()
    out = outputs(fmt, root)
    spec = importlib.util.spec_from_file_location(f"example_{fmt.replace('-', '_')}", root / "predict.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tops = example.predict(images, k=5)
    report[fmt] = {
        "shape": list(out.shape),
        "max_diff": float(np.abs(out - reference).max()),
        "agreement": float((out.argmax(1) == reference.argmax(1)).mean()),
        "example_top1": [top[0][0] for top in tops],
        "example_k": [len(top) for top in tops],
        "labels": example.LABELS,
    }
print("REPORT " + json.dumps(report))
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small VGG16 run (block5 fine-tuned, so its model.keras holds Adam's state) with every export."""
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")  # the app's store: the run page can open it
    dataset = tlcore.sample_dataset(per_class=10, size=32)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=32,
                               dropout=0.0, trainable_from="block5_conv1")
    config = tlcore.TrainConfig(epochs=6, batch_size=8, learning_rate=1e-3, validation_fraction=0.5,
                                cache_features=False)  # the whole model trains, as in the app with augmentation
    result = tlcore.train(spec, dataset, config)
    run_id = store.create(result.spec, result.config, dataset.summary(), name="shapes **bold** [link](http://x)",
                          owner="tester")
    store.finish(run_id, result)
    record = store.get(run_id)
    model = store.load_model(run_id)
    zips = {fmt: export.export_run(record, fmt, model=model) for fmt in export.EXPORT_FORMATS}
    return dataset, record, model, zips


@pytest.fixture(scope="module")
def verified(trained, tmp_path_factory):
    """The fresh process's report: every export's outputs on the validation images, and its example's top-5."""
    dataset, record, model, zips = trained
    folder = tmp_path_factory.mktemp("verify")
    files = [dataset.files[i] for i in record.result.validation_indices]
    pixels = np.stack([np.asarray(tlcore.fit_image(tlcore.load_image(f), (32, 32)), dtype=np.float32) for f in files])
    reference = tlcore.compiled_forward(model)(tlcore.get_backbone("VGG16").preprocess(pixels.copy()))
    np.save(folder / "pixels.npy", pixels)
    np.save(folder / "reference.npy", reference)
    (folder / "images").mkdir()
    for index, file in enumerate(files):
        (folder / "images" / f"{index:03d}.png").write_bytes(Path(file).read_bytes())
    for fmt, path in zips.items():
        (folder / f"{fmt}.zip").write_bytes(path.read_bytes())
    (folder / "verify.py").write_text(VERIFY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TL_"))}
    done = subprocess.run([sys.executable, "-I", str(folder / "verify.py"), str(folder)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):]), reference, record


def test_every_export_is_a_zip_with_the_model_labels_card_and_example(trained):
    _, record, _, zips = trained
    assert set(zips) == {"keras", "tflite-float32", "tflite-float16", "tflite-int8", "savedmodel"}
    for fmt, path in zips.items():
        assert path == export.export_path(record, fmt) and path.parent == record.folder / "exports"
        names = export.zip_members(path)
        top = f"transfer-lab-{record.id}-{fmt}/"
        assert all(name.startswith(top) for name in names)
        inside = {name[len(top):] for name in names}
        assert {"labels.txt", "MODEL_CARD.md", "predict.py"} <= inside
        model_name = export.EXPORT_FORMATS[fmt].model_name
        assert any(name == model_name or name.startswith(model_name + "/") for name in inside), inside
        with zipfile.ZipFile(path) as archive:
            labels = archive.read(top + "labels.txt").decode()
            card = archive.read(top + "MODEL_CARD.md").decode()
        assert labels.splitlines() == ["circle", "square", "triangle", "stripes"]
        for phrase in ("circle", "32x32", "Preprocessing", "caffe", "Accuracy", "6 epoch(s)", "batch size 8",
                       "learning rate 0.001", "trained 20", "exported 20", record.id):
            assert phrase in card, (fmt, phrase)
        assert ("raw RGB pixels" in card) == (fmt != "keras")  # preprocessing is inside all but .keras
    assert "saved_model/1/saved_model.pb" in " ".join(export.zip_members(zips["savedmodel"]))
    sizes = {fmt: path.stat().st_size for fmt, path in zips.items()}
    assert sizes["tflite-int8"] < sizes["tflite-float16"] < sizes["tflite-float32"]


def test_user_names_in_the_card_are_literal_text(trained):
    _, record, _, zips = trained
    with zipfile.ZipFile(zips["keras"]) as archive:
        card = archive.read(f"transfer-lab-{record.id}-keras/MODEL_CARD.md").decode()
    assert r"\*\*bold\*\* \[link\]\(http\:" in card.splitlines()[0]


def test_keras_export_has_no_optimizer_state_and_is_smaller(trained, tmp_path):
    _, record, _, zips = trained
    with zipfile.ZipFile(zips["keras"]) as archive:
        name = next(n for n in archive.namelist() if n.endswith("model.keras"))
        (tmp_path / "model.keras").write_bytes(archive.read(name))
        size = archive.getinfo(name).file_size

    def groups(path):
        with zipfile.ZipFile(path) as keras_file:
            (tmp_path / "weights.h5").write_bytes(keras_file.read("model.weights.h5"))
        with h5py.File(tmp_path / "weights.h5") as weights:
            return set(weights.keys())

    assert "optimizer" in groups(record.model_path)  # the run's own file holds Adam's moments of block5
    assert "optimizer" not in groups(tmp_path / "model.keras")
    assert size < 0.75 * record.model_path.stat().st_size
    bare = export.run_keras_file(record)  # the plain download: the same file, not zipped
    assert "optimizer" not in groups(bare) and bare.stat().st_size == size
    tlcore.load_model_file(bare)  # passes the app's own allow-list, so Predict takes it back


def test_exports_match_the_run_model_in_a_fresh_process_without_tlcore(verified):
    report, reference, _ = verified
    assert set(report) == set(export.EXPORT_FORMATS)
    for fmt, row in report.items():
        assert row["shape"] == list(reference.shape)
        if fmt in TOLERANCE:
            assert row["max_diff"] <= TOLERANCE[fmt], (fmt, row["max_diff"])
    assert report["tflite-int8"]["agreement"] >= MIN_INT8_AGREEMENT, report["tflite-int8"]
    print({fmt: (f"{row['max_diff']:.1e}", row["agreement"]) for fmt, row in report.items()})


def test_each_example_script_runs_without_tlcore_and_agrees(verified):
    report, reference, record = verified
    expected = [record.class_names[i] for i in reference.argmax(1)]
    for fmt, row in report.items():
        assert row["labels"] == record.class_names
        assert row["example_k"] == [4] * len(reference)  # top-5 clamped to the 4 classes
        agreement = np.mean([a == b for a, b in zip(row["example_top1"], expected)])
        assert agreement >= (1.0 if fmt in FLOAT32_FORMATS else MIN_INT8_AGREEMENT), (fmt, agreement)


def test_an_export_is_built_once_and_kept(trained):
    _, record, model, zips = trained
    before = zips["tflite-int8"].stat().st_mtime_ns
    assert export.export_run(record, "tflite-int8", model=model) == zips["tflite-int8"]
    assert zips["tflite-int8"].stat().st_mtime_ns == before


def test_the_run_page_reads_no_model_file_until_a_download_is_clicked(trained, monkeypatch):
    from support import open_page

    from ui import run_view

    _, record, _, zips = trained

    def refuse(*args, **kwargs):
        raise AssertionError("a page render must not read or build a model file")

    from tlcore.models import model_files

    # the facade's names and the modules that define or import them (the run store imports the loader
    # from model_files when it opens a model)
    for owner, name in ((tlcore.RunStore, "model_bytes"), (tlcore, "export_run"), (tlcore, "run_keras_file"),
                        (export, "export_run"), (export, "run_keras_file"), (tlcore, "load_model_file"),
                        (model_files, "load_model_file")):
        monkeypatch.setattr(owner, name, refuse)
    at = open_page("../pages/runs.py", backbone="VGG16", opened_run=record.id)
    assert not at.exception and not at.error
    labels = [button.label for button in at.get("download_button")]
    assert any(label.startswith("Download model (.keras)") for label in labels)
    for form in export.EXPORT_FORMATS.values():  # built already by the fixture: their sizes are shown
        size = tlcore.format_size(zips[form.key].stat().st_size)
        assert f"{form.title} ({size})" in labels
    monkeypatch.undo()
    assert run_view._read_export(export.export_run, record, "tflite-int8") == zips["tflite-int8"].read_bytes()


def test_an_unknown_format_is_refused_with_the_accepted_ones(trained):
    _, record, _, _ = trained
    with pytest.raises(tlcore.ConfigError, match=r"Export format must be one of \['keras', .*Received: 'onnx'"):
        export.export_run(record, "onnx")
