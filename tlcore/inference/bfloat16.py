"""A bfloat16 copy of a float32 model, for inference on CPUs with bfloat16 units.

The copy is rebuilt from the model's config with a dtype policy per layer and
given the same weights:

- convolutions and dense layers (the arithmetic that matters) hold their
  weights in bfloat16 and compute in bfloat16 (``"bfloat16"``): the weights are
  rounded once here instead of on every call, which is what Keras's
  ``mixed_bfloat16`` would do on every forward pass (for VGG16, 138 M values);
- a layer ending in a softmax stays ``"float32"``, so probabilities are computed
  and normalised in float32;
- every other layer runs under ``"mixed_bfloat16"``: float32 variables (batch-norm
  statistics, normalisation constants), bfloat16 arithmetic (batch norm itself
  computes in float32 under Keras's mixed policies).

The original model is never changed. Callers cast the copy's outputs back to
float32 (``tlcore.inference.forward.compiled_forward(model, precision="bfloat16")`` does).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tlcore.core.errors import ConfigError

WEIGHT_LAYERS = frozenset({
    "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense",
})
"""Layers whose weights are stored in bfloat16 in the copy (kernel and bias only, no statistics)."""


def layer_policy(class_name: str, config: dict) -> str:
    """The dtype policy of one layer in the bfloat16 copy, from its class and config."""
    if class_name == "Softmax" or config.get("activation") == "softmax":
        return "float32"
    if class_name in WEIGHT_LAYERS:
        return "bfloat16"
    return "mixed_bfloat16"


def _rewrite(node: object) -> None:
    """Give every layer config under ``node`` its bfloat16-copy policy, in place.

    Initializers become zeros: every weight is overwritten right after, and
    drawing 138 M random numbers first (VGG16) would only cost time.
    """
    if isinstance(node, dict):
        config = node.get("config")
        if "class_name" in node and isinstance(config, dict) and node["class_name"] != "InputLayer":
            if "dtype" in config:
                config["dtype"] = layer_policy(node["class_name"], config)
            for key in config:
                if key.endswith("_initializer") and config[key] is not None:
                    config[key] = "zeros"
        for value in node.values():
            _rewrite(value)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value)


def bfloat16_clone(model: keras.Model) -> keras.Model:
    """A copy of ``model`` computing in bfloat16 with ``model``'s weights (see the module doc).

    Raises:
        ConfigError: a model Keras cannot rebuild from its config, or whose
            rebuilt weights do not line up with the original's.
    """
    config = model.get_config()
    _rewrite(config)
    try:
        clone = model.__class__.from_config(config)
    except Exception as exc:  # any layer Keras cannot rebuild this way
        raise ConfigError(
            f"A bfloat16 copy must be rebuildable from the model's config. "
            f"Received: model {model.name!r}, which failed with {type(exc).__name__}: {exc}"
        ) from exc
    source, target = model.weights, clone.weights
    if [tuple(w.shape) for w in source] != [tuple(w.shape) for w in target]:
        raise ConfigError(
            f"A bfloat16 copy must have the same weights as the original. Received: model {model.name!r} "
            f"with {len(source)} weights, rebuilt with {len(target)} in another order or shape"
        )
    for original, copy in zip(source, target):
        copy.assign(tf.cast(original.value, copy.dtype))
    return clone
