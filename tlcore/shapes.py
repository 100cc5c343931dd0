"""Input-shape rules, checked before Keras fails, in words a person understands."""

from __future__ import annotations

import dataclasses
import functools
import random

import keras

from tlcore.errors import ShapeError
from tlcore.zoo import BackboneSpec, get_backbone

MAX_INPUT_SIDE = 1024


@dataclasses.dataclass(frozen=True)
class ShapeCheck:
    """An accepted input shape and what the base makes of it.

    Attributes:
        backbone: the registry name.
        input_shape: (height, width, 3).
        feature_map: (height, width, channels) of the base's last feature map.
        notes: plain sentences worth showing the user (e.g. a 1x1 map).
    """

    backbone: str
    input_shape: tuple[int, int, int]
    feature_map: tuple[int, int, int]
    notes: tuple[str, ...] = ()


@functools.cache
def _flexible_base(name: str) -> keras.Model:
    """The untrained base with a free input size, used only for shape arithmetic.

    Building it draws initializer seeds from Python's ``random``; its state is
    put back, so whether this cache was warm never changes the weights of a
    model built afterwards with the same seed.
    """
    spec = get_backbone(name)
    state = random.getstate()
    try:
        return spec.constructor(weights=None, include_top=False, input_shape=(None, None, 3))
    finally:
        random.setstate(state)


def feature_map_shape(backbone: str | BackboneSpec, size: tuple[int, int]) -> tuple[int, int, int] | None:
    """The (height, width, channels) the base leaves for an input of ``size``.

    Returns None where the image shrinks to nothing inside the base.
    """
    spec = get_backbone(backbone)
    try:
        shape = _flexible_base(spec.name).compute_output_spec(
            keras.KerasTensor((1, size[0], size[1], 3))
        ).shape
    except ValueError:
        return None
    return tuple(int(d) for d in shape[1:]) if min(shape[1:3]) > 0 else None


def smallest_input(backbone: str | BackboneSpec, min_map: int = 1) -> int:
    """The smallest square input whose feature map is at least ``min_map`` wide."""
    spec = get_backbone(backbone)
    low, high = spec.min_size, MAX_INPUT_SIDE
    if (feature_map_shape(spec, (high, high)) or (0,))[0] < min_map:
        raise ShapeError(
            f"A feature map of {min_map}x{min_map} needs an input over the "
            f"{MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} limit for {spec.name}. Received: min_map={min_map}"
        )
    while low < high:
        mid = (low + high) // 2
        shape = feature_map_shape(spec, (mid, mid))
        if shape is not None and min(shape[:2]) >= min_map:
            high = mid
        else:
            low = mid + 1
    return low


def _as_shape(input_shape: object) -> tuple[int, int, int]:
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in input_shape)
    ):
        raise ShapeError(
            "Input shape must be (height, width, channels) with whole numbers, e.g. "
            f"(224, 224, 3). Received: input_shape={input_shape!r}"
        )
    return tuple(input_shape)


def check_input_shape(
    backbone: str | BackboneSpec,
    input_shape: tuple[int, int, int],
    *,
    include_top: bool = False,
) -> ShapeCheck:
    """Explain, before Keras fails, whether ``input_shape`` works for ``backbone``.

    Raises:
        ShapeError: for a shape that is not (h, w, 3), a size other than the
            default with ``include_top=True``, a side under the backbone's
            minimum or over ``MAX_INPUT_SIDE``. The message says why and gives
            the smallest size that works.
    """
    spec = get_backbone(backbone)
    height, width, channels = _as_shape(input_shape)
    received = f"Received: input_shape={(height, width, channels)}"
    if channels != 3:
        raise ShapeError(
            f"Input must have 3 channels (RGB) for {spec.name}: its pretrained filters "
            f"expect colour images. {received}"
        )
    if include_top and (height, width) != (spec.default_size, spec.default_size):
        raise ShapeError(
            f"Input size must be {spec.default_size}x{spec.default_size} for {spec.name} with "
            "include_top=True: its ImageNet classifier was trained at that size. Use "
            f"include_top=False for other sizes. {received}"
        )
    if min(height, width) < spec.min_size:
        raise ShapeError(
            f"Input size must be at least {spec.min_size}x{spec.min_size} for {spec.name} with "
            f"include_top=False: {spec.shrinks}, so a smaller image shrinks to nothing before "
            f"the last layer. The smallest size that works is {spec.min_size}x{spec.min_size}. "
            f"{received}"
        )
    if max(height, width) > MAX_INPUT_SIDE:
        raise ShapeError(
            f"Input size must be at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} on this server "
            f"(memory and time grow with the square of the side). {received}"
        )
    feature_map = feature_map_shape(spec, (height, width))
    if feature_map is None:
        raise ShapeError(
            f"Input size must leave a feature map for {spec.name}: {spec.shrinks}. "
            f"The smallest size that works is {smallest_input(spec)}x{smallest_input(spec)}. "
            f"{received}"
        )
    notes = []
    if feature_map[:2] == (1, 1):
        notes.append(
            f"At {height}x{width}, {spec.name} leaves a 1x1x{feature_map[2]} feature map: "
            "every spatial detail is pooled into a single position. It works, but a larger "
            f"input (e.g. {smallest_input(spec, 2)}x{smallest_input(spec, 2)} or more) keeps "
            "more of the picture."
        )
    return ShapeCheck(spec.name, (height, width, channels), feature_map, tuple(notes))
