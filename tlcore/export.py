"""Exports that deploy: a trained run as .keras without optimizer state, TFLite, or a SavedModel.

Every export is a zip holding the model, ``labels.txt`` (one class a line, in
output order), ``MODEL_CARD.md`` (classes, input size, preprocessing, metrics,
training settings, dates) and ``predict.py``, a short inference example that
needs no ``tlcore``::

    transfer-lab-<run id>-<format>/
        model.keras | model.tflite | saved_model/1/   the model
        labels.txt  MODEL_CARD.md  predict.py

Formats (``EXPORT_FORMATS``):

- ``keras``: the run's model without optimizer state (a third of the size of a
  fully fine-tuned run's ``model.keras``, whose Adam moments take two copies of
  every trainable weight); it takes preprocessed pixels, as in training.
- ``tflite-float32``, ``tflite-float16`` (weights stored as float16) and
  ``tflite-int8`` (dynamic-range quantization: int8 weights, float activations,
  no calibration images needed), for ``tf.lite.Interpreter`` / LiteRT.
- ``savedmodel``: for TF Serving (``saved_model/1`` is a model base path's
  version 1) or ``tf.saved_model.load``.

TFLite and SavedModel exports take raw RGB pixels (0..255, float32, shape
``(batch, height, width, 3)``, input ``images``) and do the backbone's
preprocessing inside; they return ``probabilities``. Exports of a run are built
once and kept in the run's folder (``exports/<format>.zip``).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import keras
import numpy as np

from tlcore.access import markdown_text
from tlcore.atomic import atomic_save
from tlcore.errors import ConfigError, ModelFileError
from tlcore.model_files import load_model_file
from tlcore.runs import RunRecord
from tlcore.storage import check_room
from tlcore.zoo import get_backbone


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One way to export a run.

    Attributes:
        key: its name in ``EXPORT_FORMATS`` and in file names.
        title: what to call it on screen.
        model_name: the model's file (or folder) inside the zip.
        runtime: what loads it, in words.
        preprocessing_inside: whether the model takes raw pixels (True) or
            preprocessed ones as in training (False).
    """

    key: str
    title: str
    model_name: str
    runtime: str
    preprocessing_inside: bool


EXPORT_FORMATS: Mapping[str, ExportFormat] = MappingProxyType({row.key: row for row in (
    ExportFormat("keras", "Keras (.keras, no optimizer state)", "model.keras",
                 "Keras 3 (keras.saving.load_model)", False),
    ExportFormat("tflite-float32", "TFLite float32", "model.tflite",
                 "TensorFlow Lite / LiteRT (tf.lite.Interpreter)", True),
    ExportFormat("tflite-float16", "TFLite float16 (half-size weights)", "model.tflite",
                 "TensorFlow Lite / LiteRT (tf.lite.Interpreter)", True),
    ExportFormat("tflite-int8", "TFLite int8 (dynamic-range quantized)", "model.tflite",
                 "TensorFlow Lite / LiteRT (tf.lite.Interpreter)", True),
    ExportFormat("savedmodel", "SavedModel (TF Serving)", "saved_model/1",
                 "TF Serving, or tf.saved_model.load", True),
)})
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
"""The serving signature's input and output of TFLite and SavedModel exports."""
CARD, LABELS, EXAMPLE = "MODEL_CARD.md", "labels.txt", "predict.py"

_LOCK = threading.Lock()
"""One export at a time per process: a conversion takes a few cores' seconds and the model's size in memory."""


def check_format(fmt: str) -> ExportFormat:
    """The format named ``fmt``; ConfigError naming the accepted ones otherwise."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Export format must be one of {list(EXPORT_FORMATS)}. Received: {fmt!r}")
    return EXPORT_FORMATS[fmt]


def _keras_module(backbone: str) -> str:
    """The public ``keras.applications`` module whose ``preprocess_input`` the backbone uses."""
    preprocess = get_backbone(backbone).preprocess
    for name in sorted(dir(keras.applications)):
        module = getattr(keras.applications, name)
        if getattr(module, "preprocess_input", None) is preprocess:
            return f"keras.applications.{name}"
    raise ConfigError(f"A backbone's preprocessing must come from keras.applications. Received: {backbone!r}")


def save_without_optimizer(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model`` as ``.keras`` with its architecture and weights only (no optimizer, no compile)."""
    path = Path(path)
    clean = model
    if model.compiled or getattr(model, "optimizer", None) is not None:  # a fresh, uncompiled copy
        clean = keras.models.clone_model(model)
        clean.set_weights(model.get_weights())
    atomic_save(path, clean.save, suffix=".keras")
    return path


def _variables(model: keras.Model) -> list:
    """The TensorFlow variables behind a Keras model's weights (what a SavedModel must track)."""
    return [getattr(variable, "value", variable) for variable in model.variables]


def serving_module(model: keras.Model, backbone: str):
    """A ``tf.Module`` whose ``serve`` takes raw RGB pixels and returns the probabilities.

    The backbone's ``preprocess_input`` runs inside, so deployments feed
    0..255 pixels of the model's input size, as decoded from an image file.
    """
    import tensorflow as tf

    preprocess = get_backbone(backbone).preprocess
    height, width = (int(d) for d in model.input.shape[1:3])
    module = tf.Module()
    module.weights = _variables(model)

    @tf.function(input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32, name=INPUT_NAME)])
    def serve(images):
        return {OUTPUT_NAME: model(preprocess(tf.identity(images)), training=False)}

    module.serve = serve
    return module


def write_saved_model(model: keras.Model, backbone: str, folder: str | os.PathLike) -> Path:
    """Write a SavedModel with a ``serving_default`` signature (``images`` -> ``probabilities``)."""
    import tensorflow as tf

    folder = Path(folder)
    module = serving_module(model, backbone)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def tflite_bytes(saved_model: str | os.PathLike, quantization: str) -> bytes:
    """Convert a SavedModel to TFLite: "float32", "float16" (weights) or "int8" (dynamic range)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":  # no representative dataset: weights int8, activations quantized on the fly
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization != "float32":
        raise ConfigError(f"TFLite quantization must be float32, float16 or int8. Received: {quantization!r}")
    return converter.convert()


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What an export says about its model (from a run record; plain values).

    Attributes:
        run_id, name: the run and what it is called.
        backbone: the registry name (its preprocessing is named in the card).
        class_names: in output order.
        input_size: (height, width).
        resize_mode: "crop" or "squash".
        created: when the run started (ISO date).
        dataset: the dataset summary (name, counts).
        spec, config: the TransferSpec and TrainConfig as dicts.
        result: the stored metrics (accuracy, loss, per-class precision and recall).
    """

    run_id: str
    name: str
    backbone: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    resize_mode: str
    created: str
    dataset: dict
    spec: dict
    config: dict
    result: dict

    @classmethod
    def of(cls, record: RunRecord, name: str = "") -> ExportInfo:
        result = record.result or {}
        created = re.match(r"(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})", record.id)
        when = (f"{created[1]}-{created[2]}-{created[3]} {created[4]}:{created[5]}" if created else "")
        return cls(record.id, name or record.name or f"{record.spec.backbone} on {record.dataset.get('name', 'images')}",
                   record.spec.backbone, tuple(result.get("class_names") or record.class_names),
                   tuple(record.spec.input_shape[:2]), record.config.resize_mode, when,
                   {k: record.dataset.get(k) for k in ("name", "counts", "images")},
                   dataclasses.asdict(record.spec), dataclasses.asdict(record.config), result)


def labels_text(class_names) -> str:
    """``labels.txt``: one class name a line, in output order (line breaks inside a name become spaces)."""
    return "".join(" ".join(str(name).split()) + "\n" for name in class_names)


def model_card(info: ExportInfo, fmt: str, *, model_bytes: int, exported: str | None = None) -> str:
    """The model card (Markdown) of one export."""
    form = check_format(fmt)
    spec, config, result = info.spec, info.config, info.result
    height, width = info.input_size
    exported = exported or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    backbone = get_backbone(info.backbone)
    module = _keras_module(info.backbone)
    fit = ("centre crop to the input's aspect ratio, then bilinear resize" if info.resize_mode == "crop"
           else "bilinear resize of the whole image (squash)")
    if form.preprocessing_inside:
        pre = (f"Inside the model: give raw RGB pixels, 0..255 as float32, shape (batch, {height}, {width}, 3), "
               f"input `{INPUT_NAME}`. The model applies {info.backbone}'s preprocessing "
               f"({backbone.preprocess_mode}) itself and returns `{OUTPUT_NAME}`.")
    else:
        pre = (f"Apply `{module}.preprocess_input` ({backbone.preprocess_mode}) to RGB pixels 0..255 "
               f"of shape (batch, {height}, {width}, 3) first, as `predict.py` does.")
    counts = (info.dataset.get("counts") or {})
    lines = [
        f"# Model card: {markdown_text(info.name)}",
        "",
        f"Transfer Lab run `{info.run_id}`, trained {info.created or 'on an unknown date'}; "
        f"exported {exported} as **{form.title}** for {form.runtime}.",
        "",
        "## What it does",
        "",
        f"Classifies an image into one of {len(info.class_names)} classes, listed in `{LABELS}` in the "
        "order of the model's outputs (softmax probabilities that sum to 1):",
        "",
        *[f"{i}. {markdown_text(name)}" for i, name in enumerate(info.class_names)],
        "",
        "## Input",
        "",
        f"- Size: {height}x{width} RGB ({fit}).",
        "- Images are turned upright (EXIF orientation); transparent parts are put on white.",
        f"- Preprocessing: {pre}",
        "",
        "## Model",
        "",
        f"- Backbone: {info.backbone} ({spec.get('weights') or 'random'} weights"
        + (", the trained base of an earlier run" if spec.get("base_model") else "") + "), "
        f"{spec.get('pooling')} pooling, hidden units: {spec.get('hidden_units')}, dropout: {spec.get('dropout')}.",
        f"- Trained from layer: {spec.get('trainable_from') or 'none (base frozen, head only)'}.",
        f"- File: `{form.model_name}`, {model_bytes:,} bytes.",
        *(["- Weights stored as float16 (computed in float32); outputs within about 1e-3 of float32."]
          if fmt == "tflite-float16" else []),
        *(["- Dynamic-range quantization: weights int8, activations quantized on the fly; expect small "
           "differences in probabilities and, rarely, another top-1 class on a close call."]
          if fmt == "tflite-int8" else []),
        "",
        "## Training",
        "",
        f"- Dataset: {markdown_text(info.dataset.get('name') or 'images')}, {info.dataset.get('images') or sum(counts.values())} "
        f"images: " + ", ".join(f"{markdown_text(k)} {v}" for k, v in counts.items()) + ".",
        f"- {config.get('epochs')} epoch(s), batch size {config.get('batch_size')}, {config.get('optimizer')} at "
        f"learning rate {config.get('learning_rate')}, validation share {config.get('validation_fraction')} "
        f"(stratified, seed {config.get('seed')}), augmentation {'on' if config.get('augment') else 'off'}"
        + (f", early stopping after {config['early_stopping']} epochs" if config.get("early_stopping") else "")
        + (f"; then {config.get('fine_tune_epochs')} fine-tuning epoch(s) from {config.get('fine_tune_from')} at "
           f"{config.get('fine_tune_learning_rate')}" if config.get("fine_tune_from") else "") + ".",
        *([f"- Stopped early (Stop was pressed) after {result.get('seconds', 0):.0f} s."] if result.get("stopped") else
          [f"- Training took {result['seconds']:.0f} s."] if "seconds" in result else []),
        "",
        "## Metrics (validation images)",
        "",
    ]
    if result:
        images = len(result.get("validation_indices", []))
        lines += [f"Accuracy {result['accuracy']:.1%}, loss {result['loss']:.4f}, on {images} validation images.", "",
                  "| class | precision | recall |", "|---|---|---|"]
        lines += [f"| {markdown_text(name)} | {p:.1%} | {r:.1%} |"
                  for name, p, r in zip(result.get("class_names", []), result.get("precision", []),
                                        result.get("recall", []))]
    else:
        lines.append("None recorded (the run did not finish its evaluation).")
    lines += ["", "## Use", "", f"`python {EXAMPLE} photo.jpg` prints the top-5 classes (see its first lines "
              "for what it needs)."]
    if fmt == "savedmodel":
        lines += ["", "TF Serving (REST on port 8501):", "", "```bash",
                  'docker run -p 8501:8501 -v "$PWD/saved_model:/models/classifier" -e MODEL_NAME=classifier '
                  "tensorflow/serving",
                  "curl -d '{\"instances\": [<a " + f"{height}x{width}x3 list of pixels>]" + "}' "
                  "http://localhost:8501/v1/models/classifier:predict", "```"]
    lines += ["", "## Limits", "",
              "Trained on the images above only: it knows these classes and nothing else, and every image gets "
              "one of them. Validation on few images says little; check it on your own before relying on it.", ""]
    return "\n".join(lines)


_EXAMPLE_HEAD = '''"""Classify images with the model in this folder: {title}.

Exported from Transfer Lab run {run_id}. Usage:

    python predict.py photo.jpg [more.jpg ...]

Needs numpy, Pillow and {needs}. MODEL_CARD.md says what the model knows.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
HEIGHT, WIDTH = {height}, {width}
RESIZE = "{resize}"  # "crop": centre crop to the input's aspect ratio; "squash": stretch the whole image
LABELS = (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()


def pixels(path):
    """An image file as a (1, HEIGHT, WIDTH, 3) float32 batch of RGB values 0..255."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA", "P"):  # transparent parts on white, as in training
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    image = image.convert("RGB")
    if RESIZE == "crop":
        image = ImageOps.fit(image, (WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    else:
        image = image.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)[None]

'''

_EXAMPLE_MODEL = {
    "keras": '''
import keras  # noqa: E402
from {module} import preprocess_input  # noqa: E402

MODEL = keras.saving.load_model(HERE / "model.keras", compile=False)


def probabilities(batch):
    """The model's outputs for a batch of pixels (preprocessed here, as in training)."""
    return np.asarray(MODEL(preprocess_input(batch.copy()), training=False))
''',
    "tflite": '''
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # TensorFlow's own copy
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter

INTERPRETER = Interpreter(model_path=str(HERE / "model.tflite"))
RUNNER = INTERPRETER.get_signature_runner()


def probabilities(batch):
    """The model's outputs for a batch of raw pixels (its preprocessing is inside), one image at a time."""
    return np.concatenate([RUNNER({input}=row[None])["{output}"] for row in batch])
''',
    "savedmodel": '''
import tensorflow as tf  # noqa: E402

SERVE = tf.saved_model.load(str(HERE / "saved_model" / "1")).signatures["serving_default"]


def probabilities(batch):
    """The model's outputs for a batch of raw pixels (its preprocessing is inside)."""
    return SERVE({input}=tf.constant(batch))["{output}"].numpy()
''',
}

_EXAMPLE_TAIL = '''

def predict(paths, k=5):
    """The k most probable (label, probability) pairs for each image."""
    results = []
    for path in paths:
        scores = probabilities(pixels(path))[0]
        top = np.argsort(-scores, kind="stable")[:k]
        results.append([(LABELS[i], float(scores[i])) for i in top])
    return results


if __name__ == "__main__":
    for path, top in zip(sys.argv[1:], predict(sys.argv[1:])):
        print(path)
        for label, probability in top:
            print(f"  {{probability:7.2%}}  {{label}}")
'''


def example_script(info: ExportInfo, fmt: str) -> str:
    """``predict.py``: load the export and print the top-5 of image files, without tlcore."""
    form = check_format(fmt)
    kind = "keras" if fmt == "keras" else "savedmodel" if fmt == "savedmodel" else "tflite"
    needs = {"keras": "keras (3.x) with a backend such as TensorFlow",
             "tflite": "ai-edge-litert or tensorflow", "savedmodel": "tensorflow"}[kind]
    height, width = info.input_size
    head = _EXAMPLE_HEAD.format(title=form.title, run_id=info.run_id, needs=needs, height=height, width=width,
                                resize=info.resize_mode)
    model = _EXAMPLE_MODEL[kind].format(module=_keras_module(info.backbone), input=INPUT_NAME, output=OUTPUT_NAME)
    return head + model + _EXAMPLE_TAIL.format()


def _folder_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_export(model: keras.Model, info: ExportInfo, fmt: str, target: str | os.PathLike) -> Path:
    """Export ``model`` as a zip at ``target``: the model, labels.txt, the model card and predict.py.

    Args:
        model: the run's model (softmax outputs over ``info.class_names``).
        info: what the card and the example say about it.
        fmt: a key of ``EXPORT_FORMATS``.
        target: the zip to write (atomically: a reader never sees half of it).

    Raises:
        ConfigError: an unknown format.
        StorageError: the data folder has no room (``TL_MAX_DATA_GB``) or the disk is full.
    """
    form = check_format(fmt)
    target = Path(target)
    check_room(4 * model.count_params() + 1_000_000, what=f"a {form.title} export")
    top = f"transfer-lab-{info.run_id}-{fmt}"
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent if target.parent.is_dir() else None) as tmp:
        work = Path(tmp)
        if fmt == "keras":
            model_path = save_without_optimizer(model, work / "model.keras")
        else:
            saved = write_saved_model(model, info.backbone, work / "saved_model" / "1")
            if fmt == "savedmodel":
                model_path = saved
            else:
                model_path = work / "model.tflite"
                model_path.write_bytes(tflite_bytes(saved, fmt.split("-", 1)[1]))
                shutil.rmtree(work / "saved_model")
        texts = {LABELS: labels_text(info.class_names),
                 CARD: model_card(info, fmt, model_bytes=_folder_bytes(model_path)),
                 EXAMPLE: example_script(info, fmt)}

        def write_zip(path: Path) -> None:
            with zipfile.ZipFile(path, "w") as archive:
                files = [model_path] if model_path.is_file() else sorted(p for p in model_path.rglob("*") if p.is_file())
                for file in files:  # models are stored as they are: their weights barely compress
                    archive.write(file, f"{top}/{file.relative_to(work)}", compress_type=zipfile.ZIP_STORED)
                for name, text in texts.items():
                    archive.writestr(f"{top}/{name}", text, compress_type=zipfile.ZIP_DEFLATED)

        atomic_save(target, write_zip, suffix=".zip")
    return target


def exports_folder(record: RunRecord) -> Path:
    return record.folder / "exports"


def export_path(record: RunRecord, fmt: str) -> Path:
    """Where a run's export in ``fmt`` is kept once built (it may not exist yet)."""
    check_format(fmt)
    return exports_folder(record) / f"{fmt}.zip"


def _run_model(record: RunRecord) -> keras.Model:
    if not record.model_path.is_file():
        raise ModelFileError(f"A run must have finished to have a model to export. Received: run {record.id!r} has none")
    return load_model_file(record.model_path)


def export_run(record: RunRecord, fmt: str, *, model: keras.Model | None = None, name: str = "") -> Path:
    """The run's export in ``fmt``, built on first use and kept in the run's folder.

    Args:
        record: a finished run.
        fmt: a key of ``EXPORT_FORMATS``.
        model: the run's model if already loaded (else read from its file, in safe mode).
        name: what to call the model in its card (default: backbone and dataset).

    Returns:
        The path of the zip.

    Raises:
        ModelFileError: the run has no model.
        StorageError: no room for the export.
    """
    path = export_path(record, fmt)
    with _LOCK:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_export(model if model is not None else _run_model(record), ExportInfo.of(record, name), fmt, path)
    return path


def run_keras_file(record: RunRecord) -> Path:
    """The run's model as a bare ``.keras`` file without optimizer state (built once, then kept).

    The file Predict takes as "a .keras model file of mine"; often a third of
    ``model.keras``'s size for a run that trained its whole base.
    """
    path = exports_folder(record) / "model.keras"
    with _LOCK:
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        zipped = export_path(record, "keras")
        if zipped.is_file():  # the Keras export holds the same file: copy it out instead of loading the model
            with zipfile.ZipFile(zipped) as archive:
                member = next(n for n in archive.namelist() if n.endswith("/" + EXPORT_FORMATS["keras"].model_name))
                check_room(archive.getinfo(member).file_size, what="a .keras export")

                def copy(target: Path) -> None:
                    with archive.open(member) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)

                atomic_save(path, copy, suffix=".keras")
            return path
        model = _run_model(record)
        check_room(4 * model.count_params(), what="a .keras export")
        save_without_optimizer(model, path)
    return path


def zip_members(data: bytes | str | os.PathLike) -> list[str]:
    """The names in an export zip (bytes or path), for checks and tests."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with zipfile.ZipFile(source) as archive:
        return archive.namelist()


def softmax_agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(largest absolute difference, share of rows with the same top-1 class) of two outputs."""
    reference, other = np.asarray(reference), np.asarray(other)
    return float(np.abs(reference - other).max()), float((reference.argmax(-1) == other.argmax(-1)).mean())
