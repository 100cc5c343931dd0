"""From a TransferSpec to a Keras model: a pretrained base, a new input, a new head.

``build_transfer_model`` runs in the order of Keras's own constructors:
check every argument (before Keras can fail), work out the shapes, build,
load weights, then freeze.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import keras
import pandas as pd

from tlcore.core.errors import ConfigError, ShapeError
from tlcore.core.settings import load_settings
from tlcore.core.values import finite_number, whole_number
from tlcore.models.backbone import layer_names, load_backbone
from tlcore.models.cost import MB, BaseCost, ModelCost, check_model_cost, measure_base, measure_headed
from tlcore.models.imagenet_files import Progress
from tlcore.models.model_files import load_model_file
from tlcore.models.scopes import shapes_only
from tlcore.models.shapes import MAX_INPUT_SIDE, ShapeCheck, check_input_shape, smallest_input
from tlcore.models.spec import (
    ALL_LAYERS,
    CONV_BLOCKS,
    CONV_FILTERS,
    CONV_KERNELS,
    CONV_POOLS,
    POOLINGS,
    TransferSpec,
    head_feature_map,
)
from tlcore.models.summary import ParameterCounts, layer_table
from tlcore.models.zoo import BackboneSpec, build_architecture, get_backbone


def _conv_head_text(spec: TransferSpec) -> str:
    blocks = "1 convolutional block" if spec.conv_blocks == 1 else f"{spec.conv_blocks} convolutional blocks"
    each = " each" if spec.conv_blocks > 1 else ""
    pooling = f" with a {spec.conv_pool}x{spec.conv_pool} max pooling{each}" if spec.conv_pool > 1 else ""
    return blocks + pooling


def check_transfer_spec(spec: TransferSpec) -> ShapeCheck:
    """Validate every choice of ``spec`` before anything is built.

    The last check is the budget: the model is counted without allocating it
    and refused over ``TL_MAX_MODEL_PARAMS`` or ``TL_MAX_ACTIVATION_MB``.

    Returns:
        The input-shape check, with the feature map leaving the base.

    Raises:
        ShapeError: an input, new convolutional blocks or a pooling window the
            base's feature map cannot take, with the smallest input that works.
        ConfigError: a pooling, convolutional block, head size or dropout
            outside what is accepted.
        BudgetError: a model over a budget of this server.
    """
    base = get_backbone(spec.backbone)
    check = check_input_shape(base, spec.input_shape)
    if spec.pooling not in POOLINGS:
        raise ConfigError(f"Pooling must be one of {POOLINGS}. Received: pooling={spec.pooling!r}")
    _check_conv_choices(spec)
    _check_head_types(spec)
    check_layer_choice("trainable_from", spec.trainable_from, base.name)
    height, width, channels = check.feature_map
    leaves = f"{base.name} at {spec.input_shape[0]}x{spec.input_shape[1]} leaves {height}x{width}x{channels}"
    shrink = spec.conv_pool ** spec.conv_blocks
    if min(height, width) < shrink:
        raise ShapeError(
            f"The feature map leaving the base must be at least {shrink}x{shrink} for "
            f"{_conv_head_text(spec)}, which {'divide' if spec.conv_blocks > 1 else 'divides'} it by {shrink}: "
            f"{leaves}. {_smallest_text(base, shrink)} Received: "
            f"input_shape={spec.input_shape}, conv_blocks={spec.conv_blocks}, conv_pool={spec.conv_pool}"
        )
    if spec.pool_size is not None:
        head_height, head_width, head_channels = head_feature_map(spec, check.feature_map)
        if spec.pool_size < 1 or spec.pool_size > min(head_height, head_width):
            if spec.conv_blocks:
                raise ShapeError(
                    f"An average pooling of {spec.pool_size}x{spec.pool_size} must fit the map it "
                    f"receives: {leaves}, and {_conv_head_text(spec)} make it "
                    f"{head_height}x{head_width}x{head_channels}. "
                    f"{_smallest_text(base, max(spec.pool_size, 1) * shrink)} Received: "
                    f"input_shape={spec.input_shape}, pool_size={spec.pool_size}, "
                    f"conv_blocks={spec.conv_blocks}, conv_pool={spec.conv_pool}"
                )
            smallest = smallest_input(base, max(spec.pool_size, 1))
            raise ShapeError(
                f"An average pooling of {spec.pool_size}x{spec.pool_size} must fit the feature "
                f"map leaving the base: {leaves}. The smallest input that works is "
                f"{smallest}x{smallest}. Received: input_shape={spec.input_shape}, "
                f"pool_size={spec.pool_size}"
            )
    if spec.num_classes < 2:
        raise ConfigError(f"A classifier needs at least 2 classes. Received: num_classes={spec.num_classes}")
    if spec.hidden_units < 0:
        raise ConfigError(f"Hidden units must be 0 or more. Received: hidden_units={spec.hidden_units}")
    if not 0.0 <= spec.dropout < 1.0:
        raise ConfigError(f"Dropout must be from 0 up to (not including) 1. Received: dropout={spec.dropout}")
    check_spec_budget(spec)
    return check


def _smallest_text(base: BackboneSpec, min_map: int) -> str:
    """The sentence giving the smallest input that leaves a map of ``min_map`` a side, or why none does."""
    try:
        smallest = smallest_input(base, min_map)
    except ShapeError:
        return (f"No input up to {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} leaves a {min_map}x{min_map} map: use fewer "
                "blocks or smaller poolings.")
    return f"The smallest input that works is {smallest}x{smallest}."


def _check_head_types(spec: TransferSpec) -> None:
    """The head's numbers as numbers (a spec from a JSON file or a bundle may hold text or fractions): Keras
    and the checks after this would fail on them with their own words."""
    rules = [
        (whole_number(spec.num_classes), "The number of classes must be a whole number", f"num_classes={spec.num_classes!r}"),
        (whole_number(spec.hidden_units), "Hidden units must be a whole number", f"hidden_units={spec.hidden_units!r}"),
        (spec.pool_size is None or whole_number(spec.pool_size), "An average pooling window must be None or a whole "
         "number", f"pool_size={spec.pool_size!r}"),
        (finite_number(spec.dropout), "Dropout must be a number", f"dropout={spec.dropout!r}"),
    ]
    for ok, rule, received in rules:
        if not ok:
            raise ConfigError(f"{rule}. Received: {received}")


def check_layer_choice(field: str, value: object, backbone: str) -> None:
    """Refuse a layer to train from (``trainable_from``, ``fine_tune_from``) that is not None, ``"all"`` or a
    layer of ``backbone``'s base, before anything is built (as ``set_trainable_from`` takes it: a layer without
    weights, such as a block's end that a transfer curve names, trains from the next layer with weights)."""
    if value is None or value == ALL_LAYERS:
        return
    if value not in _base_layer_names(backbone):
        choices = _layers_with_weights(backbone)
        raise ConfigError(f"{field} must be None, {ALL_LAYERS!r} or a layer of {backbone}'s base (e.g. "
                          f"{choices[-min(3, len(choices))]!r}). Received: {field}={value!r}")


@functools.lru_cache(maxsize=32)
def _base_layer_names(backbone: str) -> frozenset[str]:
    return frozenset(layer_names(backbone, include_top=False))


def _check_conv_choices(spec: TransferSpec) -> None:
    rules = [
        ("conv_blocks", CONV_BLOCKS, "New convolutional blocks must be from {} to {}"),
        ("conv_filters", CONV_FILTERS, "Filters of a new convolution must be from {} to {}"),
        ("conv_kernel", CONV_KERNELS, "Kernel size of a new convolution must be from {} to {}"),
        ("conv_pool", CONV_POOLS, "The max pooling closing a new block must be from {} (none) to {}"),
    ]
    for field, (low, high), rule in rules:
        value = getattr(spec, field)
        if not whole_number(value) or not low <= value <= high:
            raise ConfigError(f"{rule.format(low, high)}. Received: {field}={value!r}")


def set_trainable_from(
    base: keras.Model, trainable_from: str | None, *, freeze_batchnorm: bool = True
) -> None:
    """Freeze ``base`` up to (not including) the named layer; train the rest.

    With ``freeze_batchnorm`` (the default, for pretrained bases) BatchNormalization
    layers stay frozen: Keras runs a frozen BN layer in inference mode, which
    keeps its pretrained statistics even though Keras 3 passes an outer
    ``training=True`` through the base's ``training=False`` call. A base trained
    from scratch (no weights) needs its BN layers to learn, so it passes False.

    Raises:
        ConfigError: a layer name the base does not have.
    """
    names = [layer.name for layer in base.layers]
    if trainable_from is None:
        base.trainable = False
        return
    if trainable_from != ALL_LAYERS and trainable_from not in names:
        raise ConfigError(
            f"trainable_from must be None, {ALL_LAYERS!r} or a layer of {base.name} "
            f"(e.g. {names[-4]!r}). Received: trainable_from={trainable_from!r}"
        )
    base.trainable = True
    first = 0 if trainable_from == ALL_LAYERS else names.index(trainable_from)
    for index, layer in enumerate(base.layers):
        frozen = index < first or (freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization))
        layer.trainable = not frozen


def trainable_from_choices(backbone: str) -> list[str]:
    """Layer names where training can sensibly start: each layer of the base with weights.

    The names are stable: every base ``tlcore`` builds names Keras's unnamed
    layers as a fresh process does ("conv2d_85" is the same layer of
    InceptionV3 in every build and process; see ``zoo.keras_names``), so a
    choice stays valid in the next build, in a training worker and in a URL.
    Counted with shapes only: nothing is allocated (once per backbone and process).
    """
    return list(_layers_with_weights(backbone))


@functools.lru_cache(maxsize=32)
def _layers_with_weights(backbone: str) -> tuple[str, ...]:
    with shapes_only():
        base = build_architecture(backbone, include_top=False)
        return tuple(layer.name for layer in base.layers if layer.weights)


def attach_head(base: keras.Model, spec: TransferSpec) -> keras.Model:
    """Put ``spec``'s input, new convolutional blocks, pooling and classifier head around ``base``.

    Head layers are named: "image" (input), "head_conv_1", "head_conv_pool_1", ...
    (new blocks), "head_avg_window" (``pool_size``), "head_pool", "head_dropout_1",
    "head_hidden", "head_dropout", "head_output".

    The base is called with ``training=False`` so BatchNormalization stays in
    inference mode, even when its layers are unfrozen for fine-tuning.
    """
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return keras.Model(inputs, head_on(base(inputs, training=False), spec), name=f"{base.name}_transfer")


def head_on(x, spec: TransferSpec):
    """Every layer ``attach_head`` puts after the base, called on the base's output ``x``: new convolutional
    blocks, pooling and the classifier head."""
    for block in range(1, spec.conv_blocks + 1):
        x = keras.layers.Conv2D(spec.conv_filters, spec.conv_kernel, padding="same", activation="relu",
                                name=f"head_conv_{block}")(x)
        if spec.conv_pool > 1:
            x = keras.layers.MaxPooling2D(spec.conv_pool, name=f"head_conv_pool_{block}")(x)
    if spec.pool_size:
        x = keras.layers.AveragePooling2D(spec.pool_size, name="head_avg_window")(x)
    x = {
        "avg": lambda: keras.layers.GlobalAveragePooling2D(name="head_pool"),
        "max": lambda: keras.layers.GlobalMaxPooling2D(name="head_pool"),
        "flatten": lambda: keras.layers.Flatten(name="head_pool"),
    }[spec.pooling]()(x)
    return classifier_head(x, spec)


def classifier_head(x, spec: TransferSpec):
    """The head's layers after its pooling, on the pooled tensor ``x``: dropout, hidden layer, classifier.

    The only layers of a frozen-base model with weights or random draws: a head sweep builds
    these alone on pooled features (``attach_head`` builds them after the base).
    """
    if spec.hidden_units:
        x = keras.layers.Dropout(spec.dropout, name="head_dropout_1")(x)
        x = keras.layers.Dense(spec.hidden_units, activation="relu", name="head_hidden")(x)
    x = keras.layers.Dropout(spec.dropout, name="head_dropout")(x)
    return keras.layers.Dense(spec.num_classes, activation="softmax", name="head_output")(x)


def base_and_head(model: keras.Model) -> tuple[keras.Model, list[keras.Layer]]:
    """The nested base of a transfer model and the head layers after it."""
    index = next(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.Model))
    return model.layers[index], model.layers[index + 1:]


def load_saved_base(path: str, spec: TransferSpec) -> keras.Model:
    """The trained base of a saved transfer model, for a new head (develop-a-model).

    Raises:
        ModelFileError: the file is refused or cannot be loaded.
        ShapeError: its input shape is not ``spec.input_shape``.
    """
    base, _ = base_and_head(load_model_file(path))
    saved_shape = tuple(int(d) for d in base.input.shape[1:])
    if saved_shape != tuple(spec.input_shape):
        raise ShapeError(
            f"A reused base keeps the input size it was trained at: {saved_shape[0]}x{saved_shape[1]}. "
            f"Received: input_shape={spec.input_shape}"
        )
    return base


def build_transfer_model(spec: TransferSpec, *, progress: Progress | None = None) -> keras.Model:
    """Build a fresh transfer model: a pretrained base without its top, a new head.

    Args:
        spec: the choices, as plain values.
        progress: called with (bytes done, bytes in all) if weights are downloaded.

    Raises:
        ShapeError, ConfigError: a choice that cannot work, explained.
        BudgetError: a model over a budget of this server (checked before building).
        WeightsError: weights that are not available or do not fit.
    """
    check_transfer_spec(spec)
    return _assemble(spec, progress)


def _assemble(spec: TransferSpec, progress: Progress | None = None) -> keras.Model:
    """Load the base, freeze it as asked and attach the head (``spec`` already checked)."""
    return attach_head(frozen_base(spec, progress), spec)


def frozen_base(spec: TransferSpec, progress: Progress | None = None) -> keras.Model:
    """The base ``_assemble`` attaches the head to: loaded, and frozen as asked (``spec`` already checked)."""
    if spec.base_model:
        base = load_saved_base(spec.base_model, spec)
    else:
        base = load_backbone(
            spec.backbone, weights=spec.weights, include_top=False,
            input_shape=spec.input_shape, progress=progress,
        )
    set_trainable_from(base, spec.trainable_from, freeze_batchnorm=spec.pretrained)
    return base


def transfer_architecture(spec: TransferSpec) -> keras.Model:
    """The model ``spec`` builds, without weights: the registry base, frozen as asked, and the head.

    A develop-a-model base has the registry's architecture at the same input
    size, so no file is read. Inside ``shapes_only()`` nothing is
    allocated; ``spec`` must already be checked for shapes and choices.
    """
    return attach_head(_architecture_base(*_base_key(spec)), spec)


def _base_key(spec: TransferSpec) -> tuple[str, bool, tuple[int, int, int], str | None, bool]:
    """What of ``spec`` shapes its base: backbone, ImageNet or not, input shape, trainable_from, pretrained."""
    return spec.backbone, spec.weights == "imagenet", tuple(spec.input_shape), spec.trainable_from, spec.pretrained


def _architecture_base(backbone: str, imagenet: bool, input_shape: tuple[int, int, int], trainable_from: str | None,
                       pretrained: bool) -> keras.Model:
    """The registry base without weights, frozen as asked (``transfer_architecture``'s; call inside ``shapes_only``)."""
    base = build_architecture(backbone, imagenet=imagenet, include_top=False, input_shape=input_shape)
    set_trainable_from(base, trainable_from, freeze_batchnorm=pretrained)
    return base


@dataclasses.dataclass(frozen=True)
class TransferPlan:
    """What a TransferSpec builds, known before any weights are loaded.

    Attributes:
        spec: the choices.
        check: the input-shape check, with the feature map leaving the base.
        layers: ``layer_table`` of the model, base layers expanded.
        counts: total, trainable and frozen parameters.
        head_map: (height, width, channels) the new convolutional blocks leave,
            which the pooling turns into the head's input (the base's feature
            map when there are no blocks).
    """

    spec: TransferSpec
    check: ShapeCheck
    layers: pd.DataFrame
    counts: ParameterCounts
    head_map: tuple[int, int, int] | None = None


def plan_transfer_model(spec: TransferSpec) -> TransferPlan:
    """Check ``spec`` and describe the model it builds (architecture only, nothing allocated).

    Raises:
        ShapeError, ConfigError: a choice that cannot work, explained.
        BudgetError: a model over a budget of this server.
    """
    check = check_transfer_spec(spec)
    base, cost = _measured_base(spec), model_cost(spec)
    with shapes_only():  # the table transfer_architecture's model has, from the base's and the head's alone
        image = keras.layers.InputLayer(shape=tuple(spec.input_shape), name="image")
        head = _head_model(spec, base.cost.output_shape).layers[1:]  # after its input: the base's output
        layers = pd.concat([layer_table([image]), base.layers, layer_table(head)], ignore_index=True)
    counts = ParameterCounts(cost.params, cost.trainable_params, cost.params - cost.trainable_params)
    return TransferPlan(spec, check, layers, counts, head_feature_map(spec, check.feature_map))


# What a spec costs, counted before anything is allocated

def model_cost(spec: TransferSpec) -> ModelCost:
    """The cost of the model ``spec`` builds, counted without allocating it.

    The spec's architecture (registry base without weights, its frozen layers
    and head) is built inside ``shapes_only``; a develop-a-model base has the
    same architecture as the registry's. Call ``check_transfer_spec`` first:
    this does not validate ``spec``.

    Args:
        spec: a checked spec.

    Returns:
        Its parameters and activation bytes (remembered for the last 64 specs).
    """
    return _spec_cost(dataclasses.replace(spec, input_shape=tuple(spec.input_shape)))


@functools.lru_cache(maxsize=64)
def _spec_cost(spec: TransferSpec) -> ModelCost:
    base = _measured_base(spec).cost
    with shapes_only():
        return measure_headed(spec.input_shape, base, _head_model(spec, base.output_shape))


def _head_model(spec: TransferSpec, base_output: tuple[int, ...]) -> keras.Model:
    """The layers ``attach_head`` puts after the base, alone: a model from an input of the base's output shape."""
    features = keras.Input(shape=base_output, name="base_output")
    return keras.Model(features, head_on(features, spec), name="head")


@dataclasses.dataclass(frozen=True)
class _MeasuredBase:
    """``transfer_architecture``'s base for a spec, measured once for every head put on it: its cost and its rows
    of the whole model's layer table."""

    cost: BaseCost
    layers: pd.DataFrame


def _measured_base(spec: TransferSpec) -> _MeasuredBase:
    return _base_measure(_base_key(spec))


@functools.lru_cache(maxsize=16)
def _base_measure(key: tuple[str, bool, tuple[int, int, int], str | None, bool]) -> _MeasuredBase:
    with shapes_only():
        base = _architecture_base(*key)
        return _MeasuredBase(measure_base(base), layer_table(base, expand_nested=True, trainable=base.trainable))


def check_spec_budget(spec: TransferSpec) -> ModelCost:
    """Refuse a spec whose model is over a budget, before anything is allocated.

    Returns:
        The spec's cost.

    Raises:
        BudgetError: too many parameters (TL_MAX_MODEL_PARAMS) or activations
            (TL_MAX_ACTIVATION_MB), with what to change.
    """
    cost = model_cost(spec)
    height, width, _ = spec.input_shape
    # activations grow with the area: the side that fits, rounded down to a multiple of 32
    scale = math.sqrt(load_settings().max_activation_mb * MB / max(cost.activation_bytes, 1))
    fits = max(32, int(min(height, width) * scale) // 32 * 32)
    check_model_cost(
        cost,
        described=spec.describe(),
        params_advice=("use global average pooling, a smaller input or fewer hidden units"
                       if spec.pooling == "flatten" else
                       "use fewer or smaller new convolutions, fewer hidden units or a smaller backbone"
                       if spec.conv_blocks else "use fewer hidden units or a smaller backbone"),
        activation_advice=f"use a smaller input (about {fits}x{fits} fits)",
    )
    return cost
