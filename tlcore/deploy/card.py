"""The documents that travel with an export: the model card, labels.txt and predict.py.

``predict.py`` is a short inference example that needs no ``tlcore``. Every user string
in these documents (class, run and dataset names) is written on one line that shows every
character (``access.printable``: backslashes, line breaks of every kind, U+2028, U+0085,
controls and bidi overrides as Python escapes), and in the card also escaped as Markdown.
``labels.txt`` holds one name a line in that form; ``predict.py`` reads the escapes back.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

from tlcore.core.access import markdown_text, printable
from tlcore.deploy.formats import INPUT_NAME, OUTPUT_NAME, check_format, keras_module
from tlcore.models.zoo import get_backbone
from tlcore.training.results import RunResult
from tlcore.training.runs import RunRecord

CARD, LABELS, EXAMPLE = "MODEL_CARD.md", "labels.txt", "predict.py"
"""The documents of every export, beside the model."""


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
        result: the run's stored result (metrics, per-class precision and recall), None if it has none.
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
    result: RunResult | None

    @classmethod
    def of(cls, record: RunRecord, name: str = "") -> ExportInfo:
        result = record.result
        created = re.match(r"(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})", record.id)
        when = (f"{created[1]}-{created[2]}-{created[3]} {created[4]}:{created[5]}" if created else "")
        return cls(record.id, name or record.name or f"{record.spec.backbone} on {record.dataset.get('name', 'images')}",
                   record.spec.backbone, tuple((result.class_names if result else ()) or record.class_names),
                   tuple(record.spec.input_shape[:2]), record.config.resize_mode, when,
                   {k: record.dataset.get(k) for k in ("name", "counts", "images")},
                   dataclasses.asdict(record.spec), dataclasses.asdict(record.config), result)


def labels_text(class_names) -> str:
    r"""``labels.txt``: one class name a line, in output order, each line ending in "\n".

    A name is written as it is unless it holds a backslash or a character that is
    not printable: those are written as Python escapes (a line break as ``\n``,
    U+2028 as ``\u2028``, a backslash as ``\\``; see ``access.printable``), so every
    name stays on its own line and reads back exactly with
    ``line.encode("ascii", "backslashreplace").decode("unicode_escape")``, as
    ``predict.py`` reads it.
    """
    return "".join(printable(name) + "\n" for name in class_names)


def _md(text: object) -> str:
    """A user string in the card: printable (escapes for line breaks and the like), then literal Markdown."""
    return markdown_text(printable(text))


def _code(text: object) -> str:
    """A run id as inline code, or as literal Markdown if it could end the code span."""
    shown = printable(text)
    return f"`{shown}`" if shown and "`" not in shown else markdown_text(shown)


def _weights_words(weights: object) -> str:
    """What the base started from, without the server's path of a weights file."""
    if weights == "imagenet":
        return "imagenet weights"
    if not weights:
        return "random weights"
    name = str(weights).replace("\\", "/").rsplit("/", 1)[-1]  # the file's name, not the folder it was in
    return f"weights from the file {_md(name)}"


def _head_lines(spec: dict, classes: int) -> list[str]:
    """The new head after the base, layer by layer in words: added convolutional blocks, an average
    pooling window, and the output layer (one unit a class)."""
    lines = []
    blocks = int(spec.get("conv_blocks") or 0)
    if blocks:
        kernel, pool = spec.get("conv_kernel"), spec.get("conv_pool")
        lines.append(f"- Added convolutional block{'s' if blocks > 1 else ''} in the head, after the base: {blocks}, "
                     f"each a Conv2D of {_md(spec.get('conv_filters'))} {_md(kernel)}x{_md(kernel)} filters "
                     f"(padding \"same\", ReLU)"
                     + (f" and a {_md(pool)}x{_md(pool)} max pooling." if pool and int(pool) > 1 else "."))
    if spec.get("pool_size"):
        lines.append(f"- Average pooling window before the dense layers: {_md(spec.get('pool_size'))}.")
    lines.append(f"- Output: a softmax layer of {classes} units, one for each class.")
    return lines


def model_card(info: ExportInfo, fmt: str, *, model_bytes: int, exported: str | None = None) -> str:
    """The model card (Markdown) of one export."""
    form = check_format(fmt)
    spec, config, result = info.spec, info.config, info.result
    height, width = info.input_size
    exported = exported or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    backbone = get_backbone(info.backbone)
    module = keras_module(info.backbone)
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
        f"# Model card: {_md(info.name)}",
        "",
        f"Transfer Lab run {_code(info.run_id)}, trained {info.created or 'on an unknown date'}; "
        f"exported {exported} as **{form.title}** for {form.runtime}.",
        "",
        "## What it does",
        "",
        f"Classifies an image into one of {len(info.class_names)} classes, listed in `{LABELS}` in the "
        "order of the model's outputs (softmax probabilities that sum to 1):",
        "",
        *[f"{i}. {_md(name)}" for i, name in enumerate(info.class_names)],
        *(["", f"Names with a backslash, a line break or another unprintable character are written with Python "
               f"escapes here and in `{LABELS}` (a line break as `\\n`, a backslash as `\\\\`); `{EXAMPLE}` "
               "reads them back."]
          if any(printable(name) != str(name) for name in info.class_names) else []),
        "",
        "## Input",
        "",
        f"- Size: {height}x{width} RGB ({fit}).",
        "- Images are turned upright (EXIF orientation); transparent parts are put on white.",
        f"- Preprocessing: {pre}",
        "",
        "## Model",
        "",
        f"- Backbone: {info.backbone} ({_weights_words(spec.get('weights'))}"
        + (", the trained base of an earlier run" if spec.get("base_model") else "") + "), "
        f"{_md(spec.get('pooling'))} pooling, hidden units: {_md(spec.get('hidden_units'))}, "
        f"dropout: {_md(spec.get('dropout'))}.",
        *_head_lines(spec, len(info.class_names)),
        f"- Trained from layer: {_md(spec.get('trainable_from') or 'none (base frozen, head only)')}.",
        f"- File: `{form.model_name}`, {model_bytes:,} bytes.",
        *(["- Weights stored as float16 (computed in float32); outputs within about 1e-3 of float32."]
          if fmt == "tflite-float16" else []),
        *(["- Dynamic-range quantization: weights int8, activations quantized on the fly; expect small "
           "differences in probabilities and, rarely, another top-1 class on a close call."]
          if fmt == "tflite-int8" else []),
        "",
        "## Training",
        "",
        f"- Dataset: {_md(info.dataset.get('name') or 'images')}, "
        f"{_md(info.dataset.get('images') or sum(counts.values()))} "
        f"images: " + ", ".join(f"{_md(k)} {_md(v)}" for k, v in counts.items()) + ".",
        f"- {config.get('epochs')} epoch(s), batch size {config.get('batch_size')}, {config.get('optimizer')} at "
        f"learning rate {config.get('learning_rate')}, validation share {config.get('validation_fraction')} "
        f"(stratified, seed {config.get('seed')}), augmentation {'on' if config.get('augment') else 'off'}"
        + (f", early stopping after {config['early_stopping']} epochs" if config.get("early_stopping") else "")
        + (f"; then {config.get('fine_tune_epochs')} fine-tuning epoch(s) from {_md(config.get('fine_tune_from'))} at "
           f"{config.get('fine_tune_learning_rate')}" if config.get("fine_tune_from") else "") + ".",
        *([f"- Stopped early (Stop was pressed) after {result.seconds or 0:.0f} s."] if result and result.stopped else
          [f"- Training took {result.seconds:.0f} s."] if result and result.seconds is not None else []),
        "",
        "## Metrics (validation images)",
        "",
    ]
    if result:
        images = len(result.validation_indices)
        lines += [f"Accuracy {result.accuracy:.1%}, loss {result.loss:.4f}, on {images} validation images.", "",
                  "| class | precision | recall |", "|---|---|---|"]
        lines += [f"| {_md(name)} | {p:.1%} | {r:.1%} |"
                  for name, p, r in zip(result.class_names, result.precision, result.recall)]
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
RESIZE = {resize}  # "crop": centre crop to the input's aspect ratio; "squash": stretch the whole image
LABELS = [line.encode("ascii", "backslashreplace").decode("unicode_escape")  # "\\n", "\\u2028", "\\\\" read back
          for line in (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()]


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
    head = _EXAMPLE_HEAD.format(title=form.title, run_id=printable(info.run_id).replace('"', '\\"'), needs=needs,
                                height=int(height), width=int(width), resize=printable(info.resize_mode, quote='"'))
    model = _EXAMPLE_MODEL[kind].format(module=keras_module(info.backbone), input=INPUT_NAME, output=OUTPUT_NAME)
    return head + model + _EXAMPLE_TAIL.format()
