"""What the pages offer first for a backbone or a ``TransferSpec``, and what its choices mean, decided once.

The Build, Train and Features pages used to work these out inline (the third-last layer
here, one layer earlier there; ``weights == "imagenet" and not base_model``); a page
now asks these functions, so every page and a notebook get the same answer.
"""

from __future__ import annotations

import functools

from tlcore.models.backbone import layer_names
from tlcore.models.build import trainable_from_choices
from tlcore.models.spec import ALL_LAYERS, TransferSpec
from tlcore.models.zoo import get_backbone

IMAGENET = "imagenet"
"""``TransferSpec.weights`` for Keras's pretrained ImageNet weights."""
TOP_LAYERS = 3
"""Layers with weights that train by default when only the top of the base learns (VGG16: block 5's three)."""


def _trainable_from(backbone: str) -> tuple[str, ...]:
    return tuple(trainable_from_choices(backbone))  # built once per backbone (``trainable_from_choices``)


def default_trainable_from(backbone: str) -> str:
    """The layer training starts from when only the top of the base learns, offered first by Build's
    "train from a layer" and by Train's fine-tuning phase.

    Args:
        backbone: a ``BACKBONES`` name.

    Returns:
        The ``TOP_LAYERS``-th last layer with weights (VGG16: "block5_conv1"), or the first
        when the base has fewer.

    Raises:
        KeyError: not a ``BACKBONES`` name (``get_backbone``'s message).
    """
    names = _trainable_from(backbone)
    return names[-TOP_LAYERS] if len(names) >= TOP_LAYERS else names[0]


@functools.lru_cache(maxsize=32)
def default_feature_layer(backbone: str) -> str:
    """The layer a feature extractor cuts after by default: the one before the output layer.

    Args:
        backbone: a ``BACKBONES`` name.

    Returns:
        The registry's ``feature_layer`` (VGG16: "fc2"), else the full network's penultimate layer.

    Raises:
        KeyError: not a ``BACKBONES`` name (``get_backbone``'s message).
    """
    return get_backbone(backbone).feature_layer or layer_names(backbone, include_top=True)[-2]


def reads_imagenet_weights(spec: TransferSpec) -> bool:
    """Whether building ``spec`` reads Keras's ImageNet weights file (so it must be cached or downloaded first).

    A reused base (``base_model``) brings its own trained weights, so it reads none.
    """
    return spec.weights == IMAGENET and spec.base_model is None


def weights_words(spec: TransferSpec) -> str:
    """Where ``spec``'s base gets its weights, in words: "ImageNet weights", "random (untrained) weights",
    "weights from a file" or "the trained base of an earlier run"."""
    if spec.base_model is not None:
        return "the trained base of an earlier run"
    if spec.weights is None:
        return "random (untrained) weights"
    return "ImageNet weights" if spec.weights == IMAGENET else "weights from a file"


def training_words(spec: TransferSpec) -> str:
    """Which of ``spec``'s base layers train, in words: "the base frozen", "every layer training" or
    "training from <layer>"."""
    if spec.trainable_from is None:
        return "the base frozen"
    if spec.trainable_from == ALL_LAYERS:
        return "every layer training"
    return f"training from {spec.trainable_from}"


def spec_summary(spec: TransferSpec) -> str:
    """``spec`` in one line: its model (``describe``), which layers train, and where its weights come from.

    Example: "VGG16 at 96x96, global average pooling head with 256 hidden units; the base frozen;
    ImageNet weights".
    """
    return f"{spec.describe()}; {training_words(spec)}; {weights_words(spec)}"
