"""Layer tables and parameter counts."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import keras
import pandas as pd

LAYER_COLUMNS = ["name", "type", "output_shape", "params", "trainable"]


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    total: int
    trainable: int
    non_trainable: int


def parameter_counts(model: keras.Model) -> ParameterCounts:
    """Total, trainable and non-trainable parameters (as ``model.summary`` counts them)."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return ParameterCounts(trainable + non_trainable, trainable, non_trainable)


def _shape_text(layer: keras.Layer) -> str:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return "?"
    return str(tuple(shape)).replace(",)", ")")


def _rows(layers: Sequence[keras.Layer], expand_nested: bool, parent_trainable: bool = True):
    for layer in layers:
        trainable = bool(layer.trainable and parent_trainable)
        if expand_nested and isinstance(layer, keras.Model):
            yield from _rows(layer.layers, expand_nested, trainable)
            continue
        yield {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": _shape_text(layer),
            "params": int(layer.count_params()) if layer.built else 0,
            "trainable": trainable,
        }


def layer_table(model: keras.Model | Sequence[keras.Layer], *, expand_nested: bool = False,
                trainable: bool = True) -> pd.DataFrame:
    """One row per layer: name, type, output_shape, params, trainable.

    Args:
        model: any built Keras model, or some of a model's layers in order.
        expand_nested: list the layers inside nested models (such as the
            base of a transfer model) instead of one row for each.
        trainable: whether the model's parent (if it is nested) lets it train.

    The params column sums to ``model.count_params()``. ``trainable`` is
    whether the layer's weights will be updated (its own flag and its parents').
    """
    layers = model.layers if isinstance(model, keras.Model) else model
    return pd.DataFrame(list(_rows(layers, expand_nested, trainable)), columns=LAYER_COLUMNS)


def _keyed(table: pd.DataFrame) -> pd.DataFrame:
    """Index by name, with input layers keyed alike (Keras numbers their names)."""
    keys = table["name"].where(table["type"] != "InputLayer", "input")
    return table.set_index(keys.rename("key"))


def compare_layers(before: keras.Model, after: keras.Model) -> pd.DataFrame:
    """Mark each layer of two models as kept, removed or added, by name.

    Returns:
        DataFrame with columns name, type, status, shape_before, shape_after,
        in the order of ``before`` with the added layers last.
    """
    old = _keyed(layer_table(before))
    new = _keyed(layer_table(after))
    rows = []
    for name in [*old.index, *(key for key in new.index if key not in old.index)]:
        in_old, in_new = name in old.index, name in new.index
        rows.append(
            {
                "name": (new if in_new else old).loc[name, "name"],
                "type": (old if in_old else new).loc[name, "type"],
                "status": "kept" if in_old and in_new else ("removed" if in_old else "added"),
                "shape_before": old.loc[name, "output_shape"] if in_old else "",
                "shape_after": new.loc[name, "output_shape"] if in_new else "",
            }
        )
    return pd.DataFrame(rows, columns=["name", "type", "status", "shape_before", "shape_after"])
