"""Loading saved models safely: only ``.keras`` files built from Keras's own parts.

A ``.keras`` file is a zip holding ``config.json``, which Keras turns into
objects. Before Keras reads it, every object the config names is checked
against an allow-list: Keras's own layers and namespaces, no ``Lambda``, no
custom or registered objects, no functions from outside Keras. Then Keras loads
it with ``safe_mode=True`` (Keras 3.15.1 or later carries the 2025-2026
safe-mode fixes). Legacy full-model ``.h5`` files are refused.

Budgets come first, in this order, each before the memory, disk or time it
protects is spent: the archive (member count, where each member's bytes lie,
declared sizes, compression ratio, only Keras's own three members, the size of
``config.json`` and ``metadata.json``), the allow-list, then the model its config
describes, built with shapes only (inputs, parameters, activations, FLOPs), then
the declared size of ``model.weights.h5`` against the model's parameters, then its
declared shapes. Only then does Keras see the file.

What Keras writes while loading is bounded by these checks: it reads
``model.weights.h5`` into memory (or unpacks it beside the file) and, for an
archive of more than three members, unpacks every member into the temporary
folder; an archive here holds at most the three, and the weights member may
declare no more than its model's parameters need.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
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
METADATA_MEMBER = "metadata.json"
MEMBERS = (CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER)
"""The members Keras writes for a model without assets (every layer in ``ALLOWED_LAYERS`` keeps none)."""
WEIGHT_FILE_BYTES_PER_PARAM = 32
"""8 bytes a number (float64 at most) for the weight and for up to three optimizer slots saved with it."""
WEIGHT_FILE_BYTES_PER_VARIABLE = 8 * 2**10
"""HDF5 structure for each variable (its groups, dataset header and those of its optimizer slots)."""
WEIGHT_FILE_BASE_BYTES = 2**20
"""HDF5 structure of the file itself (superblock, root groups, the optimizer's own variables)."""
_LOCAL_HEADER = struct.Struct("<4s22xHH")
"""A zip local file header: its signature, then (after 22 bytes) the lengths of its name and extra field."""


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


MAX_CONFIG_DEPTH = 100
"""How deep a ``config.json`` may nest (a registry network inside a run's model nests 14 deep)."""


def _children(model: dict) -> list[dict]:
    inner = model.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []


def _calls(layer: dict) -> int:
    """How many times a functional model's graph calls ``layer`` (its inbound nodes; at least once)."""
    nodes = layer.get("inbound_nodes")
    return max(1, len(nodes)) if isinstance(nodes, list) else 1


def _layer_calls(node: dict) -> tuple[int, int]:
    """(layer calls Keras makes to load ``node``, layer calls one call of it makes), from its config alone.

    A functional model calls each of its layers once for each of its graph's nodes; a ``Sequential`` is
    built again each time ``from_config`` adds a layer (Keras 3.15), so its k-th layer is called once for
    each layer added after it: quadratic (503 layers: 126,253 calls, 35 s of CPU here).
    """
    if node.get("class_name") == "InputLayer":  # made, never called
        return 0, 0
    if node.get("class_name") not in ALLOWED_MODELS:
        return 0, 1
    children = _children(node)
    sequential = node.get("class_name") == "Sequential"
    loads, runs = [], []
    for child in children:
        load, run = _layer_calls(child)
        loads.append(load)
        runs.append(run * (1 if sequential else _calls(child)))
    if not sequential:
        return sum(loads) + sum(runs), sum(runs)
    # adding the k-th layer (k >= 1, counting from 0) calls layers 0..k again (an InputLayer's call costs nothing)
    rebuilds = sum(run * (len(runs) - max(index, 1)) for index, run in enumerate(runs))
    return sum(loads) + rebuilds, sum(runs)


def check_model_config(config: object) -> None:
    """Walk a ``config.json`` and refuse anything outside the allow-list, too deep, or too costly to build.

    The walk keeps its own stack (a config nested hundreds deep is refused in words, not by Python's
    recursion limit). Then the layer calls Keras would make to build the model are counted
    (``_layer_calls``) against ``TL_MAX_MODEL_LAYERS``, before Keras builds any.

    Raises:
        ModelFileError: naming the first object that is not allowed, or the limit passed.
    """
    stack: list[tuple[object, int]] = [(config, 1)]
    sequential = False
    while stack:
        node, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise ModelFileError(
                f"A model file's {CONFIG_MEMBER} may nest at most {MAX_CONFIG_DEPTH} levels deep. "
                f"Received: one nested deeper than that"
            )
        if isinstance(node, dict):
            if "class_name" in node:
                _check_object(node)
                sequential = sequential or node["class_name"] == "Sequential"
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    limit = load_settings().max_model_layers
    calls = _layer_calls(config)[0] if isinstance(config, dict) else 0
    if calls > limit:
        advice = (" Keras builds a Sequential model again each time it adds a layer while loading it: saved as a "
                  "functional model (keras.Model(inputs, outputs)), its layers count once.") if sequential else ""
        raise ModelFileError(
            f"A model file may take at most {limit:,} layer calls to build on this server (TL_MAX_MODEL_LAYERS: "
            f"each layer once for each call in the model's graph). Received: {calls:,} in its {CONFIG_MEMBER}."
            + advice
        )


def check_model_archive(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse a ``.keras`` archive over a budget, from its declared sizes alone.

    Args:
        archive: the open archive.
        name: the file's name, for messages.

    Raises:
        ModelFileError: too many members (TL_MAX_MODEL_FILE_MEMBERS), members whose
            compressed bytes are not where or as long as declared, unpacking to too
            much (TL_MAX_MODEL_FILE_MB), a member compressed too much
            (TL_MAX_COMPRESSION_RATIO), missing members, members other than Keras's
            own three, a compressed ``model.weights.h5``, or a ``config.json`` or ``metadata.json`` that is too large
            (TL_MAX_MODEL_CONFIG_MB).
    """
    settings = load_settings()
    members = archive.infolist()
    if len(members) > settings.max_model_file_members:
        raise ModelFileError(
            f"A model file may hold at most {settings.max_model_file_members:,} archive members "
            f"(TL_MAX_MODEL_FILE_MEMBERS). Received: {len(members):,} in {name!r}"
        )
    _check_member_spans(archive, members, name)
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
    for index, info in enumerate(members):
        if info.filename not in MEMBERS or info.filename in (other.filename for other in members[:index]):
            raise ModelFileError(
                f"A model file may hold only {CONFIG_MEMBER}, {METADATA_MEMBER} and {WEIGHTS_MEMBER}, each "
                "once: the layers this server loads keep no assets, and Keras would unpack any other "
                f"member to the temporary folder. Received: {info.filename!r} in {name!r}"
            )
    for member in (CONFIG_MEMBER, METADATA_MEMBER):
        size = archive.getinfo(member).file_size if member in names else 0
        if size > settings.max_model_config_mb * MB:
            raise ModelFileError(
                f"A model's {member} may be at most {settings.max_model_config_mb:,} MB "
                f"(TL_MAX_MODEL_CONFIG_MB). Received: {size / MB:,.1f} MB in {name!r}"
            )
    weights = archive.getinfo(WEIGHTS_MEMBER)
    if weights.compress_type != zipfile.ZIP_STORED:
        raise ModelFileError(
            f"A model file's {WEIGHTS_MEMBER} must be stored uncompressed, as Keras's model.save writes it: "
            "HDF5 reads it out of order, and a compressed member is unpacked again from its start at every "
            f"step back (minutes of work for a large one). Save the model again with model.save. Received: "
            f"{name!r} holds it compressed (zip method {weights.compress_type})"
        )


def _check_member_spans(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], name: str) -> None:
    """Refuse members whose stored bytes are not where, or not as long as, the directory says.

    Each member spans its local header (30 bytes, its name and extra field, as that header
    gives them) and the compressed size the directory declares; it must end before the next
    member's header starts, and the last before the directory. So every declared compressed
    size is real and no two members share bytes (the overlapping-files zip bomb), and the
    compression ratio the archive budgets read from the directory is the true one.

    Raises:
        ModelFileError: naming the member.
    """
    ordered = sorted(members, key=lambda info: info.header_offset)
    handle = archive.fp
    for info, following in zip(ordered, [*ordered[1:], None]):
        handle.seek(info.header_offset)
        header = handle.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(header)[0] != zipfile.stringFileHeader:
            raise ModelFileError(
                "A model file's archive members must start with a local header where its directory says. "
                f"Received: {info.filename!r} in {name!r}, whose header is missing (a damaged or crafted zip)"
            )
        _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + info.compress_size
        limit = following.header_offset if following is not None else archive.start_dir
        if end > limit:
            other = repr(following.filename) if following is not None else "the archive's directory"
            raise ModelFileError(
                "A model file's archive members must each hold the compressed bytes its directory declares, "
                f"apart from the others. Received: {info.filename!r} in {name!r} declares "
                f"{info.compress_size:,} compressed bytes, running into {other} (a crafted zip?)"
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
            NotImplementedError, RuntimeError, EOFError, zlib.error):
        raise ModelFileError(
            f"A model file must be a .keras archive with a config.json. Received: {path.name!r}"
        ) from None


def _check_inputs(model: keras.Model, name: str) -> None:
    """Every input declares each size, at least 1; sides (all but the last size) within ``MAX_INPUT_SIDE``."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ModelFileError(f"A model file must declare its input shape. Received: {name!r} declares none")
    for tensor in inputs:
        sizes = tuple(tensor.shape[1:])
        if None in sizes or any(side > MAX_INPUT_SIDE for side in sizes[:-1]) or any(size < 1 for size in sizes):
            raise ModelFileError(
                f"A model file's inputs must declare every size, at least 1, with sides of at most {MAX_INPUT_SIDE} "
                f"on this server. Received: an input of shape {tuple(tensor.shape)} in {name!r}"
            )


def _check_image_classifier(model: keras.Model, name: str) -> None:
    """One colour image in, ``(height, width, 3)``, and one vector of class scores out, ``(classes,)``:
    what every page, run and export feeds a model and reads from it."""
    try:
        taken = [tuple(tensor.shape[1:]) for tensor in model.inputs]
        given = [tuple(tensor.shape[1:]) for tensor in model.outputs]
    except (AttributeError, ValueError):
        taken, given = [], []
    if len(taken) != 1 or len(taken[0]) != 3 or taken[0][-1] != 3 or len(given) != 1 or len(given[0]) != 1:
        raise ModelFileError(
            "A model file must take one colour image, (height, width, 3), and give one vector of class scores, "
            f"(classes,). Received: inputs {taken[:4]} and outputs {given[:4]} in {name!r}"
        )
    if given[0][0] is None or given[0][0] < 2:
        raise ModelFileError(
            "A model file must give one score per class, for 2 classes or more (a yes/no model with one sigmoid "
            "output: end it with Dense(2, activation=\"softmax\") and train it again). "
            f"Received: outputs of shape {given[0]} in {name!r}"
        )


def run_mismatch(model: keras.Model, input_shape: tuple[int, ...], classes: int) -> str | None:
    """What in a model is not its run's, in words, or None: a run's model takes the spec's input,
    ``(height, width, 3)``, and gives one score per class of the run's dataset (a model of other classes or
    input would be kept as the run's and mislabel or fail in Predict). Read from the graph only: an outline
    (``model_outline``) answers it as a loaded model does.
    """
    taken, given = tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:])
    if taken == tuple(input_shape) and given == (classes,):
        return None
    return f"input {taken} and outputs {given}"


def check_model_file_budget(path: str | os.PathLike, config: dict) -> keras.Model:
    """Refuse a model file whose model or weights are over a budget, allocating nothing.

    The model is built from ``config`` (already allow-listed) with shapes only;
    then its inputs, parameters, activations and FLOPs, the declared size of
    ``model.weights.h5`` (``weights_size_limit``) and its declared dataset shapes
    are checked.

    Returns:
        The model built with shapes only (its variables have no memory): to inspect, never to call.

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
            compute_advice="load a model with a smaller input or smaller, fewer convolutions",
            error=ModelFileError,
        )
        try:
            with zipfile.ZipFile(path) as archive:
                _check_weights_size(archive.getinfo(WEIGHTS_MEMBER).file_size, model, path.name)
                with archive.open(WEIGHTS_MEMBER) as member:
                    problem = weights_file_problem(member, model)
        except OSError as exc:  # h5py: not an HDF5 file
            problem = f"it is not an HDF5 file ({exc})"
        except (EOFError, zipfile.BadZipFile, zlib.error) as exc:  # its compressed bytes end early or are damaged
            problem = f"it cannot be unpacked ({exc or type(exc).__name__})"
    if problem:
        raise ModelFileError(
            f"The {WEIGHTS_MEMBER} of a model file must fit the model its {CONFIG_MEMBER} describes. "
            f"Received: in {path.name!r}, {problem}"
        )
    _check_image_classifier(model, path.name)
    return model


def weights_size_limit(model: keras.Model) -> int:
    """The most bytes a ``model.weights.h5`` for ``model`` may declare, its optimizer's slots included.

    A Keras weights file holds each variable's numbers (at most 8 bytes each), those of up to
    three optimizer slots a variable if it was saved compiled (Adam keeps two), and some HDF5
    structure per variable and per file. Trained models saved with Adam measure about 12
    bytes a parameter; a file declaring more than this limit holds something else.
    """
    params = sum(math.prod(v.shape) for v in model.variables)
    return (params * WEIGHT_FILE_BYTES_PER_PARAM + len(model.variables) * WEIGHT_FILE_BYTES_PER_VARIABLE
            + WEIGHT_FILE_BASE_BYTES)


def _check_weights_size(declared: int, model: keras.Model, name: str) -> None:
    """Refuse a weights member declaring more bytes than its model's parameters need, before it is read."""
    limit = weights_size_limit(model)
    if declared > limit:
        params = sum(math.prod(v.shape) for v in model.variables)
        raise ModelFileError(
            f"The {WEIGHTS_MEMBER} of a model file may declare at most {limit / MB:,.1f} MB for the "
            f"{params:,} parameters in {len(model.variables):,} variables its {CONFIG_MEMBER} describes "
            f"({WEIGHT_FILE_BYTES_PER_PARAM} bytes a parameter, for the weights and up to three optimizer "
            f"slots, plus {WEIGHT_FILE_BYTES_PER_VARIABLE // 1024} KB a variable and "
            f"{WEIGHT_FILE_BASE_BYTES // MB} MB a file). Received: {declared / MB:,.1f} MB declared in {name!r}"
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


def model_outline(path: str | os.PathLike) -> keras.Model:
    """A ``.keras`` file's model built with shapes only, after every check ``load_model_file`` makes
    before Keras reads the file: its graph, layer names and shapes, no weights (nothing allocated).

    What a server holds of an uploaded model whose passes run elsewhere (``tlcore.RemoteModel``):
    it answers the model's input size, outputs and layers; it must never be called on data.

    Raises:
        ModelFileError: the file is refused (with the reason).
    """
    config = read_model_config(path)
    check_model_config(config)
    return _functional(check_model_file_budget(path, config), Path(path).name)


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
