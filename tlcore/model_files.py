"""Loading saved models safely: only ``.keras`` files built from Keras's own parts.

A ``.keras`` file is a zip holding ``config.json``, which Keras turns into
objects. Before Keras reads it, every object the config names is checked
against an allow-list: Keras's own layers and namespaces, no ``Lambda``, no
custom or registered objects, no functions from outside Keras. Then Keras loads
it with ``safe_mode=True`` (Keras 3.15.1 or later carries the 2025-2026
safe-mode fixes). Legacy full-model ``.h5`` files are refused.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras

from tlcore.errors import ModelFileError

ALLOWED_LAYERS = frozenset({
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization",
    "Activation", "ReLU", "Softmax", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "ZeroPadding2D", "Add", "Multiply", "Concatenate", "Dropout", "Flatten",
    "Reshape", "Rescaling", "Normalization", "RandomFlip", "RandomRotation", "RandomZoom",
})
ALLOWED_MODELS = frozenset({"Functional", "Sequential", "Model"})
ALLOWED_NAMESPACES = frozenset({
    "keras.initializers", "keras.regularizers", "keras.constraints", "keras.activations",
    "keras.optimizers", "keras.optimizers.schedules", "keras.losses", "keras.metrics",
})
_INTERNAL = frozenset({"__keras_tensor__", "DTypePolicy", "FloatDTypePolicy"})


def _refusal(what: str) -> ModelFileError:
    return ModelFileError(
        "A model file may only use Keras's own layers (no Lambda layers, custom objects or "
        f"functions from outside Keras). Received: {what}"
    )


def _check_object(node: dict) -> None:
    module, name = node.get("module"), node["class_name"]
    registered = node.get("registered_name")
    if name == "__lambda__" or name == "Lambda":
        raise _refusal("a Lambda layer or lambda function")
    if registered not in (None, name):
        raise _refusal(f"the custom object {registered!r}")
    if name in _INTERNAL and module in (None, "keras"):
        return
    if module == "keras.layers" and name in ALLOWED_LAYERS:
        return
    if module in ("keras", "keras.models", "keras.src.models.functional", "keras.src.models.sequential") \
            and name in ALLOWED_MODELS:
        return
    if module in ALLOWED_NAMESPACES:
        return
    raise _refusal(f"{name!r} from {module!r}")


def check_model_config(config: object) -> None:
    """Walk a ``config.json`` and refuse anything outside the allow-list.

    Raises:
        ModelFileError: naming the first object that is not allowed.
    """
    if isinstance(config, dict):
        if "class_name" in config:
            _check_object(config)
        for value in config.values():
            check_model_config(value)
    elif isinstance(config, list):
        for value in config:
            check_model_config(value)


def read_model_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a ``.keras`` file, read without loading anything.

    Raises:
        ModelFileError: a legacy ``.h5`` model, or a file that is not a ``.keras`` archive.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic.startswith(b"\x89HDF") or path.suffix == ".h5":
        raise ModelFileError(
            "A model file must be in the .keras format (Keras 3). Received: a legacy HDF5 "
            f"(.h5) model {path.name!r}, which is not loaded: re-save it with model.save('x.keras')"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(
            f"A model file must be a .keras archive with a config.json. Received: {path.name!r}"
        ) from None


def load_model_file(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model after checking its config against the allow-list.

    Raises:
        ModelFileError: the file is refused (with the reason) or cannot be loaded.
    """
    check_model_config(read_model_config(path))
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many kinds here; the user needs one clear message
        raise ModelFileError(
            f"A model file must load in Keras {keras.__version__}. Received: {Path(path).name!r} "
            f"failed ({str(exc)[:200]})"
        ) from exc
