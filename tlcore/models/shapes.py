"""Input-shape rules, checked before Keras fails, in words a person understands."""

from __future__ import annotations

import dataclasses
import functools
import os

from tlcore.core.errors import ShapeError
from tlcore.core.values import whole_number
from tlcore.models.scopes import shapes_only
from tlcore.models.zoo import BackboneSpec, build_architecture, get_backbone

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


@functools.lru_cache(maxsize=4096)
def _built_feature_map(spec: BackboneSpec, height: int, width: int) -> tuple[int, int, int] | None:
    """The base's output shape at (height, width), from the model Keras builds at that size.

    Built inside ``shapes_only()``: variables have shapes but no memory, and
    Python's random state is put back, so measuring never changes the weights
    of a model built afterwards. Remembered per (backbone, size).
    """
    with shapes_only():
        try:
            base = build_architecture(spec, include_top=False, input_shape=(height, width, 3))
        except ValueError:  # Keras refuses the size, or the image shrinks to nothing inside
            return None
        shape = tuple(int(d) for d in base.output.shape[1:])
    return shape if min(shape[:2]) > 0 else None


def feature_map_shape(backbone: str | BackboneSpec, size: tuple[int, int]) -> tuple[int, int, int] | None:
    """The (height, width, channels) the base leaves for an input of ``size``.

    Measured on the network ``keras.applications`` builds at exactly that size
    (MobileNetV2 and EfficientNet pad by the input's size, so a base with a free
    input size would be one smaller), counted with shapes only: nothing is
    allocated. Remembered per (backbone, size).

    Returns None where Keras refuses the size or the image shrinks to nothing.
    """
    return _built_feature_map(get_backbone(backbone), int(size[0]), int(size[1]))


def _side(spec: BackboneSpec, size: int) -> int:
    return min((_built_feature_map(spec, size, size) or (0, 0))[:2])


# Every registry network halves its map five times (a total stride of 32), and its map never shrinks as the input
# grows, so the map of most grows by one position every 32 pixels from a 1x1 at the smallest input: a guess, which
# two builds prove (the size works, one pixel less does not).
STRIDE_GUESS = 32


def _proved_guess(spec: BackboneSpec, min_map: int) -> int | None:
    """The smallest input for ``min_map`` if a stride guess is proved: 32 pixels a position from the smallest input
    (VGG16, InceptionV3: their halvings round down), or one pixel and then 32 a position (ResNet50, MobileNetV2,
    EfficientNetB0: theirs round up). None otherwise (Xception leaves 3x3 at its smallest, DenseNet121 rounds
    both ways): the search finds it."""
    low = spec.min_size
    for guess in (low + STRIDE_GUESS * (min_map - 1), low + 1 + STRIDE_GUESS * (min_map - 2)):
        if low < guess <= MAX_INPUT_SIDE and _side(spec, guess) >= min_map > _side(spec, guess - 1):
            return guess
    return None


@functools.lru_cache(maxsize=256)
def _smallest_input(spec: BackboneSpec, min_map: int) -> int | None:
    guess = _proved_guess(spec, min_map)
    if guess is not None:
        return guess
    low = spec.min_size
    # A first guess (each 32 more pixels add about one position), doubled until it is big enough.
    high = min(MAX_INPUT_SIDE, low + STRIDE_GUESS * max(min_map - 1, 0))
    while _side(spec, high) < min_map:
        if high == MAX_INPUT_SIDE:
            return None
        low, high = high + 1, min(MAX_INPUT_SIDE, 2 * high)
    while low < high:  # the map only grows with the input
        mid = (low + high) // 2
        if _side(spec, mid) >= min_map:
            high = mid
        else:
            low = mid + 1
    return low


def smallest_input(backbone: str | BackboneSpec, min_map: int = 1) -> int:
    """The smallest square input whose feature map is at least ``min_map`` wide.

    Measured on the networks Keras builds (see ``feature_map_shape``).

    Raises:
        ShapeError: when even ``MAX_INPUT_SIDE`` leaves a smaller map.
    """
    spec = get_backbone(backbone)
    smallest = _smallest_input(spec, int(min_map))
    if smallest is None:
        raise ShapeError(
            f"A feature map of {min_map}x{min_map} needs an input over the "
            f"{MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} limit for {spec.name}. Received: min_map={min_map}"
        )
    return smallest


def _as_shape(input_shape: object) -> tuple[int, int, int]:
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(whole_number(d) for d in input_shape)
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
    weights: str | os.PathLike | None = "imagenet",
) -> ShapeCheck:
    """Explain, before Keras fails, whether ``input_shape`` works for ``backbone``.

    The rules are Keras's own (``imagenet_utils.obtain_input_shape``): with
    ``include_top=True`` and ImageNet weights the input must be a size Keras has
    an ImageNet classifier for (the default size; MobileNetV2 also 96, 128, 160
    and 192); with other weights (None or a file) a full network takes any
    size from the minimum, and a file made at another size is refused when it
    is loaded.

    Args:
        backbone: a ``BACKBONES`` name.
        input_shape: (height, width, 3).
        include_top: whether the ImageNet classifier is kept.
        weights: "imagenet", None or a weights-file path.

    Raises:
        ShapeError: for a shape that is not (h, w, 3), a size without an
            ImageNet classifier with ``include_top=True``, a side under the
            backbone's minimum or over ``MAX_INPUT_SIDE``. The message says why
            and gives the smallest size that works.
    """
    spec = get_backbone(backbone)
    height, width, channels = _as_shape(input_shape)
    received = f"Received: input_shape={(height, width, channels)}"
    if channels != 3:
        raise ShapeError(
            f"Input must have 3 channels (RGB) for {spec.name}: its pretrained filters "
            f"expect colour images. {received}"
        )
    sizes = spec.imagenet_top_sizes
    if include_top and weights == "imagenet" and (height != width or height not in sizes):
        if len(sizes) == 1:
            raise ShapeError(
                f"Input size must be {sizes[0]}x{sizes[0]} for {spec.name} with include_top=True "
                "and ImageNet weights: its ImageNet classifier was trained at that size. Use "
                f"include_top=False for other sizes. {received}"
            )
        raise ShapeError(
            f"Input size must be one of {', '.join(f'{s}x{s}' for s in sizes)} for {spec.name} "
            "with include_top=True and ImageNet weights: Keras has an ImageNet classifier "
            f"trained at each of these sizes. Use include_top=False for other sizes. {received}"
        )
    if min(height, width) < spec.min_size:
        raise ShapeError(
            f"Input size must be at least {spec.min_size}x{spec.min_size} for {spec.name} with "
            f"include_top={include_top}: {spec.shrinks}, so a smaller image shrinks to nothing before "
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
