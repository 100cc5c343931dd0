"""Building a registry backbone with its weights, in the Keras constructor's order:
check the arguments, work out the input shape, build, load weights."""

from __future__ import annotations

import contextlib
import os

import keras

from tlcore.core.errors import ConfigError
from tlcore.models.imagenet_files import Progress, download_weights
from tlcore.models.scopes import seeded_initializers, shapes_only
from tlcore.models.shapes import check_input_shape
from tlcore.models.weights import load_weights_file
from tlcore.models.zoo import BackboneSpec, build_architecture, get_backbone

POOLINGS = (None, "avg", "max")


def load_backbone(
    name: str | BackboneSpec,
    *,
    weights: str | os.PathLike | None = "imagenet",
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    progress: Progress | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build a pretrained network from the registry: the model ``keras.applications`` builds.

    The architecture is Keras's for these weights (for "imagenet", as Keras
    builds it to load ImageNet weights), with the layer names of a fresh
    process (``zoo.keras_names``), so names are the same in every build.

    Args:
        name: a ``BACKBONES`` key such as "VGG16".
        weights: "imagenet" (Keras's cache, downloading once when online; the
            file Keras picks for this input size), None (untrained), or a path
            to a ``.weights.h5``/``.h5`` file. Without the top, a full
            network's file works too (its top is skipped); with the top, a
            no-top file is refused saying so.
        include_top: keep the ImageNet classifier. With ImageNet weights the
            input must be a size Keras has a classifier for (the default; for
            MobileNetV2 also 96, 128, 160, 192); otherwise any size works.
        input_shape: (height, width, 3); the backbone's default when None.
        pooling: with ``include_top=False``: None, "avg" or "max".
        progress: called with (bytes done, bytes in all) while downloading.
        seed: with ``weights=None``, draw the untrained weights from this seed, so every
            build and every process gets the same network (``UNTRAINED_SEED`` on the pages);
            None draws them as Keras does (training seeds them itself, ``TrainConfig.seed``).

    Raises:
        ShapeError: an input shape the backbone cannot take (explained).
        WeightsError: weights that are not available or do not fit.
        ConfigError: an unknown pooling.
    """
    spec = get_backbone(name)
    if pooling not in POOLINGS:
        raise ConfigError(f"Pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    shape = check_input_shape(
        spec, input_shape or spec.default_shape, include_top=include_top, weights=weights
    ).input_shape
    with seeded_initializers(seed) if weights is None and seed is not None else contextlib.nullcontext():
        model = build_architecture(
            spec, imagenet=weights == "imagenet", include_top=include_top, input_shape=shape, pooling=pooling
        )
    if weights == "imagenet":
        weights = download_weights(spec, include_top=include_top, input_shape=shape, progress=progress)
    if weights is not None:
        load_weights_file(model, weights, backbone=spec, include_top=include_top)
    return model


def layer_names(name: str | BackboneSpec, *, include_top: bool = True, imagenet: bool = False) -> list[str]:
    """Names of the network's layers after its input, in order (counted with shapes only).

    The names are the ones ``load_backbone`` gives, in every build and process
    (``imagenet``: the architecture Keras builds for ImageNet weights).
    """
    with shapes_only():
        model = build_architecture(name, imagenet=imagenet, include_top=include_top)
        return [layer.name for layer in model.layers[1:]]
