"""Where a backbone's weights come from: the Keras cache, a download, a file, or none.

ImageNet weights use Keras's own cache (``$KERAS_HOME/models``, by default
``~/.keras/models``) and file names, so a file Keras downloaded is found here
and a file downloaded here is found by Keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import keras
from keras.src.legacy.saving import legacy_h5_format

from tlcore.core.errors import WeightsError
from tlcore.models.scopes import shapes_only
from tlcore.models.weights_probe import weights_file_problem
from tlcore.models.zoo import BackboneSpec, build_architecture, get_backbone

WEIGHTS_SUFFIXES = (".weights.h5", ".h5")


class NoTopWeightsError(WeightsError):
    """A weights file without the ImageNet top, where the full network is needed (Predict)."""


def _checked_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.name.endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(
            f"A weights file must end in .weights.h5 or .h5. Received: {path.name!r}"
        )
    if not path.is_file():
        raise WeightsError(f"A weights file must exist. Received: {str(path)!r} (no such file)")
    return path


def _problem(path: Path, model: keras.Model) -> str | None:
    """What in the file cannot fit ``model`` (HDF5 metadata only), or None."""
    try:
        return weights_file_problem(path, model)
    except OSError as exc:  # h5py: not an HDF5 file
        return f"it is not an HDF5 file ({str(exc)[:200]})"


def _fits(path: Path, spec: BackboneSpec, *, include_top: bool, input_shape: tuple[int, int, int]) -> bool:
    """Whether every dataset of the file fits the network (counted with shapes only)."""
    with shapes_only():
        model = build_architecture(spec, include_top=include_top, input_shape=input_shape)
        return _problem(path, model) is None


def _full_shapes(spec: BackboneSpec, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Input shapes a full-network file may have been made at: this one, then the default."""
    return list(dict.fromkeys([input_shape, spec.default_shape]))


def _no_top_message(spec: BackboneSpec, path: Path) -> str:
    return (
        "Predict needs the full network's weights (with its ImageNet top); this file has no top: "
        f"{path.name!r} holds the weights of {spec.name} without its classifier, like Keras's "
        f"{spec.weights_notop.file_name}. It works for Build, Train and Features at a "
        f"convolutional layer. For Predict, use the full network's file (like Keras's "
        f"{spec.weights_top.file_name}). Received: a weights file without the top"
    )


def weights_file_kind(
    backbone: str | BackboneSpec,
    path: str | os.PathLike,
    *,
    input_shape: tuple[int, int, int] | None = None,
) -> str:
    """Whether a weights file holds the full network ("full") or only its base ("no top").

    Read from the file's HDF5 metadata and compared with the architectures
    counted with shapes only; nothing is loaded. Both layouts are understood:
    Keras's own ImageNet files (legacy ``.h5``) and Keras 3 ``.weights.h5``.

    Args:
        backbone: a ``BACKBONES`` name.
        path: the weights file.
        input_shape: the input the network is built for (default: the backbone's).

    Raises:
        WeightsError: a file that is neither (another architecture or size),
            with the first dataset that does not fit.
    """
    spec = get_backbone(backbone)
    path = _checked_path(path)
    shape = tuple(input_shape or spec.default_shape)
    if _fits(path, spec, include_top=False, input_shape=shape):
        return "no top"
    if any(_fits(path, spec, include_top=True, input_shape=s) for s in _full_shapes(spec, shape)):
        return "full"
    with shapes_only():
        model = build_architecture(spec, include_top=False, input_shape=shape)
        problem = _problem(path, model)
    raise WeightsError(
        f"The weights in {path.name!r} must be {spec.name}'s, with or without its top. "
        f"Received: weights of another architecture or size: {problem}"
    )


def load_weights_file(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    backbone: str | BackboneSpec | None = None,
    include_top: bool = False,
) -> None:
    """Load a ``.weights.h5`` or ``.h5`` weights file into ``model``.

    Before Keras reads any data, every dataset's declared shape (HDF5 metadata)
    must be the shape of one of the model's weights, and together they may hold
    no more numbers than the model has: a small file declaring huge datasets is
    refused before anything is allocated.

    With ``backbone`` (the registry row ``model`` was built from) a no-top file
    and a full one are told apart: a network without its top takes either
    (from a full file only the base's weights are read, the top's are skipped),
    while a full network needs a full file.

    Args:
        model: the network to load into.
        path: the file; Keras 3 ``.weights.h5`` or the legacy ``.h5`` layout of
            Keras's ImageNet files.
        backbone: the registry row of ``model``, or None for any model (the
            file must then fit it exactly).
        include_top: whether ``model`` is the full network (with ``backbone``).

    Raises:
        WeightsError: when the file is missing, has another ending, holds
            weights of another architecture or input size (naming the first
            dataset that does not fit).
        NoTopWeightsError: (a WeightsError) a file without the top where the
            full network is needed ("Predict needs the full network's weights ...").
    """
    path = _checked_path(path)
    expected = (f"The weights in {path.name!r} must fit {model.name} "
                f"({model.count_params():,} parameters, input {tuple(model.input.shape)})")
    problem = _problem(path, model)
    if backbone is not None:
        spec = get_backbone(backbone)
        shape = tuple(int(d) for d in model.input.shape[1:])
        if include_top and _fits(path, spec, include_top=False, input_shape=shape):
            raise NoTopWeightsError(_no_top_message(spec, path))
        if not include_top and problem is not None and any(
            _fits(path, spec, include_top=True, input_shape=s) for s in _full_shapes(spec, shape)
        ):
            _load_base_from_full(model, path, expected)
            return
    if problem:
        raise WeightsError(f"{expected}. Received: weights of another architecture or size: {problem}")
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError, KeyError or OSError here
        raise WeightsError(
            f"{expected}. Received: weights of another architecture or size ({str(exc)[:200]})"
        ) from exc


def _load_base_from_full(model: keras.Model, path: Path, expected: str) -> None:
    """Load the base's weights from a full network's file, skipping the top's.

    The base's layers are the full network's first layers, in the same order.
    Keras 3 ``.weights.h5`` files key layers by class and order, so Keras loads
    the base and leaves the top's groups unread. Legacy ``.h5`` files (Keras's
    ImageNet files) are read in layer order, as Keras reads them, stopping
    after the base's last layer with weights.
    """
    try:
        if path.name.endswith(".weights.h5"):
            model.load_weights(path)
        else:
            _load_legacy_prefix(model, path)
    except Exception as exc:  # Keras and h5py raise ValueError, KeyError or OSError here
        raise WeightsError(
            f"{expected}. Received: a full network's file whose base does not fit ({str(exc)[:200]})"
        ) from exc


def _load_legacy_prefix(model: keras.Model, path: Path) -> None:
    with h5py.File(path, "r") as handle:
        group = handle
        if "layer_names" not in handle.attrs and "model_weights" in handle:
            group = handle["model_weights"]
        names = [
            name for name in legacy_h5_format.load_attributes_from_hdf5_group(group, "layer_names")
            if legacy_h5_format.load_attributes_from_hdf5_group(group[name], "weight_names")
        ]
        layers = [layer for layer in model.layers if legacy_h5_format._legacy_weights(layer)]
        if len(names) < len(layers):
            raise ValueError(f"the file has {len(names)} layers with weights, the base {len(layers)}")
        for layer, name in zip(layers, names):
            symbolic = legacy_h5_format._legacy_weights(layer)
            values = legacy_h5_format.load_subset_weights_from_hdf5_group(group[name])
            if len(values) != len(symbolic):
                raise ValueError(
                    f"layer {layer.name!r} has {len(symbolic)} weights, the file's {name!r} {len(values)}"
                )
            legacy_h5_format._set_weights(layer, symbolic, values, name=f"layer {layer.name!r}")
