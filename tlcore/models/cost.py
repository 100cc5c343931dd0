"""What a built model costs: parameters, activation bytes and compute, and the budgets on them.

``measure_model`` reads a model built for real or inside ``shapes_only`` (nothing is
allocated then); ``check_model_cost`` refuses one over ``TL_MAX_MODEL_PARAMS``,
``TL_MAX_ACTIVATION_MB`` or ``TL_MAX_GFLOPS``. What a ``TransferSpec`` costs is
``tlcore.models.build``'s.

Compute is counted in FLOPs as the Keras applications table and the papers behind it
count them: one multiply-add is one FLOP (VGG16 at 224x224: 15.5 GFLOPs). Convolutions
and dense layers are counted from their shapes, kernel sizes and strides (through the
output shape); pooling windows from their size; every other layer as one operation per
value it reads or writes.

The activation budget is for one image; a forward pass over n images needs n times that,
so ``images_per_pass`` says how many one pass may take (``activation_bytes`` measures a
model once and remembers it): batches larger than that run in several passes.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from collections.abc import Iterable

import keras
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv
from keras.src.layers.pooling.base_pooling import BasePooling
from keras.src.ops.function import make_node_key

from tlcore.core.errors import BudgetError, TLError
from tlcore.core.settings import load_settings

FLOAT_BYTES = 4
"""Bytes of one float32 weight or activation."""
MB = 2**20
GB = 2**30
GFLOP = 10**9
COMPUTE_ADVICE = ("use a smaller input (compute grows with its area), fewer or smaller convolutions, "
                  "or a smaller backbone")
"""What to change when a model takes too many FLOPs, unless the caller knows better."""

_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> activation bytes for one image
_MEASURING = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """What a model needs in memory, known before it is allocated.

    Attributes:
        params: all weights (trainable and not), as ``model.count_params()``.
        trainable_params: weights that training updates.
        activation_bytes: float32 outputs of every layer for ONE image.
        trainable_activation_bytes: for ONE image, the outputs backprop must keep:
            those of every layer from the first trainable layer on (and its input).
        flops: multiply-adds of one forward pass over ONE image (see the module's note).
        weights: (shape, dtype name) of each weight, in ``model.weights`` order (what a file of the model's
            weights must hold, known before they exist).
    """

    params: int
    trainable_params: int
    activation_bytes: int
    trainable_activation_bytes: int
    flops: int
    weights: tuple[tuple[tuple[int, ...], str], ...] = ()


def _values(tensors: Iterable[keras.KerasTensor]) -> int:
    return sum(math.prod(d or 1 for d in t.shape[1:]) for t in tensors)


def _size(tensors: Iterable[keras.KerasTensor]) -> int:
    return _values(tensors) * FLOAT_BYTES


def _channels(layer: keras.layers.Layer, tensor: keras.KerasTensor) -> int:
    axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
    return tensor.shape[axis] or 1


def _flops(layer: keras.layers.Layer, node) -> int:
    """Multiply-adds of one call of ``layer`` for one image, from the call's shapes and the layer's sizes.

    A convolution's strides and padding are in its output shape: each output value of a
    ``Conv`` takes kernel area x input channels / groups multiply-adds, of a depthwise one
    the kernel area; a separable one is a depthwise one and a 1x1 one; a transposed one
    spreads each input value over kernel area x filters outputs; ``Dense`` takes one
    multiply-add per input feature for each output value.
    """
    inputs, outputs = node.input_tensors, node.outputs
    if not inputs:  # an InputLayer: the image is given, not computed
        return 0
    out_values, in_values = _values(outputs), _values(inputs)
    channels = _channels(layer, inputs[0])
    if isinstance(layer, BaseSeparableConv):
        middle = channels * layer.depth_multiplier  # depthwise outputs per position
        positions = out_values // max(layer.filters, 1)
        return positions * middle * (math.prod(layer.kernel_size) + layer.filters)
    if isinstance(layer, BaseDepthwiseConv):
        return out_values * math.prod(layer.kernel_size)
    if isinstance(layer, BaseConvTranspose):
        return in_values * math.prod(layer.kernel_size) * layer.filters
    if isinstance(layer, BaseConv):
        return out_values * math.prod(layer.kernel_size) * channels // max(layer.groups, 1)
    if isinstance(layer, keras.layers.Dense):
        return out_values * (inputs[0].shape[-1] or 1)
    if isinstance(layer, BasePooling):
        return out_values * math.prod(layer.pool_size)
    return max(in_values, out_values)


def own_calls(model: keras.Model, layer: keras.layers.Layer) -> list:
    """The calls (Keras nodes) of ``layer`` that ``model``'s own graph runs.

    A layer keeps a node for every call ever made, and a ``Sequential`` read back from a
    file calls each layer again whenever a later one is added (the first of n layers has
    n nodes); only the nodes of the model's graph run in its forward pass.
    """
    graph = getattr(model, "_functional", None) or model  # a Sequential's graph is a Functional inside it
    own = getattr(graph, "_nodes", None)
    if own is None:
        return list(layer._inbound_nodes)
    return [node for index, node in enumerate(layer._inbound_nodes) if make_node_key(layer, index) in own]


def _walk(model: keras.Model, trainable: bool, reached: bool) -> tuple[int, int, int, bool]:
    """(activation bytes, backprop bytes, FLOPs, reached a trainable layer) for one call of ``model``."""
    total = kept = flops = 0
    for layer in model.layers:
        layer_trainable = trainable and layer.trainable
        nodes = own_calls(model, layer)
        if isinstance(layer, keras.Model):
            calls = max(1, len(nodes))
            inner, inner_kept, inner_flops, reached = _walk(layer, layer_trainable, reached)
            total, kept, flops = total + calls * inner, kept + calls * inner_kept, flops + calls * inner_flops
            continue
        outputs = sum(_size(node.outputs) for node in nodes)
        if not reached and layer_trainable and layer.trainable_weights:
            reached = True
            kept += sum(_size(node.input_tensors) for node in nodes)
        total += outputs
        kept += outputs if reached else 0
        flops += sum(_flops(layer, node) for node in nodes)
    return total, kept, flops, reached


def measure_model(model: keras.Model) -> ModelCost:
    """Parameters and activation bytes of a built model (real or ``shapes_only``).

    Args:
        model: a functional or sequential Keras model; nested models are walked.

    Returns:
        The model's cost; activations and FLOPs count every layer call.
    """
    total, kept, flops, _ = _walk(model, True, False)
    return ModelCost(
        params=sum(math.prod(w.shape) for w in model.weights),
        trainable_params=sum(math.prod(w.shape) for w in model.trainable_weights),
        activation_bytes=total,
        trainable_activation_bytes=kept,
        flops=flops,
        weights=_weight_shapes(model),
    )


def _weight_shapes(model: keras.Model) -> tuple[tuple[tuple[int, ...], str], ...]:
    return tuple((tuple(int(d) for d in w.shape), str(w.dtype)) for w in model.weights)


@dataclasses.dataclass(frozen=True)
class BaseCost:
    """The cost of a base that a model calls once, nested, between its input and the layers after it.

    Attributes:
        cost: the base's own (``measure_model`` of the base).
        reached: whether the base has a trainable layer with weights: backprop then keeps every output after it.
        output_shape: the feature map it leaves for one image, which the layers after it read.
    """

    cost: ModelCost
    reached: bool
    output_shape: tuple[int, ...]


def measure_base(base: keras.Model) -> BaseCost:
    """What ``base`` adds to a model that calls it once, nested (``measure_headed`` adds the rest)."""
    total, kept, flops, reached = _walk(base, base.trainable, False)  # as the model's walk reaches it
    cost = ModelCost(
        params=sum(math.prod(w.shape) for w in base.weights),
        trainable_params=sum(math.prod(w.shape) for w in base.trainable_weights),
        activation_bytes=total, trainable_activation_bytes=kept, flops=flops, weights=_weight_shapes(base),
    )
    return BaseCost(cost, reached, tuple(int(d) for d in base.output.shape[1:]))


def measure_headed(input_shape: tuple[int, ...], base: BaseCost, head: keras.Model) -> ModelCost:
    """``measure_model`` of a model of ``input_shape`` that calls a base and then ``head``'s layers, counted from
    the base's measure and ``head`` alone: a model from an input of the base's output shape (whose values the
    base has counted). A new head on a base already measured builds the head only."""
    own = FLOAT_BYTES * math.prod(base.output_shape)  # the head's input: the base's last output
    total, kept, flops, _ = _walk(head, True, base.reached)
    image = FLOAT_BYTES * math.prod(input_shape)  # the model's own input layer, before the base
    return ModelCost(
        params=base.cost.params + sum(math.prod(w.shape) for w in head.weights),
        trainable_params=base.cost.trainable_params + sum(math.prod(w.shape) for w in head.trainable_weights),
        activation_bytes=image + base.cost.activation_bytes + total - own,
        trainable_activation_bytes=base.cost.trainable_activation_bytes + kept - (own if base.reached else 0),
        flops=base.cost.flops + flops,
        weights=base.cost.weights + _weight_shapes(head),
    )


def activation_bytes(model: keras.Model) -> int:
    """``measure_model(model).activation_bytes``, measured on first use and remembered as long as the model.

    A model that only predicts never changes its graph, so one measurement serves every pass.
    """
    with _MEASURING:
        found = _MEASURED.get(model)
    if found is None:
        found = measure_model(model).activation_bytes
        with _MEASURING:
            _MEASURED[model] = found
    return found


def images_per_pass(per_image: int, wanted: int) -> int:
    """How many images, up to ``wanted``, one forward pass may take within ``TL_MAX_ACTIVATION_MB``.

    The budget holds for every pass that runs, not only for one image: a pass over n
    images needs n x ``per_image`` bytes of activations, and may take n images only if
    that fits.

    Args:
        per_image: activation bytes for one image (``activation_bytes``).
        wanted: the images the caller has for this pass.

    Returns:
        ``wanted`` or fewer; 0 when not even one image fits.
    """
    if per_image <= 0:
        return wanted
    return int(min(wanted, load_settings().max_activation_mb * MB // per_image))


def check_model_cost(
    cost: ModelCost,
    *,
    described: str,
    params_advice: str,
    activation_advice: str,
    compute_advice: str = COMPUTE_ADVICE,
    error: type[TLError] = BudgetError,
) -> None:
    """Refuse a model over ``TL_MAX_MODEL_PARAMS``, ``TL_MAX_ACTIVATION_MB`` or ``TL_MAX_GFLOPS``.

    Args:
        cost: the model's cost (``measure_model`` inside ``shapes_only``).
        described: what the model is, for the message.
        params_advice: what to change when there are too many parameters.
        activation_advice: what to change when activations are too large.
        compute_advice: what to change when one image takes too many FLOPs.
        error: the error class to raise (the caller's own, e.g. ``ModelFileError``).

    Raises:
        error: naming the limit, its setting and the model's number.
    """
    settings = load_settings()
    if cost.params > settings.max_model_params:
        raise error(
            f"A model may have at most {settings.max_model_params:,} parameters on this server "
            f"(TL_MAX_MODEL_PARAMS). Received: {cost.params:,} parameters ({described}); {params_advice}"
        )
    if cost.activation_bytes > settings.max_activation_mb * MB:
        raise error(
            f"A model's activations for one image may take at most {settings.max_activation_mb:,} MB "
            f"on this server (TL_MAX_ACTIVATION_MB). Received: {cost.activation_bytes / MB:,.0f} MB "
            f"({described}); {activation_advice}"
        )
    if cost.flops > settings.max_gflops * GFLOP:
        raise error(
            f"A model may take at most {settings.max_gflops:,} GFLOPs (billions of multiply-adds) for one image "
            f"on this server (TL_MAX_GFLOPS). Received: {cost.flops / GFLOP:,.1f} GFLOPs ({described}); "
            f"{compute_advice}"
        )
