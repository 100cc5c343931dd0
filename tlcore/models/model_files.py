"""Loading saved models safely: only ``.keras`` files built from Keras's own parts.

A ``.keras`` file is a zip holding ``config.json``, which Keras turns into
objects. Before Keras reads it, every object the config names is checked
against an allow-list: Keras's own layers and namespaces, no ``Lambda``, no
custom or registered objects, no functions from outside Keras. Then Keras loads
it with ``safe_mode=True`` (Keras 3.15.1 or later carries the 2025-2026
safe-mode fixes). Legacy full-model ``.h5`` files are refused.

Budgets come first, in this order, each before the memory it protects is
spent: the archive (member count, declared sizes, compression ratio,
``config.json`` size), the allow-list, then the model its config describes,
built with shapes only (inputs, parameters, activations), then the declared
shapes of ``model.weights.h5``. Only then does Keras see the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras
from keras.src.saving.serialization_lib import ObjectSharingScope

from tlcore.core.errors import ModelFileError
from tlcore.core.settings import load_settings
from tlcore.models.cost import MB, check_model_cost, measure_model
from tlcore.models.scopes import shapes_only
from tlcore.models.shapes import MAX_INPUT_SIDE
from tlcore.models.weights_probe import weights_file_problem

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
CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "model.weights.h5"


def _refusal(what: str) -> ModelFileError:
    return ModelFileError(
        "A model file may only use Keras's own layers (no Lambda layers, custom objects or "
        f"functions from outside Keras). Received: {what}"
    )


def _check_object(node: dict) -> None:
    module, name = node.get("module"), node["class_name"]
    registered = node.get("registered_name")
    if not isinstance(name, str) or not isinstance(module, str | None) or not isinstance(registered, str | None):
        odd = {key: type(value).__name__ for key, value in (("class_name", name), ("module", module),
                                                          ("registered_name", registered))
               if not isinstance(value, str) and (key == "class_name" or value is not None)}
        raise ModelFileError(
            "A model file's config.json must name each object with text: class_name a string, module and "
            f"registered_name strings or absent. Received: {', '.join(f'{k} of type {t}' for k, t in odd.items())}"
        )
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


def check_model_archive(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse a ``.keras`` archive over a budget, from its declared sizes alone.

    Args:
        archive: the open archive.
        name: the file's name, for messages.

    Raises:
        ModelFileError: too many members (TL_MAX_MODEL_FILE_MEMBERS), unpacking
            to too much (TL_MAX_MODEL_FILE_MB), a member compressed too much
            (TL_MAX_COMPRESSION_RATIO), a ``config.json`` that is too large
            (TL_MAX_MODEL_CONFIG_MB) or missing members.
    """
    settings = load_settings()
    members = archive.infolist()
    if len(members) > settings.max_model_file_members:
        raise ModelFileError(
            f"A model file may hold at most {settings.max_model_file_members:,} archive members "
            f"(TL_MAX_MODEL_FILE_MEMBERS). Received: {len(members):,} in {name!r}"
        )
    total = sum(info.file_size for info in members)
    if total > settings.max_model_file_mb * MB:
        largest = max(members, key=lambda info: info.file_size)
        raise ModelFileError(
            f"A model file may unpack to at most {settings.max_model_file_mb:,} MB "
            f"(TL_MAX_MODEL_FILE_MB). Received: {name!r} declares {total / MB:,.0f} MB "
            f"({largest.file_size / MB:,.0f} MB in {largest.filename!r})"
        )
    for info in members:
        if info.file_size > settings.max_compression_ratio * max(info.compress_size, 1):
            raise ModelFileError(
                f"Model file members may be compressed at most {settings.max_compression_ratio}:1 "
                f"(TL_MAX_COMPRESSION_RATIO). Received: {info.filename!r} in {name!r} at "
                f"{info.file_size / max(info.compress_size, 1):,.0f}:1 (a zip bomb?)"
            )
    names = {info.filename for info in members}
    if not {CONFIG_MEMBER, WEIGHTS_MEMBER} <= names:
        raise ModelFileError(
            f"A model file must be a .keras archive with {CONFIG_MEMBER} and {WEIGHTS_MEMBER}. "
            f"Received: {name!r} without {sorted({CONFIG_MEMBER, WEIGHTS_MEMBER} - names)}"
        )
    config_size = archive.getinfo(CONFIG_MEMBER).file_size
    if config_size > settings.max_model_config_mb * MB:
        raise ModelFileError(
            f"A model's {CONFIG_MEMBER} may be at most {settings.max_model_config_mb:,} MB "
            f"(TL_MAX_MODEL_CONFIG_MB). Received: {config_size / MB:,.1f} MB in {name!r}"
        )


def _read_config(archive: zipfile.ZipFile, name: str) -> dict:
    """``config.json``, reading no more than it declares (checked by ``check_model_archive``)."""
    info = archive.getinfo(CONFIG_MEMBER)
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise ModelFileError(
            f"Model file members must be no larger than they declare. Received: {CONFIG_MEMBER} "
            f"in {name!r} is larger"
        )
    return json.loads(data)


def read_model_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a ``.keras`` file, after the archive's budgets, loading nothing.

    Raises:
        ModelFileError: a legacy ``.h5`` model, a file that is not a ``.keras``
            archive, or an archive over a budget (see ``check_model_archive``).
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
            check_model_archive(archive, path.name)
            return _read_config(archive, path.name)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError,
            NotImplementedError, RuntimeError):
        raise ModelFileError(
            f"A model file must be a .keras archive with a config.json. Received: {path.name!r}"
        ) from None


def _check_inputs(model: keras.Model, name: str) -> None:
    """Every input declares each size; sides (all but the last size) within ``MAX_INPUT_SIDE``."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ModelFileError(f"A model file must declare its input shape. Received: {name!r} declares none")
    for tensor in inputs:
        sizes = tuple(tensor.shape[1:])
        if None in sizes or any(side > MAX_INPUT_SIDE for side in sizes[:-1]):
            raise ModelFileError(
                f"A model file's inputs must declare every size, with sides of at most {MAX_INPUT_SIDE} "
                f"on this server. Received: an input of shape {tuple(tensor.shape)} in {name!r}"
            )


def check_model_file_budget(path: str | os.PathLike, config: dict) -> None:
    """Refuse a model file whose model or weights are over a budget, allocating nothing.

    The model is built from ``config`` (already allow-listed) with shapes only;
    then its inputs, parameters, activations and the declared dataset shapes of
    ``model.weights.h5`` are checked.

    Raises:
        ModelFileError: naming the limit (and its ``TL_*`` setting) or the
            first weights dataset that does not fit.
    """
    path = Path(path)
    with shapes_only():
        try:
            with ObjectSharingScope():
                model = keras.saving.deserialize_keras_object(
                    {**config, "compile_config": None}, safe_mode=True)
        except Exception as exc:  # Keras raises many kinds here; the user needs one clear message
            raise ModelFileError(
                f"A model file must load in Keras {keras.__version__}. Received: {path.name!r} "
                f"failed ({str(exc)[:200]})"
            ) from exc
        _check_inputs(model, path.name)
        check_model_cost(
            measure_model(model), described=f"{path.name!r}, {len(model.layers)} layers",
            params_advice="load a smaller model", activation_advice="load a model with a smaller input",
            error=ModelFileError,
        )
        try:
            with zipfile.ZipFile(path) as archive, archive.open(WEIGHTS_MEMBER) as member:
                problem = weights_file_problem(member, model)
        except OSError as exc:  # h5py: not an HDF5 file
            problem = f"it is not an HDF5 file ({exc})"
    if problem:
        raise ModelFileError(
            f"The {WEIGHTS_MEMBER} of a model file must fit the model its {CONFIG_MEMBER} describes. "
            f"Received: in {path.name!r}, {problem}"
        )


def load_model_file(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model after its budgets and the allow-list, in safe mode.

    Raises:
        ModelFileError: the file is refused (with the reason) or cannot be loaded.
    """
    config = read_model_config(path)
    check_model_config(config)
    check_model_file_budget(path, config)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many kinds here; the user needs one clear message
        raise ModelFileError(
            f"A model file must load in Keras {keras.__version__}. Received: {Path(path).name!r} "
            f"failed ({str(exc)[:200]})"
        ) from exc
    return _functional(model, Path(path).name)


def _functional(model: keras.Model, name: str) -> keras.Model:
    """A loaded ``Sequential`` as a functional model over the same layers (the rest as they are).

    A Sequential read back from a file has ``inputs`` but, never having been called, no
    ``input``; everything downstream (input size, compiled forward, Grad-CAM) reads the
    functional model's graph.
    """
    if not isinstance(model, keras.Sequential):
        return model
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ModelFileError(
            "A Sequential model file must declare its input shape (keras.Input((height, width, 3)) as its "
            f"first layer). Received: {name!r}, whose input shape is not recorded"
        )
    outputs = model.outputs
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                       name=model.name)
