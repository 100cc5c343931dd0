"""Feature vectors from a pretrained network, and a 2-D map of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras
import numpy as np

from tlcore.core.errors import BudgetError, ConfigError
from tlcore.core.settings import load_settings
from tlcore.data.images import ImageSource, ResizeMode, load_image, to_batch
from tlcore.inference.precision import inference_forward
from tlcore.inference.predict import model_input_size
from tlcore.models.backbone import layer_names, load_backbone
from tlcore.models.cost import FLOAT_BYTES, MB
from tlcore.models.zoo import BackboneSpec, get_backbone


def feature_extractor(
    backbone: str | BackboneSpec,
    *,
    weights: str | os.PathLike | None = "imagenet",
    layer: str | None = None,
    seed: int | None = None,
) -> keras.Model:
    """The pretrained network with its output layer removed.

    Args:
        backbone: a ``BACKBONES`` name.
        weights: "imagenet" (the full network's file, for any layer), None or a weights-file path: of the
            full network, or, for a layer inside the base (e.g. "block5_pool"), a no-top file too.
        layer: the layer whose output is the feature vector; by default the
            penultimate one (VGG16: "fc2", 4,096 values).
        seed: with ``weights=None``, the seed of the untrained weights (``load_backbone``).

    Raises:
        ConfigError: a layer name the network does not have.
    """
    spec = get_backbone(backbone)
    inside_base = layer is not None and layer in layer_names(spec, include_top=False, imagenet=weights == "imagenet")
    if inside_base:  # a cut inside the base: the network without its top (the top's weights are not kept)
        size = (spec.default_size, spec.default_size, 3)
        if weights == "imagenet":  # ImageNet's full file, which the pages fetch, holds the base's weights too
            network = _base_of(load_backbone(spec, weights="imagenet", include_top=True, seed=seed), spec, size)
        else:  # a no-top weights file serves too
            network = load_backbone(spec, weights=weights, include_top=False, input_shape=size, seed=seed)
    else:
        network = load_backbone(spec, weights=weights, include_top=True, seed=seed)
    name = layer or spec.feature_layer or network.layers[-2].name
    names = [l.name for l in network.layers]
    if name not in names:
        raise ConfigError(
            f"Feature layer must be a layer of {spec.name} (e.g. {names[-2]!r}). Received: layer={name!r}"
        )
    return keras.Model(network.input, network.get_layer(name).output, name=f"{spec.name}_{name}_features")


def _base_of(full: keras.Model, spec: BackboneSpec, size: tuple[int, int, int]) -> keras.Model:
    """``full``'s base as a network of its own, its weights copied by layer name: a model cut from ``full``
    would keep ``full``, top and all, alive (VGG16: 528 MB of weights for 56 MB of base)."""
    base = load_backbone(spec, weights=None, include_top=False, input_shape=size)
    for layer in base.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    return base


def check_feature_room(extractor: keras.Model, images: int) -> None:
    """Refuse ``images`` feature vectors of ``extractor`` over ``TL_MAX_MAP_FEATURE_MB`` before any is computed
    (an early layer's vector holds hundreds of thousands of values: VGG16's block1_conv1 3.2 million). The pages
    ask it (the Features page, a dataset map), which hold the vectors a visitor asked for in the server's memory;
    ``extract_features`` itself serves a notebook or the command line as asked."""
    width = int(np.prod(extractor.output.shape[1:]))
    needed, allowed = images * width * FLOAT_BYTES, load_settings().max_map_feature_mb
    if needed > allowed * MB:
        raise BudgetError(
            f"Feature vectors held at once may take at most {allowed:,} MB on this server (TL_MAX_MAP_FEATURE_MB); "
            f"choose a later layer or fewer images. Received: {images:,} images x {width:,} values from "
            f"{extractor.layers[-1].name} = {needed / MB:,.0f} MB")


def extract_features(
    extractor: keras.Model,
    images: Sequence[ImageSource],
    *,
    backbone: str | BackboneSpec,
    batch_size: int = 16,
    mode: ResizeMode = "crop",
    progress: Callable[[int, int], None] | None = None,
    precision: str | None = None,
) -> np.ndarray:
    """Feature vectors for many images, in batches.

    Args:
        precision: "auto", "float32" or "bfloat16"; None follows a forced
            precision, then ``TL_PRECISION`` (see ``tlcore.inference.precision``).

    Returns:
        float32 array of shape (len(images), features); spatial outputs are flattened.

    Raises:
        ImageError: the first image that is not usable (none are skipped silently).
    """
    spec = get_backbone(backbone)
    forward = inference_forward(extractor, backbone=spec, batch=max(1, min(batch_size, len(images))),
                                precision=precision)
    size = model_input_size(extractor)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = [load_image(source) for source in images[start : start + batch_size]]
        outputs = forward(spec.preprocess(to_batch(batch, size, mode=mode)))
        chunks.append(outputs.reshape(len(batch), -1))
        if progress:
            progress(start + len(batch), len(images))
    width = int(np.prod(extractor.output.shape[1:]))
    return np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)


def project_2d(features: np.ndarray) -> np.ndarray:
    """Principal-component projection of feature vectors to (n, 2), for a map."""
    centred = features - features.mean(axis=0, keepdims=True)
    if len(features) < 2:
        return np.zeros((len(features), 2), np.float32)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    if projected.shape[1] < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    return projected.astype(np.float32)
