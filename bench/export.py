"""Exports: the size and single-image latency of each format, and how closely each agrees with the run.

Run: .venv/bin/python bench/export.py [repeats]

Trains two small runs on the built-in sample shapes, offline (weights=None: the sizes and the
arithmetic, and so the time, are those of ImageNet weights), stores them, and exports each in every
format. Both fine-tune their whole base (VGG16 at 128x128, MobileNetV2 at 96x96), so their
model.keras holds Adam's two moments of every weight, as a real fine-tuned run's does.

For each format: the zip's size, the model's own size, how long the export took, the median of
`repeats` single-image calls after warm-up (TFLite: ``tf.lite.Interpreter`` with its default
threads; SavedModel: its ``serving_default`` signature; Keras: ``tlcore.compiled_forward`` on the
exported .keras, plus the preprocessing the other formats do inside), and on the run's validation
images the largest difference in probabilities and the share of equal top-1 classes against the
run's own model.
"""

import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_PRECISION", "float32")
os.environ.setdefault("TL_DATA_DIR", tempfile.mkdtemp(prefix="tl-bench-export-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from predict_latency import median_ms  # noqa: E402  (bench/ is this script's folder)

import tlcore  # noqa: E402
from tlcore import export  # noqa: E402

RUNS = [
    ("VGG16", 128, "all", dict(epochs=1, batch_size=16, learning_rate=1e-4, cache_features=False)),
    ("MobileNetV2", 96, "all", dict(epochs=2, batch_size=16, learning_rate=1e-3, cache_features=False)),
]




def runner(fmt: str, folder: Path, model_backbone: str):
    """A function of one raw-pixel batch (1, h, w, 3) -> probabilities, loaded as a deployment would."""
    if fmt == "keras":
        model = keras.saving.load_model(folder / "model.keras", compile=False)
        forward = tlcore.compiled_forward(model)
        preprocess = tlcore.get_backbone(model_backbone).preprocess
        return lambda batch: forward(preprocess(batch.copy()))
    if fmt == "savedmodel":
        serve = tf.saved_model.load(str(folder / "saved_model" / "1")).signatures["serving_default"]
        return lambda batch: serve(images=tf.constant(batch))["probabilities"].numpy()
    signature = tf.lite.Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner()
    return lambda batch: signature(images=batch)["probabilities"]


def main(repeats: int = 20) -> None:
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    dataset = tlcore.sample_dataset(per_class=32, size=64)
    for backbone, size, trainable_from, config in RUNS:
        spec = tlcore.TransferSpec(backbone=backbone, input_shape=(size, size, 3), weights=None,
                                   trainable_from=trainable_from, hidden_units=128)
        started = time.perf_counter()
        result = tlcore.train(spec, dataset, tlcore.TrainConfig(**config))
        run_id = store.create(result.spec, result.config, dataset.summary())
        store.finish(run_id, result)
        record = store.get(run_id)
        model = store.load_model(run_id)
        params = model.count_params()
        print(f"\n{backbone} at {size}x{size}, trainable from {trainable_from or 'nothing (head only)'}: "
              f"{params:,} parameters; trained in {time.perf_counter() - started:.0f} s; "
              f"run's model.keras {record.model_path.stat().st_size / 1e6:.1f} MB")
        files = [dataset.files[i] for i in record.result.validation_indices]
        pixels = np.stack([np.asarray(tlcore.fit_image(tlcore.load_image(f), (size, size)), np.float32)
                           for f in files])
        reference = tlcore.compiled_forward(model)(tlcore.get_backbone(backbone).preprocess(pixels.copy()))
        print(f"{'format':<16} {'zip MB':>7} {'model MB':>9} {'export s':>9} {'1 image ms':>11} "
              f"{'max |diff|':>10} {'top-1 same':>10}")
        for fmt in export.EXPORT_FORMATS:
            started = time.perf_counter()
            path = export.export_run(record, fmt, model=model)
            seconds = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as tmp:
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(tmp)
                (folder,) = Path(tmp).iterdir()
                name = export.EXPORT_FORMATS[fmt].model_name
                model_bytes = export._folder_bytes(folder / name)
                run = runner(fmt, folder, backbone)
                outputs = np.concatenate([run(row[None]) for row in pixels])
                latency = median_ms(lambda: run(pixels[:1]), repeats)
            diff = float(np.abs(outputs - reference).max())
            same = float((outputs.argmax(1) == reference.argmax(1)).mean())
            print(f"{fmt:<16} {path.stat().st_size / 1e6:>7.1f} {model_bytes / 1e6:>9.1f} {seconds:>9.1f} "
                  f"{latency:>11.1f} {diff:>10.1e} {same:>9.0%}  ({len(pixels)} validation images)")
        forward, preprocess = tlcore.compiled_forward(model), tlcore.get_backbone(backbone).preprocess
        keras_ms = median_ms(lambda: forward(preprocess(pixels[:1].copy())), repeats)
        print(f"{'(the run, tlcore)':<16} {'':>7} {'':>9} {'':>9} {keras_ms:>11.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
