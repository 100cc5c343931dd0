"""What a built model costs in memory: parameters and activation bytes, and the budgets on them.

``measure_model`` reads a model built for real or inside ``shapes_only`` (nothing is
allocated then); ``check_model_cost`` refuses one over ``TL_MAX_MODEL_PARAMS`` or
``TL_MAX_ACTIVATION_MB``. What a ``TransferSpec`` costs is ``tlcore.models.build``'s.

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
from keras.src.ops.function import make_node_key

from tlcore.core.errors import BudgetError, TLError
from tlcore.core.settings import load_settings

FLOAT_BYTES = 4
"""Bytes of one float32 weight or activation."""
MB = 2**20
GB = 2**30

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
    """

    params: int
    trainable_params: int
    activation_bytes: int
    trainable_activation_bytes: int


def _size(tensors: Iterable[keras.KerasTensor]) -> int:
    return sum(math.prod(d or 1 for d in t.shape[1:]) for t in tensors) * FLOAT_BYTES


def _calls(model: keras.Model, layer: keras.layers.Layer) -> list:
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


def _walk(model: keras.Model, trainable: bool, reached: bool) -> tuple[int, int, bool]:
    """(activation bytes, backprop bytes, reached a trainable layer) for one call of ``model``."""
    total = kept = 0
    for layer in model.layers:
        layer_trainable = trainable and layer.trainable
        nodes = _calls(model, layer)
        if isinstance(layer, keras.Model):
            calls = max(1, len(nodes))
            inner, inner_kept, reached = _walk(layer, layer_trainable, reached)
            total, kept = total + calls * inner, kept + calls * inner_kept
            continue
        outputs = sum(_size(node.outputs) for node in nodes)
        if not reached and layer_trainable and layer.trainable_weights:
            reached = True
            kept += sum(_size(node.input_tensors) for node in nodes)
        total += outputs
        kept += outputs if reached else 0
    return total, kept, reached


def measure_model(model: keras.Model) -> ModelCost:
    """Parameters and activation bytes of a built model (real or ``shapes_only``).

    Args:
        model: a functional or sequential Keras model; nested models are walked.

    Returns:
        The model's cost; activations count every layer call's outputs.
    """
    total, kept, _ = _walk(model, True, False)
    return ModelCost(
        params=sum(math.prod(w.shape) for w in model.weights),
        trainable_params=sum(math.prod(w.shape) for w in model.trainable_weights),
        activation_bytes=total,
        trainable_activation_bytes=kept,
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
    error: type[TLError] = BudgetError,
) -> None:
    """Refuse a model over ``TL_MAX_MODEL_PARAMS`` or ``TL_MAX_ACTIVATION_MB``.

    Args:
        cost: the model's cost (``measure_model`` inside ``shapes_only``).
        described: what the model is, for the message.
        params_advice: what to change when there are too many parameters.
        activation_advice: what to change when activations are too large.
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
