"""A transfer model as plain values: ``TransferSpec``, the choices it accepts, and facts read off it.

Nothing here builds or checks a model (``tlcore.models.build`` does); this module only
describes one, so every wing can read a spec without importing Keras's builders.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

POOLINGS = ("avg", "max", "flatten")
ALL_LAYERS = "all"
"""``trainable_from`` value that makes every layer of the base trainable."""
CONV_BLOCKS = (0, 4)
"""(fewest, most) new convolutional blocks a head may add."""
CONV_FILTERS = (1, 1024)
"""(fewest, most) filters of each new convolution."""
CONV_KERNELS = (1, 7)
"""(smallest, largest) kernel side of each new convolution."""
CONV_POOLS = (1, 4)
"""(smallest, largest) max-pooling window closing each new block; 1 for no pooling."""


@dataclasses.dataclass(frozen=True)
class TransferSpec:
    """A transfer model, as plain values.

    Attributes:
        backbone: a ``BACKBONES`` name.
        input_shape: (height, width, 3); any size from the backbone's minimum.
        weights: "imagenet", None (untrained) or a path to a weights file.
        pooling: "avg" (global average, default), "max" (global max) or
            "flatten" (keep every position of the feature map).
        pool_size: an optional average pooling window applied to the feature
            map before ``pooling`` (the classic "AveragePooling2D(4)" head),
            after any new convolutional blocks.
        trainable_from: None (whole base frozen, default), a layer name of
            the base such as "block5_conv1" (that layer and all after it
            train; ``trainable_from_choices`` lists them, with names that are
            the same in every build and process), or "all" (every layer trains).
        conv_blocks: new convolutional blocks between the base and the pooling
            (the article's "new convolutional and pooling layers"), 0 to 4; 0 for
            none (default). Each block is a ``Conv2D(conv_filters, conv_kernel,
            padding="same", activation="relu")``, which keeps the map's size,
            then a ``MaxPooling2D(conv_pool)``, which divides it by ``conv_pool``.
        conv_filters: filters of each new convolution, 1 to 1024 (default 64).
        conv_kernel: kernel side of each new convolution, 1 to 7 (default 3).
        conv_pool: max-pooling window closing each block, 1 to 4 (default 2);
            1 for no pooling. The blocks need a feature map of at least
            ``conv_pool ** conv_blocks`` positions a side leaving the base.
        hidden_units: width of the hidden Dense layer; 0 for none.
        dropout: dropout rate before each Dense layer, 0 to 0.9.
        num_classes: outputs of the softmax head, at least 2.
        base_model: develop-a-model: a saved transfer model (``.keras``) whose
            trained base replaces the registry's pretrained one; its backbone
            and input shape must be the ones given here.
    """

    backbone: str = "VGG16"
    input_shape: tuple[int, int, int] = (224, 224, 3)
    weights: str | None = "imagenet"
    pooling: Literal["avg", "max", "flatten"] = "avg"
    pool_size: int | None = None
    trainable_from: str | None = None
    hidden_units: int = 256
    dropout: float = 0.2
    num_classes: int = 2
    base_model: str | None = None
    conv_blocks: int = 0
    conv_filters: int = 64
    conv_kernel: int = 3
    conv_pool: int = 2

    @property
    def pretrained(self) -> bool:
        """Whether the base starts from learned weights: ImageNet, a weights file or a trained base."""
        return self.weights is not None or self.base_model is not None

    @property
    def reuses_nothing(self) -> bool:
        """Whether this is a model trained from scratch: random weights and every layer training."""
        return not self.pretrained and self.trainable_from == ALL_LAYERS

    @property
    def freezes_random_layers(self) -> bool:
        """Whether a frozen part of the base keeps random weights, so it passes noise to the head."""
        return not self.pretrained and self.trainable_from != ALL_LAYERS

    def describe(self) -> str:
        """The model in words, e.g. "VGG16 at 96x96, global average pooling head with 256 hidden units"."""
        head = f"{self.hidden_units:,} hidden units" if self.hidden_units else "no hidden layer"
        pooling = {"avg": "global average pooling", "max": "global max pooling"}.get(self.pooling, self.pooling)
        blocks = self.conv_blocks
        convs = (f"{blocks} new convolutional block{'s' if blocks > 1 else ''} of {self.conv_filters:,} "
                 f"{self.conv_kernel}x{self.conv_kernel} filters, " if blocks else "")
        return (f"{self.backbone} at {self.input_shape[0]}x{self.input_shape[1]}, "
                f"{convs}{pooling} head with {head}")


def head_feature_map(spec: TransferSpec, feature_map: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (height, width, channels) the new convolutional blocks leave from the base's ``feature_map``.

    A block's convolution keeps the size (padding "same") and gives ``conv_filters``
    channels; its max pooling divides each side by ``conv_pool``, rounding down, as
    Keras's ``MaxPooling2D`` does. Without blocks, ``feature_map`` itself.
    """
    height, width, channels = feature_map
    for _ in range(spec.conv_blocks):
        height, width, channels = height // spec.conv_pool, width // spec.conv_pool, spec.conv_filters
    return height, width, channels
