"""Building a registry backbone with its weights, in the Keras constructor's order:
check the arguments, work out the input shape, build, load weights."""

from __future__ import annotations

import os

import keras

from tlcore.errors import ConfigError
from tlcore.shapes import check_input_shape
from tlcore.weights import Progress, download_weights, load_weights_file
from tlcore.zoo import BackboneSpec, get_backbone

POOLINGS = (None, "avg", "max")


def load_backbone(
    name: str | BackboneSpec,
    *,
    weights: str | os.PathLike | None = "imagenet",
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    progress: Progress | None = None,
) -> keras.Model:
    """Build a pretrained network from the registry.

    Args:
        name: a ``BACKBONES`` key such as "VGG16".
        weights: "imagenet" (Keras's cache, downloading once when online),
            None (untrained), or a path to a ``.weights.h5``/``.h5`` file.
        include_top: keep the ImageNet classifier (input must be the default size).
        input_shape: (height, width, 3); the backbone's default when None.
        pooling: with ``include_top=False``: None, "avg" or "max".
        progress: called with (bytes done, bytes in all) while downloading.

    Raises:
        ShapeError: an input shape the backbone cannot take (explained).
        WeightsError: weights that are not available or do not fit.
        ConfigError: an unknown pooling.
    """
    spec = get_backbone(name)
    if pooling not in POOLINGS:
        raise ConfigError(f"Pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    shape = check_input_shape(
        spec, input_shape or spec.default_shape, include_top=include_top
    ).input_shape
    model = spec.constructor(
        weights=None, include_top=include_top, input_shape=shape, pooling=pooling
    )
    if weights == "imagenet":
        weights = download_weights(spec, include_top=include_top, progress=progress)
    if weights is not None:
        load_weights_file(model, weights)
    return model
