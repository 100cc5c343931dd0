"""Grad-CAM: where in an image a convolutional network found the evidence for a class.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a convolutional layer's
output by the mean gradient of the class score with respect to it, sums the
channels, keeps the positive part and scales it to 0..1.

The score is read before the softmax (a confident softmax output has, in float32,
no gradient left), as the class's logit less the mean of all logits: log p_c minus
the mean of log p_j, the part of the logits the probabilities determine. A softmax
ignores whatever all logits share, so a logit alone may carry a class's evidence or
none of it (with two classes, "square" may be learnt as "less no-square"); less the
mean, it always does. With ImageNet's 1,000 classes the mean barely moves, and the
map is the paper's.

Each (model, layer) gets one traced ``tf.function`` (cached like
``tlcore.inference.forward.compiled_forward``) that runs the model once, returning the
layer's output and the class score, and takes the gradient from the score back
to that layer only: no weight gradients, nothing below the layer. It works on
the model as it is, in float32, and never changes it: the layers are reused in a
second graph with two outputs, which a nested base (a transfer model's) is
reached through as well.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tlcore.core.errors import ConfigError, ImageError, ShapeError
from tlcore.data.images import ImageSource, ResizeMode, fit_image, load_image
from tlcore.models.remote import RemoteModel
from tlcore.models.zoo import BackboneSpec, get_backbone

_LOCK = threading.Lock()
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {layer name: traced function}


# Finding the layer -------------------------------------------------------------------------------

def _walk(model: keras.Model, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], keras.Layer]]:
    """Every layer of ``model`` in graph order with its path of names, nested models opened in place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer, (*path, layer.name))
        else:
            yield (*path, layer.name), layer


def _output_shape(layer: keras.Layer) -> tuple | None:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer never called in a graph
        return None


def _is_convolution(layer: keras.Layer) -> bool:
    """A layer with a 4-D kernel (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose...)."""
    return any(len(weight.shape) == 4 for weight in layer.weights)


def _spatial_layers(model: keras.Model) -> list[tuple[tuple[str, ...], keras.Layer]]:
    """The layers with a 4-D output from the first convolution on (inputs and rescaling before it are not)."""
    layers = list(_walk(model))
    first = next((i for i, (_, layer) in enumerate(layers) if _is_convolution(layer)), None)
    if first is None:
        return []
    return [(path, layer) for path, layer in layers[first:]
            if (shape := _output_shape(layer)) is not None and len(shape) == 4]


def _find(model: keras.Model, name: str) -> tuple[tuple[str, ...], keras.Layer] | None:
    return next(((path, layer) for path, layer in _walk(model) if layer.name == name), None)


def last_conv_layer(model: keras.Model, backbone: str | BackboneSpec | None = None) -> str:
    """The layer Grad-CAM reads by default: the last one with a spatial (4-D) output.

    The registry's ``BackboneSpec.last_conv_layer`` when ``backbone`` is given and the
    model has that layer (an ImageNet backbone, or a transfer model's nested base);
    otherwise found: the last layer with a 4-D output from the first convolution on,
    looking inside nested models, preferring one whose map is larger than 1x1 (a 1x1
    map cannot point anywhere).

    Args:
        model: a classifier (any Keras model with one image input and one output).
        backbone: the registry row the model was built on, if any.

    Returns:
        The layer's name (it may be inside a nested model; ``grad_cam`` finds it there).

    Raises:
        ConfigError: the model has no convolution with a spatial output.
    """
    if backbone is not None:
        name = get_backbone(backbone).last_conv_layer
        if _find(model, name) is not None:
            return name
    spatial = _spatial_layers(model)
    if not spatial:
        raise ConfigError(
            "Grad-CAM needs a convolutional layer with a spatial (4-D) output, such as Conv2D. "
            f"Received: model {model.name!r}, which has none"
        )
    wide = [(path, layer) for path, layer in spatial if np.prod(_output_shape(layer)[1:3]) > 1]
    return (wide or spatial)[-1][1].name


def cam_map_size(model: keras.Model, layer: str | None = None, *,
                 backbone: str | BackboneSpec | None = None) -> tuple[int, int]:
    """The (height, width) of ``layer``'s map (default ``last_conv_layer``): how coarse the heatmap is.

    Raises:
        ConfigError: a layer the model does not have, or without a spatial output.
    """
    _, found = _spatial_layer(model, layer if layer is not None else last_conv_layer(model, backbone))
    return tuple(int(d) for d in _output_shape(found)[1:3])


def _spatial_layer(model: keras.Model, layer: str) -> tuple[tuple[str, ...], keras.Layer]:
    if not isinstance(layer, str) or (found := _find(model, layer)) is None:
        spatial = _spatial_layers(model)
        example = f" (e.g. {spatial[-1][1].name!r})" if spatial else ""
        raise ConfigError(
            f"Grad-CAM's layer must be a layer of {model.name}{example}. Received: layer={layer!r}"
        )
    shape = _output_shape(found[1])
    if shape is None or len(shape) != 4:
        raise ConfigError(
            "Grad-CAM's layer must have a spatial (4-D) output: (batch, height, width, channels). "
            f"Received: layer={layer!r} with output shape {shape}"
        )
    return found


# The compiled function ---------------------------------------------------------------------------

def _softmax_head(model: keras.Model) -> keras.Layer | None:
    """The model's last layer when it is a Dense softmax or a softmax layer (``Softmax``, or ``Activation("softmax")``,
    Keras's advice for mixed precision): the score is read before it, where a confident answer still has a gradient."""
    last = model.layers[-1]
    softmax = getattr(last, "activation", None) is keras.activations.softmax
    if softmax and isinstance(last, keras.layers.Dense):
        return last
    if isinstance(last, keras.layers.Softmax) or (softmax and isinstance(last, keras.layers.Activation)):
        return last
    return None


def _tapped(model: keras.Model, path: tuple[str, ...], before: keras.Layer | None) -> keras.Model:
    """``model``'s layers in a new graph whose outputs are [the layer at ``path``, the model's output].

    With ``before``, the second output is that layer's input instead (the scores before a softmax).
    A nested model on the path is replaced by its own tapped graph; no layer is copied.
    """
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype,
                         name=model.inputs[0].name)
    taps = {}

    def call(layer, *args, **kwargs):
        if layer.name == path[0]:
            if len(path) == 1:
                taps["map"] = outputs = layer(*args, **kwargs)
                return outputs
            taps["map"], outputs = _tapped(layer, path[1:], None)(*args, **kwargs)
            return outputs
        if layer is before:
            taps["score"] = args[0]
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):  # Keras clones a Sequential without call functions
        outputs = inputs
        for layer in model.layers:
            outputs = call(layer, outputs)
    else:
        outputs = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                           call_function=call).outputs[0]
    return keras.Model(inputs, [taps["map"], taps.get("score", outputs)], name=f"{model.name}_cam")


def _compile(model: keras.Model, layer: str) -> Callable:
    path, _ = _spatial_layer(model, layer)
    head = _softmax_head(model)
    tapped = _tapped(model, path, head)
    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    if isinstance(head, keras.layers.Dense):
        def score(features, index):  # the Dense layer's logit of the class less their mean, without the softmax
            kernel = tf.cast(head.kernel, tf.float32)
            column = tf.gather(kernel, index, axis=1) - tf.reduce_mean(kernel, axis=1)
            bias = 0.0
            if head.use_bias:
                bias = tf.cast(tf.gather(head.bias, index) - tf.reduce_mean(head.bias), tf.float32)
            return tf.linalg.matvec(tf.cast(features, tf.float32), column) + bias
    elif head is not None:
        def score(logits, index):  # the input of the final Softmax layer, less its mean
            logits = tf.cast(logits, tf.float32)
            return tf.gather(logits, index, axis=-1) - tf.reduce_mean(logits, axis=-1)
    else:
        def score(outputs, index):
            return tf.gather(tf.cast(outputs, tf.float32), index, axis=-1)

    signature = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32), tf.TensorSpec((), tf.int32)]

    @tf.function(input_signature=signature)
    def run(batch, index):
        with tf.GradientTape() as tape:
            tape.watch(batch)  # frozen layers' variables are not watched: record from the input on
            feature_map, outputs = tapped(batch, training=False)
            scores = score(outputs, index)
        gradients = tape.gradient(scores, feature_map)  # from the score back to the layer, no further
        if gradients is None:
            raise ConfigError(f"Grad-CAM's layer must lie on the way to the output. Received: layer={layer!r}")
        feature_map, gradients = tf.cast(feature_map, tf.float32), tf.cast(gradients, tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, (height, width), method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        return tf.where(peak > 0, cam / tf.maximum(peak, 1e-30), tf.zeros_like(cam))

    run(tf.zeros((1, height, width, int(model.inputs[0].shape[-1])), tf.float32), tf.constant(0))  # trace, warm
    return run


def compiled_grad_cam(model: keras.Model, layer: str) -> Callable:
    """``f(batch, class_index) -> maps`` for (model, layer): traced on first use, then shared by every thread.

    ``batch`` is a float32 (n, height, width, channels) tensor of preprocessed images and
    ``class_index`` an int32 scalar tensor; the maps are (n, height, width), 0 to 1.
    """
    with _LOCK:
        functions = _COMPILED.setdefault(model, {})
        function = functions.get(layer)
        if function is None:
            function = functions[layer] = _compile(model, layer)
    return function


# The public call ---------------------------------------------------------------------------------

def _check_model(model: keras.Model) -> tuple[int, int]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(
            "Grad-CAM needs a model with one image input and one output. "
            f"Received: {len(model.inputs)} input(s) and {len(model.outputs)} output(s)"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ShapeError(f"Grad-CAM needs a model with a fixed (height, width, channels) input. "
                         f"Received: input shape {shape}")
    return int(shape[1]), int(shape[2])


def _as_picture(image: ImageSource | np.ndarray) -> Image.Image:
    """``load_image``'s sources, and (height, width[, 3]) arrays of 0..255."""
    if not isinstance(image, np.ndarray):
        return load_image(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3)):
        raise ImageError("An image array must be (height, width) or (height, width, 3) of values 0..255. "
                         f"Received: shape {image.shape}")
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
    return load_image(Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels))


def grad_cam(
    model: keras.Model,
    image: ImageSource | np.ndarray,
    class_index: int,
    *,
    backbone: str | BackboneSpec | None = None,
    layer: str | None = None,
    mode: ResizeMode = "crop",
) -> np.ndarray:
    """The Grad-CAM map of ``class_index`` for one image.

    The image is decoded, fitted to the model's input and preprocessed as
    ``predict_top_k`` does. The class score is taken before the softmax, as the
    class's logit less the mean logit (from the last Dense layer's weights when its
    activation is softmax, or the input of a final Softmax layer); a model without
    a softmax at its end gives its output itself. Always float32.

    Args:
        model: a classifier with one image input and one output; never changed.
        image: anything ``load_image`` accepts, or a (height, width[, 3]) array of 0..255.
        class_index: the output whose evidence to show, 0 to classes - 1.
        backbone: whose preprocessing the model expects (and where its last
            convolutional layer is); None for raw 0..255 pixels and a found layer.
        layer: the layer to read (a name, possibly inside a nested base); default
            ``last_conv_layer(model, backbone)``.
        mode: "crop" (centre crop, default) or "squash", as Predict fits images.

    Returns:
        float32 (height, width) at the model's input size, 0 to 1: 1 where the
        evidence is strongest; all zeros when nothing raised the class's score.

    Raises:
        ConfigError: a class index outside the outputs, a layer the model does not
            have or without a spatial output, a model with no convolution.
        ShapeError: a model without a fixed input size.
        ImageError: an image that is not usable.
    """
    height, width = _check_model(model)
    classes = int(model.outputs[0].shape[-1])
    if isinstance(class_index, (bool, np.bool_)) or not isinstance(class_index, (int, np.integer)) \
            or not 0 <= class_index < classes:
        raise ConfigError(f"Class index must be between 0 and {classes - 1}. Received: class_index={class_index!r}")
    layer = layer if layer is not None else last_conv_layer(model, backbone)
    if isinstance(model, RemoteModel):  # an uploaded model: its layer is checked here, its pass runs in its worker
        _spatial_layer(model, layer)
    else:
        compiled_grad_cam(model, layer)
    fitted = fit_image(_as_picture(image), (height, width), mode=mode)
    pixels = np.asarray(fitted, dtype=np.float32)[None]
    if backbone is not None:
        pixels = get_backbone(backbone).preprocess(pixels)
    if isinstance(model, RemoteModel):
        return model.run("computing the heatmap", grad_cam_pass, layer, pixels, int(class_index))
    return grad_cam_pass(model, layer, pixels, int(class_index))


def grad_cam_pass(model: keras.Model, layer: str, pixels: np.ndarray, class_index: int) -> np.ndarray:
    """The map of ``class_index`` for one preprocessed (1, height, width, channels) image: the pass itself,
    run here or in an uploaded model's worker (``RemoteModel.run``)."""
    function = compiled_grad_cam(model, layer)
    return function(tf.convert_to_tensor(pixels, tf.float32), tf.constant(class_index, tf.int32))[0].numpy()


# Drawing ------------------------------------------------------------------------------------------

_TURBO = (  # Google's Turbo colour map as polynomials of x in 0..1 (A. Mikhailov; fit by R. Du), for r, g, b
    (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
    (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
    (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Turbo colours (uint8, ... x 3) for values 0..1: dark blue (cold), green, yellow, red (hot)."""
    x = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)[..., None]
    channels = [np.polynomial.polynomial.polyval(x, coefficients) for coefficients in _TURBO]
    return np.clip(np.rint(np.concatenate(channels, axis=-1) * 255), 0, 255).astype(np.uint8)


def heat_overlay(image: ImageSource | np.ndarray, heat: np.ndarray, *, strength: float = 0.7) -> Image.Image:
    """The heatmap drawn over the image: hot places coloured strongly, cold ones lightly.

    Args:
        image: the picture the map is of (as the model saw it: fitted to its input),
            at any size; the map is stretched (bilinear) to it.
        heat: a (height, width) map of 0..1, as ``grad_cam`` returns.
        strength: the colour's opacity where the heat is 1 (a quarter of that where it is 0).

    Returns:
        An RGB picture the size of ``image``.

    Raises:
        ImageError: an image that is not usable.
        ConfigError: a map that is not 2-D.
    """
    picture = _as_picture(image)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ConfigError(f"A heatmap must be a 2-D (height, width) array. Received: shape {heat.shape}")
    if heat.shape != (picture.height, picture.width):
        heat = np.asarray(Image.fromarray(heat).resize(picture.size, Image.Resampling.BILINEAR))
    heat = np.clip(heat, 0.0, 1.0)
    alpha = (strength * (0.25 + 0.75 * heat))[..., None]
    blended = (1 - alpha) * np.asarray(picture, dtype=np.float32) + alpha * heat_colours(heat)
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
