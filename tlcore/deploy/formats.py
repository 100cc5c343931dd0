"""The formats a trained model is exported in, and how a model becomes each one.

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
preprocessing inside; they return ``probabilities``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import keras

from tlcore.core.atomic import atomic_save
from tlcore.core.errors import ConfigError
from tlcore.models.zoo import get_backbone

INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
"""The input and output names of TFLite and SavedModel exports."""


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


def check_format(fmt: str) -> ExportFormat:
    """The format named ``fmt``; ConfigError naming the accepted ones otherwise."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"Export format must be one of {list(EXPORT_FORMATS)}. Received: {fmt!r}")
    return EXPORT_FORMATS[fmt]


def keras_module(backbone: str) -> str:
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
    height, width = (int(d) for d in model.inputs[0].shape[1:3])
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
