"""The backbone registry: one row per pretrained architecture.

Generic code (loading, building, checking shapes, extracting features) reads
these rows and never branches on a model's name. Adding a backbone is one new
row in ``BACKBONES``; every zoo test is parametrised over the table.

The rows name their ``keras.applications`` functions; Keras (and TensorFlow) is
imported only when one is used, so reading the table (the sidebar, Home, the
password page) loads neither (issue 18: the first answer within 5 s).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from tlcore.core.errors import UnknownNameError

if TYPE_CHECKING:
    import keras

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"
UNTRAINED_SEED = 0
"""The seed the pages build untrained (random) networks with: the same weights at every server start."""


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One ImageNet weights file, as Keras names and caches it.

    Attributes:
        file_name: the name in the Keras cache (``$KERAS_HOME/models``).
        url: where Keras downloads it from.
        md5: the checksum Keras verifies, or None where Keras has none.
        approx_mb: the download size in megabytes, for the user's information.
    """

    file_name: str
    url: str
    md5: str | None
    approx_mb: int


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What generic code needs to know about one architecture.

    Attributes:
        name: the registry key, e.g. "VGG16".
        application: what builds it (``constructor``): the name of a ``keras.applications``
            function, e.g. "VGG16", or a function taking the same arguments.
        module: its own ``preprocess_input`` (``preprocess``: caffe, tf, torch or none): the
            name of the ``keras.applications`` module that has it, e.g. "vgg16", or the function.
        preprocess_mode: a word for the user: what ``preprocess`` does.
        default_size: the input size its ImageNet head was trained at.
        min_size: the smallest input Keras accepts with ``include_top=False``.
        feature_layer: the penultimate layer ("remove the output layer"),
            or None for "the layer just before the output".
        last_conv_layer: the last layer with a spatial (4-D) output.
        shrinks: how the base shrinks an image, in words (why inputs have a minimum).
        weights_top: the ImageNet weights file with the classifier, at ``default_size``.
        weights_notop: the ImageNet weights file without it, at ``default_size``.
        sized_weights: other square input sizes that have their own ImageNet
            files, as (size, file with top, file without top). Keras loads the
            file of the input's size when it has one (MobileNetV2: 96, 128,
            160, 192) and the default size's file otherwise.
        imagenet_variant: what Keras changes in the architecture when it loads
            ImageNet weights itself, as a function of the model built with
            ``weights=None`` (EfficientNet: a Rescaling layer after its
            Normalization); None where nothing changes.
    """

    name: str
    application: str | Callable[..., keras.Model]
    module: str | Callable
    preprocess_mode: str
    default_size: int
    min_size: int
    feature_layer: str | None
    last_conv_layer: str
    shrinks: str
    weights_top: WeightsFile
    weights_notop: WeightsFile
    sized_weights: tuple[tuple[int, WeightsFile, WeightsFile], ...] = ()
    imagenet_variant: Callable[[keras.Model], keras.Model] | None = None

    @property
    def constructor(self) -> Callable[..., keras.Model]:
        """The function that builds this network (a ``keras.applications`` one is imported on first use)."""
        if callable(self.application):
            return self.application
        return getattr(importlib.import_module("keras.applications"), self.application)

    @property
    def preprocess(self) -> Callable:
        """Its own ``preprocess_input`` (a ``keras.applications`` one is imported on first use)."""
        if callable(self.module):
            return self.module
        return importlib.import_module(f"keras.applications.{self.module}").preprocess_input

    @property
    def default_shape(self) -> tuple[int, int, int]:
        return (self.default_size, self.default_size, 3)

    @property
    def imagenet_top_sizes(self) -> tuple[int, ...]:
        """The square sizes at which Keras has an ImageNet classifier (``include_top=True``)."""
        return tuple(sorted({self.default_size, *(size for size, _, _ in self.sized_weights)}))

    def weights_file(
        self, include_top: bool, input_shape: tuple[int, int, int] | None = None
    ) -> WeightsFile:
        """The ImageNet file Keras loads for this input shape (the default size's when None)."""
        if input_shape is not None and input_shape[0] == input_shape[1]:
            for size, top, notop in self.sized_weights:
                if size == input_shape[0]:
                    return top if include_top else notop
        return self.weights_top if include_top else self.weights_notop


def _tf_kernels(folder: str, stem: str, md5_top: str, md5_notop: str, mb: tuple[int, int]):
    base = f"{_KERAS_APPS}{folder}/{stem}_weights_tf_dim_ordering_tf_kernels"
    top = WeightsFile(base.rsplit("/", 1)[1] + ".h5", base + ".h5", md5_top, mb[0])
    notop = WeightsFile(
        base.rsplit("/", 1)[1] + "_notop.h5", base + "_notop.h5", md5_notop, mb[1]
    )
    return {"weights_top": top, "weights_notop": notop}


def _mobilenet_v2(size: int) -> tuple[WeightsFile, WeightsFile]:
    """Keras's MobileNetV2 (alpha 1.0) files for one input size (no checksums in Keras)."""
    stem = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}"
    url = f"{_KERAS_APPS}mobilenet_v2/{stem}"
    return (WeightsFile(stem + ".h5", url + ".h5", None, 14),
            WeightsFile(stem + "_no_top.h5", url + "_no_top.h5", None, 9))


def _efficientnet_imagenet(model: keras.Model) -> keras.Model:
    """EfficientNet as Keras builds it for ImageNet weights.

    Keras adds ``Rescaling(1 / sqrt(std))`` after the Normalization layer (its
    Normalization divides by sqrt(variance), the original by the variance; see
    keras/src/applications/efficientnet.py). The same layer objects are reused.
    """
    import keras
    from keras.src.applications.efficientnet import IMAGENET_STDDEV_RGB

    normalization = next(l for l in model.layers if isinstance(l, keras.layers.Normalization))
    rescale = keras.layers.Rescaling([1.0 / math.sqrt(std) for std in IMAGENET_STDDEV_RGB])

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        return rescale(outputs) if layer is normalization else outputs

    inputs = keras.Input(batch_shape=model.input.shape, name=model.layers[0].name)
    return keras.models.clone_model(
        model, input_tensors=inputs, clone_function=lambda layer: layer, call_function=call
    )


_ROWS = [
    BackboneSpec(
        "VGG16", "VGG16", "vgg16", "caffe (BGR, mean subtracted)",
        224, 32, "fc2", "block5_conv3",
        "its five 2x2 max-poolings halve the image five times (32 -> 1)",
        **_tf_kernels("vgg16", "vgg16", "64373286793e3c8b2b4e3219cbf3544b",
                      "6d6bbae143d832006294945121d1f1fc", (528, 56)),
    ),
    BackboneSpec(
        "VGG19", "VGG19", "vgg19", "caffe (BGR, mean subtracted)",
        224, 32, "fc2", "block5_conv4",
        "its five 2x2 max-poolings halve the image five times (32 -> 1)",
        **_tf_kernels("vgg19", "vgg19", "cbe5617147190e668d6c5d5026f83318",
                      "253f8cb515780f3b799900260a226db6", (549, 77)),
    ),
    BackboneSpec(
        "ResNet50", "ResNet50", "resnet50", "caffe (BGR, mean subtracted)",
        224, 32, "avg_pool", "conv5_block3_out",
        "a stride-2 convolution, a stride-2 pooling and three stride-2 stages divide the side by 32",
        **_tf_kernels("resnet", "resnet50", "2cb95161c43110f7111970584f804107",
                      "4d473c1dd8becc155b73f8504c6f6626", (98, 90)),
    ),
    BackboneSpec(
        "MobileNetV2", "MobileNetV2", "mobilenet_v2", "tf (scaled to -1..1)",
        224, 32, None, "out_relu",
        "five stride-2 convolutions divide the side by 32",
        *_mobilenet_v2(224),
        sized_weights=tuple((size, *_mobilenet_v2(size)) for size in (96, 128, 160, 192)),
    ),
    BackboneSpec(
        "EfficientNetB0", "EfficientNetB0", "efficientnet",
        "none (takes raw 0..255)", 224, 32, "avg_pool", "top_activation",
        "five stride-2 convolutions divide the side by 32",
        weights_top=WeightsFile("efficientnetb0.h5", _EFFICIENTNET + "efficientnetb0.h5",
                                "902e53a9f72be733fc0bcb005b3ebbac", 29),
        weights_notop=WeightsFile("efficientnetb0_notop.h5", _EFFICIENTNET + "efficientnetb0_notop.h5",
                                  "50bc09e76180e00e4465e1a485ddc09d", 16),
        imagenet_variant=_efficientnet_imagenet,
    ),
    BackboneSpec(
        "InceptionV3", "InceptionV3", "inception_v3", "tf (scaled to -1..1)",
        299, 75, "avg_pool", "mixed10",
        "its unpadded stride-2 convolutions and poolings need 75 pixels to leave a 1x1 map",
        **_tf_kernels("inception_v3", "inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564",
                      "bcbd6486424b2319ff4ef7d526e38f63", (92, 84)),
    ),
    BackboneSpec(
        "Xception", "Xception", "xception", "tf (scaled to -1..1)",
        299, 71, "avg_pool", "block14_sepconv2_act",
        "its unpadded entry convolutions and four stride-2 poolings need 71 pixels",
        **_tf_kernels("xception", "xception", "0a58e3b7378bc2990ea3b43d5981f1f6",
                      "b0042744bf5b25fce3cb969f33bebb97", (88, 80)),
    ),
    BackboneSpec(
        "DenseNet121", "DenseNet121", "densenet",
        "torch (0..1, ImageNet mean and std)", 224, 32, "avg_pool", "relu",
        "a stride-2 convolution, a stride-2 pooling and three transition poolings divide the side by 32",
        **_tf_kernels("densenet", "densenet121", "9d60b8095a5708f2dcce2bca79d332c7",
                      "30ee3e1110167f948a6b9946edeeb738", (33, 28)),
    ),
]

BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType({row.name: row for row in _ROWS})


def get_backbone(backbone: str | BackboneSpec) -> BackboneSpec:
    """Return the registry row for a name (or pass a row through).

    Raises:
        KeyError: for a name that is not in ``BACKBONES``, listing the names.
    """
    if isinstance(backbone, BackboneSpec):
        return backbone
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise UnknownNameError(
            f"Backbone must be one of {', '.join(BACKBONES)}. Received: {backbone!r}"
        ) from None


@contextlib.contextmanager
def keras_names() -> Iterator[None]:
    """Inside, Keras names unnamed layers as in a fresh process: "conv2d", "conv2d_1", ...

    Keras numbers the layers it names itself per thread ("conv2d_94" once 94
    Conv2D layers exist), so InceptionV3 or Xception built twice would have
    different layer names. Building inside this context gives the names a
    fresh Python process gives them, every time; the counters are put back on
    the way out. Keras's name counters are thread-local, like this context.
    """
    from keras.src.backend.common import global_state

    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


def build_architecture(
    backbone: str | BackboneSpec,
    *,
    imagenet: bool = False,
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
) -> keras.Model:
    """The network ``keras.applications`` builds, without loading any weights.

    Layer names are the ones a fresh process gets (``keras_names``), so they are
    the same in every build and every process. With ``imagenet=True`` the
    architecture is the one Keras builds for ``weights="imagenet"`` (see
    ``BackboneSpec.imagenet_variant``). Arguments are not checked here: use
    ``tlcore.check_input_shape`` first. Inside ``scopes.shapes_only()`` nothing
    is allocated.
    """
    spec = get_backbone(backbone)
    with keras_names():
        model = spec.constructor(
            weights=None, include_top=include_top, input_shape=input_shape, pooling=pooling
        )
        if imagenet and spec.imagenet_variant is not None:
            model = spec.imagenet_variant(model)
    return model


__all__ = ["BACKBONES", "BackboneSpec", "WeightsFile", "build_architecture", "get_backbone", "keras_names"]
