"""Feature maps: what one convolutional layer of a network sees in one image.

``feature_maps`` runs one image through the network up to the chosen layer and
keeps its strongest channels (by mean activation); ``feature_grid`` tiles them
into a picture, coloured with a viridis-like map computed in numpy.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
from PIL import Image

from tlcore.core.errors import ConfigError
from tlcore.data.images import ImageSource, ResizeMode
from tlcore.inference.predict import prepare_input
from tlcore.models.zoo import BackboneSpec

TOP_RANGE = (1, 64)
"""How many channels ``feature_maps`` may keep."""
COLUMNS_RANGE = (1, 64)
_CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
               keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
               keras.layers.Conv2DTranspose)

# Viridis at nine evenly spaced points (0, 1/8, ..., 1), interpolated linearly.
_VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class FeatureMaps:
    """The strongest channels of one layer for one image.

    Attributes:
        layer: the layer's name.
        channels: the chosen channel indices, strongest first.
        maps: float32 array (k, height, width), each channel scaled to [0, 1]
            (min to max; a constant channel is all zeros).
        means: each chosen channel's mean activation (before scaling), strongest first.
        channel_count: how many channels the layer has in all.
        input_size: the (height, width) the image was fitted to.
    """

    layer: str
    channels: tuple[int, ...]
    maps: np.ndarray
    means: tuple[float, ...]
    channel_count: int
    input_size: tuple[int, int]


def _is_conv(layer: keras.Layer) -> bool:
    return isinstance(layer, _CONV_TYPES)


def conv_layer_names(model: keras.Model) -> list[str]:
    """The convolutional layers of ``model``, in order (VGG16: block1_conv1 ... block5_conv3).

    Every Conv/DepthwiseConv/SeparableConv layer with a spatial output, found by type,
    including those inside a nested model (such as a transfer model's base).
    """
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names.extend(conv_layer_names(layer))
        elif _is_conv(layer) and len(layer.output.shape) == 4:
            names.append(layer.name)
    return names


def _layer_output(model: keras.Model, name: str):
    """The symbolic output of layer ``name`` and the input it is computed from (nested models too)."""
    for layer in model.layers:
        if layer.name == name:
            return model.inputs[0], layer.output
        if isinstance(layer, keras.Model) and name in conv_layer_names(layer):
            return _layer_output(layer, name)
    raise KeyError(name)


def feature_maps(
    model: keras.Model,
    image: ImageSource,
    layer: str,
    *,
    backbone: str | BackboneSpec,
    top: int = 16,
    mode: ResizeMode = "crop",
) -> FeatureMaps:
    """The ``top`` channels of ``layer`` with the highest mean activation for one image.

    Args:
        model: a network built from a registry backbone (with or without its top).
        image: anything ``load_image`` accepts; fitted to the model's input
            ("crop" or "squash") and preprocessed as ``backbone`` expects.
        layer: one of ``conv_layer_names(model)``.
        backbone: whose preprocessing the model expects.
        top: how many channels to keep, 1 to 64; clamped to the layer's channels.
        mode: "crop" (centre crop, default) or "squash".

    Returns:
        FeatureMaps with the channels sorted by mean activation, strongest
        first (equal means: lower channel index first).

    Raises:
        ConfigError: ``top`` outside 1..64, or a layer that is not a
            convolutional layer of the model.
        ImageError: the image is not usable.
    """
    low, high = TOP_RANGE
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not low <= top <= high:
        raise ConfigError(f"The number of channels shown must be between {low} and {high}. Received: top={top!r}")
    convs = conv_layer_names(model)
    if layer not in convs:
        shown = f"{convs[0]} ... {convs[-1]}" if len(convs) > 2 else ", ".join(convs) or "none in this model"
        raise ConfigError(f"The layer must be one of the model's {len(convs)} convolutional layers "
                          f"({shown}). Received: layer={layer!r}")
    inputs, output = _layer_output(model, layer)
    probe = keras.Model(inputs, output)  # computes this layer only: one image, up to this layer
    batch = prepare_input(image, probe, backbone=backbone, mode=mode)
    activations = np.asarray(keras.ops.convert_to_numpy(probe(batch, training=False)), dtype=np.float32)[0]
    means = activations.mean(axis=(0, 1))
    k = min(int(top), means.shape[-1])
    order = np.lexsort((np.arange(means.shape[-1]), -means))[:k]
    chosen = np.moveaxis(activations[..., order], -1, 0)
    low_values = chosen.min(axis=(1, 2), keepdims=True)
    spread = chosen.max(axis=(1, 2), keepdims=True) - low_values
    scaled = np.where(spread > 0, (chosen - low_values) / np.where(spread > 0, spread, 1), 0.0)
    return FeatureMaps(layer, tuple(int(i) for i in order), scaled.astype(np.float32),
                       tuple(float(means[i]) for i in order), int(means.shape[-1]),
                       tuple(int(d) for d in batch.shape[1:3]))


def colour_map(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB with a viridis-like map (dark purple low, yellow high)."""
    position = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    below = np.minimum(np.floor(position).astype(int), len(_VIRIDIS) - 2)
    fraction = (position - below)[..., None]
    rgb = _VIRIDIS[below] * (1 - fraction) + _VIRIDIS[below + 1] * fraction
    return np.round(rgb).astype(np.uint8)


def feature_grid(
    maps: FeatureMaps | np.ndarray,
    *,
    columns: int | None = None,
    cell: int = 96,
    gap: int = 3,
) -> Image.Image:
    """Tile channel maps into one RGB picture, strongest first, row by row.

    Args:
        maps: a FeatureMaps, or an array (k, height, width) of values in [0, 1].
        columns: cells per row, 1 to 64; a near-square grid when None.
        cell: each map is enlarged (nearest neighbour, whole multiples) to at
            least this many pixels on its longer side.
        gap: white pixels between cells.

    Returns:
        An RGB ``PIL.Image``.
    """
    array = maps.maps if isinstance(maps, FeatureMaps) else np.asarray(maps)
    if array.ndim != 3 or not array.shape[0]:
        raise ConfigError(f"Maps must be an array (channels, height, width) with a channel. "
                          f"Received: shape={array.shape}")
    count, height, width = array.shape
    columns = math.ceil(math.sqrt(count)) if columns is None else columns
    if not COLUMNS_RANGE[0] <= columns <= COLUMNS_RANGE[1]:
        raise ConfigError(f"Columns must be between {COLUMNS_RANGE[0]} and {COLUMNS_RANGE[1]}. "
                          f"Received: columns={columns}")
    if not (1 <= cell <= 512 and 0 <= gap <= 32):
        raise ConfigError(f"The cell size must be between 1 and 512 pixels and the gap between 0 and 32. "
                          f"Received: cell={cell}, gap={gap}")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    scale = max(1, math.ceil(cell / max(height, width)))
    tile_h, tile_w = height * scale, width * scale
    canvas = np.full((rows * tile_h + (rows - 1) * gap, columns * tile_w + (columns - 1) * gap, 3), 255, np.uint8)
    coloured = colour_map(array)
    for index in range(count):
        row, column = divmod(index, columns)
        tile = coloured[index].repeat(scale, axis=0).repeat(scale, axis=1)
        top, left = row * (tile_h + gap), column * (tile_w + gap)
        canvas[top:top + tile_h, left:left + tile_w] = tile
    return Image.fromarray(canvas, "RGB")


def depth_note(layers: list[str], layer: str) -> str:
    """One sentence on what a layer at this depth detects and how well it transfers.

    Args:
        layers: the network's convolutional layers in order (``conv_layer_names``).
        layer: one of them.
    """
    if layer not in layers:
        raise ConfigError(f"The layer must be one of the {len(layers)} given. Received: layer={layer!r}")
    position = layers.index(layer) / max(len(layers) - 1, 1)
    where = f"{layer} is convolutional layer {layers.index(layer) + 1} of {len(layers)}"
    if position < 1 / 3:
        return (f"{where}: an early layer. Early layers respond to edges, colours and simple textures, "
                "which every photograph has, so they transfer to almost any task: freeze them.")
    if position < 2 / 3:
        return (f"{where}: a middle layer. Middle layers combine edges into patterns and parts (grids, "
                "fur, wheels); they transfer well to images like ImageNet's.")
    return (f"{where}: a late layer. Late layers respond to whole objects and the parts that separate "
            "ImageNet's 1,000 classes, so they are the most specific to ImageNet: these are the ones to "
            "fine-tune (or cut before) when your images look different.")
