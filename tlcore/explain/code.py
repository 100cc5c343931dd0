"""The Keras program behind each result: a spec, a prediction, a feature cut, a training config.

Every function here returns the text of the shortest runnable Keras 3 program
that does what a page shows for the choices given, in the steps the Keras
tutorials teach: ``VGG16(include_top=False, input_shape=...)``, preprocessing,
``decode_predictions`` or the cut at a feature layer, ``layer.trainable = False``
by layer name, a new head, ``compile`` and ``fit``, the fine-tuning phase, saving.

A program builds exactly the model ``tlcore`` builds: the same layer names and
types, output shapes, and parameter and trainable counts (tests run each program
in a fresh process and compare). Names the programs rely on:

- The head's layers carry ``tlcore``'s names ("image", "head_conv_1", "head_pool",
  "head_hidden", "head_output", ...; see ``build.attach_head``).
- Keras numbers the layers it names itself per session ("conv2d_85"); where a
  program refers to such a layer by name it starts with
  ``keras.backend.clear_session()``, so the name means the layer it means on the
  dashboard even in a notebook that built other models before.

Every user string (file, folder and class names) enters a program as a Python
string literal with its backslashes, quotes and unprintable characters escaped
(``access.printable``): no name can end a string, start a line or hide a line
break (U+2028, U+0085, ...) that a notebook or an editor would split on. Headings
and the title show names the same way, on one line.

Photos are read as the dashboard reads them (``tlcore.data.images``: upright,
transparent parts on white, then PIL's ``ImageOps.fit`` or a bilinear resize), so a
program's input array is the page's, pixel for pixel.

Programs are plain text; nothing here runs them. ``as_notebook`` turns one into
a Jupyter notebook (one cell per numbered step) with ``nbformat``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import textwrap
from collections.abc import Sequence

import keras
from keras.src.utils.naming import to_snake_case

from tlcore.core.access import message_text, printable
from tlcore.core.errors import ConfigError
from tlcore.models.build import check_transfer_spec
from tlcore.models.scopes import shapes_only
from tlcore.models.shapes import check_input_shape
from tlcore.models.spec import ALL_LAYERS, TransferSpec, head_feature_map
from tlcore.models.zoo import BackboneSpec, build_architecture, get_backbone
from tlcore.training.config import TrainConfig
from tlcore.training.runs import MODEL_FILE

FROM_SPEC = "from-spec"
"""``weights`` value meaning: what the spec (or the page's choice) says."""
WEIGHTS_FILE = "my_weights.h5"
"""The file name a program uses for the user's own weights file."""
OPTIMIZER_CODE = {
    "adam": "keras.optimizers.Adam({rate})",
    "sgd": "keras.optimizers.SGD({rate}, momentum=0.9)",
    "rmsprop": "keras.optimizers.RMSprop({rate})",
}
"""The Keras call for each of ``train.OPTIMIZERS``, with ``{rate}`` for the learning rate."""
_AUGMENT = '''augmentation = [  # random flips, rotations and zooms of the training images
    keras.layers.RandomFlip("horizontal", seed={seed}),
    keras.layers.RandomRotation(0.1, fill_mode="reflect", seed={rotation_seed}),  # each its own seed: independent
    keras.layers.RandomZoom(0.1, fill_mode="reflect", seed={zoom_seed}),
]


def augment(images):
    for layer in augmentation:
        images = layer(images, training=True)
    return images

'''
_STEP = re.compile(r"^# \d+\. ")
"""A line that starts a numbered step of a program (a notebook cell)."""


@dataclasses.dataclass(frozen=True)
class _Names:
    """How a program names a backbone: its ``keras.applications`` module and constructor."""

    module: str
    constructor: str


@functools.cache
def _names(spec: BackboneSpec) -> _Names:
    """The public module whose ``preprocess_input`` is the row's, e.g. ``keras.applications.vgg16``."""
    constructor = spec.constructor.__name__
    for module in (constructor.lower(), spec.preprocess.__module__.rsplit(".", 1)[-1]):
        found = getattr(keras.applications, module, None)
        if (found is not None and getattr(found, constructor, None) is spec.constructor
                and getattr(found, "preprocess_input", None) is spec.preprocess):
            return _Names(module, constructor)
    raise ConfigError(f"A backbone must come from a keras.applications module. Received: {spec.name}")


@dataclasses.dataclass(frozen=True)
class _Facts:
    """What a program needs to know about a network's layers (read with shapes only)."""

    keras_named: frozenset[str]
    """Layers Keras named itself ("conv2d_85"): their names hold in a fresh session only."""
    batchnorm: bool
    """Whether it has BatchNormalization layers."""


@functools.lru_cache(maxsize=64)
def _facts(spec: BackboneSpec, include_top: bool) -> _Facts:
    with shapes_only():
        model = build_architecture(spec, include_top=include_top)
        named = set()
        for layer in model.layers:
            own = to_snake_case(type(layer).__name__)
            if layer.name == own or re.fullmatch(re.escape(own) + r"_\d+", layer.name):
                named.add(layer.name)
        batchnorm = any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    return _Facts(frozenset(named), batchnorm)


def weights_text(weights: str | os.PathLike | None) -> tuple[str, str]:
    """(the ``weights=`` argument, a comment on it) for a program."""
    if weights == "imagenet":
        return '"imagenet"', "ImageNet weights (Keras downloads them once)"
    if weights is None:
        return "None", 'untrained, as chosen; weights="imagenet" for the pretrained network'
    return _text(WEIGHTS_FILE), "your weights file, as chosen (its path)"


def _text(value: str) -> str:
    """A string as a double-quoted Python literal on one line (backslashes, quotes, unprintables escaped)."""
    return printable(value, quote='"')


def _texts(values: Sequence[str]) -> str:
    return "[" + ", ".join(_text(v) for v in values) + "]"


def _rate(value: float) -> str:
    return f"{value:g}"


Step = tuple[str, list[str]]
"""A numbered step of a program: its heading (a sentence) and its lines."""


def _program(title: str, imports: Sequence[str], fresh_names: bool, steps: Sequence[Step]) -> str:
    """The program's text: docstring, imports, then each step under "# n. heading"."""
    title = printable(title).replace('"', '\\"')  # one line, and no quote can end the docstring
    lines = [f'"""{title}"""', "", *imports]
    if fresh_names:
        lines += ["", "# Keras numbers the layers it names itself (\"conv2d_85\") per session: start at zero",
                  "# so that the layer names below are the ones the dashboard shows.",
                  "keras.backend.clear_session()"]
    for number, (heading, body) in enumerate(steps, 1):
        heading = " ".join(printable(heading).split())  # one comment line, whatever names it holds
        lines += ["", *textwrap.wrap(f"# {number}. {heading}", 100, subsequent_indent="#    "), *body]
    return "\n".join(lines) + "\n"


def _freezing(trainable_from: str | None, *, batchnorm: bool) -> list[str]:
    """``set_trainable_from`` as a loop by layer name (``batchnorm``: keep BN layers frozen)."""
    if trainable_from is None:
        return ["base.trainable = False  # every layer of the base keeps its weights"]
    if trainable_from == ALL_LAYERS:
        if not batchnorm:
            return ["base.trainable = True",
                    "for layer in base.layers:  # every layer of the base trains",
                    "    layer.trainable = True"]
        return ["base.trainable = True",
                "for layer in base.layers:  # every layer trains, but batch norm keeps its pretrained statistics",
                "    layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)"]
    keep = " and not isinstance(layer, keras.layers.BatchNormalization)" if batchnorm else ""
    lines = ["base.trainable = True",
             "training = False",
             "for layer in base.layers:",
             f"    training = training or layer.name == {_text(trainable_from)}  # this layer and all after it train",
             f"    layer.trainable = training{keep}"]
    if batchnorm:
        lines.insert(0, "# Batch-norm layers stay frozen: they keep their pretrained statistics.")
    return lines


def _head(spec: TransferSpec, classes: str) -> list[str]:
    """``build.attach_head`` as Keras lines, with its layer names."""
    lines = [f"inputs = keras.Input(shape={tuple(spec.input_shape)}, name=\"image\")",
             "x = base(inputs, training=False)  # batch norm runs in inference mode, even when unfrozen"]
    conv = (f"keras.layers.Conv2D({spec.conv_filters}, {spec.conv_kernel}, padding=\"same\", "
            f"activation=\"relu\", name={{}})(x)")
    pool = f"keras.layers.MaxPooling2D({spec.conv_pool}, name={{}})(x)"
    if spec.conv_blocks == 1:
        lines.append("x = " + conv.format('"head_conv_1"') + "  # a new convolutional block")
        if spec.conv_pool > 1:
            lines.append("x = " + pool.format('"head_conv_pool_1"'))
    elif spec.conv_blocks > 1:
        lines.append(f"for block in range(1, {spec.conv_blocks + 1}):  # {spec.conv_blocks} new convolutional blocks")
        lines.append("    x = " + conv.format('f"head_conv_{block}"'))
        if spec.conv_pool > 1:
            lines.append("    x = " + pool.format('f"head_conv_pool_{block}"'))
    if spec.pool_size:
        lines.append(f"x = keras.layers.AveragePooling2D({spec.pool_size}, name=\"head_avg_window\")(x)")
    lines.append({
        "avg": "x = keras.layers.GlobalAveragePooling2D(name=\"head_pool\")(x)",
        "max": "x = keras.layers.GlobalMaxPooling2D(name=\"head_pool\")(x)",
        "flatten": "x = keras.layers.Flatten(name=\"head_pool\")(x)",
    }[spec.pooling])
    if spec.hidden_units:
        lines += [f"x = keras.layers.Dropout({spec.dropout:g}, name=\"head_dropout_1\")(x)",
                  f"x = keras.layers.Dense({spec.hidden_units}, activation=\"relu\", name=\"head_hidden\")(x)"]
    lines += [f"x = keras.layers.Dropout({spec.dropout:g}, name=\"head_dropout\")(x)",
              f"outputs = keras.layers.Dense({classes}, activation=\"softmax\", name=\"head_output\")(x)",
              'model = keras.Model(inputs, outputs, name=f"{base.name}_transfer")']
    return lines


def _base(spec: TransferSpec, row: BackboneSpec, names: _Names, weights, base_file: str) -> Step:
    height, width, _ = spec.input_shape
    if spec.base_model:
        return (f"The trained base of an earlier run (develop-a-model), at its input size, {height}x{width}.",
                [f"earlier = keras.saving.load_model({_text(base_file)})",
                 "base = next(layer for layer in earlier.layers if isinstance(layer, keras.Model))"])
    argument, comment = weights_text(spec.weights if weights == FROM_SPEC else weights)
    shape = tuple(spec.input_shape)
    lines = [f"# {comment}", f"base = {names.constructor}(weights={argument}, include_top=False, input_shape={shape})"]
    if shape != row.default_shape:
        lines += ["# The same base with Keras's other way of changing the input size:",
                  f"# base = {names.constructor}(weights={argument}, include_top=False, "
                  f"input_tensor=keras.Input({shape}))"]
    return f"The pretrained base without its ImageNet top, at {height}x{width}.", lines


def _head_heading(spec: TransferSpec, feature_map: tuple[int, int, int]) -> str:
    height, width, channels = feature_map
    parts = []
    if spec.conv_blocks:
        blocks = "1 convolutional block" if spec.conv_blocks == 1 else f"{spec.conv_blocks} convolutional blocks"
        parts.append(f"{blocks} (to %dx%dx%d)" % head_feature_map(spec, feature_map))
    if spec.pool_size:
        parts.append(f"a {spec.pool_size}x{spec.pool_size} average pooling")
    parts.append({"avg": "global average pooling", "max": "global max pooling", "flatten": "flattening"}[spec.pooling])
    if spec.hidden_units:
        parts.append(f"a hidden layer of {spec.hidden_units}")
    parts.append("dropout and a softmax layer")
    return f"A new head on the base's {height}x{width}x{channels} feature map: {', '.join(parts)}."


def _imports(module: str, *groups: Sequence[str]) -> list[str]:
    names = [name for group in groups for name in group]
    return [f"from keras.applications.{module} import {', '.join(names)}"] if names else []


def download_name(path: str | None) -> str:
    """A stored run's model ("<runs>/<run id>/model.keras") as the Runs page downloads it: "<run id>.keras"."""
    if not path:
        return "earlier_run.keras"
    stored = pathlib.PurePath(path)
    return f"{stored.parent.name}.keras" if stored.name == MODEL_FILE and stored.parent.name else stored.name


def _data(spec: TransferSpec, config: TrainConfig, data_dir: str) -> Step:
    height, width, _ = spec.input_shape
    crop = ", crop_to_aspect_ratio=True" if config.resize_mode == "crop" else ""
    lines = [f"keras.utils.set_random_seed({config.seed})  # the same split, first weights and shuffling each run"]
    if config.validation_fraction > 0:
        lines += ["train_ds, val_ds = keras.utils.image_dataset_from_directory(",
                  f"    {_text(data_dir)}, validation_split={config.validation_fraction:g}, subset=\"both\", "
                  f"seed={config.seed},",
                  f"    image_size=({height}, {width}), batch_size={config.batch_size}{crop})"]
    else:
        lines += ["train_ds = keras.utils.image_dataset_from_directory(",
                  f"    {_text(data_dir)}, seed={config.seed}, image_size=({height}, {width}), "
                  f"batch_size={config.batch_size}{crop})",
                  "val_ds = None  # no images held out"]
    lines.append("class_names = train_ds.class_names")
    if config.augment:
        lines += _AUGMENT.format(seed=config.seed, rotation_seed=config.seed + 1, zoom_seed=config.seed + 2).splitlines()
        lines.append("train_ds = train_ds.map(lambda images, labels: (preprocess_input(augment(images)), labels))")
    else:
        lines.append("train_ds = train_ds.map(lambda images, labels: (preprocess_input(images), labels))")
    if config.validation_fraction > 0:
        lines.append("val_ds = val_ds.map(lambda images, labels: (preprocess_input(images), labels))")
    fitted = "centre-cropped" if config.resize_mode == "crop" else "squashed"
    return (f"Your images: one folder per class ({data_dir}/<class>/<images>), {fitted} to {height}x{width} "
            "and preprocessed as the base expects.", lines)


def _fit(config: TrainConfig, rate: float, epochs: int) -> list[str]:
    optimizer = OPTIMIZER_CODE[config.optimizer].format(rate=_rate(rate))
    lines = [f"model.compile(optimizer={optimizer},",
             "              loss=\"sparse_categorical_crossentropy\", metrics=[\"accuracy\"])"]
    if config.early_stopping and config.validation_fraction > 0:
        lines += [f"stop_early = keras.callbacks.EarlyStopping(\"val_loss\", patience={config.early_stopping}, "
                  "restore_best_weights=True)",
                  f"model.fit(train_ds, validation_data=val_ds, epochs={epochs}, callbacks=[stop_early])"]
    else:
        lines.append(f"model.fit(train_ds, validation_data=val_ds, epochs={epochs})")
    return lines


def transfer_program(
    spec: TransferSpec,
    config: TrainConfig | None = None,
    *,
    weights: str | os.PathLike | None = FROM_SPEC,
    data_dir: str = "my_images",
    base_file: str | None = None,
) -> str:
    """The Keras program that builds ``spec``'s model (and, with ``config``, trains and saves it).

    Without ``config`` (the Build page) the program builds the model and prints its
    summary. With it (the Train page) it first reads the images from ``data_dir``
    (one folder per class) and gives the head one output per class folder, then
    compiles and fits with the config's optimizer, learning rate, epochs, batch
    size, validation share, augmentation and early stopping, runs the fine-tuning
    phase (unfreeze from ``fine_tune_from``, recompile at the low rate, fit), and
    saves the model. Keras's own ``image_dataset_from_directory`` splits and resizes
    the images (its split is not stratified, its resizing is TensorFlow's bilinear).

    Args:
        spec: the model, as the Build page has it.
        config: how to train, as the Train page has it; None for the model only.
        weights: the base's ``weights=`` in the program: by default the spec's
            ("imagenet", None, or ``WEIGHTS_FILE`` standing for a file). Tests
            pass None to run offline; the freezing still follows the spec (batch
            norm stays frozen in a pretrained base, as ``build_transfer_model`` does).
        data_dir: the folder of class folders the program reads.
        base_file: the saved earlier model a develop-a-model spec reuses; by default
            the name the Runs page downloads it as ("<run id>.keras").

    Raises:
        ShapeError, ConfigError, BudgetError: a spec or config that cannot be built
            (``check_transfer_spec``, ``TrainConfig.check``).
    """
    check = check_transfer_spec(spec)
    if config is not None:
        config.check()
    row = get_backbone(spec.backbone)
    names = _names(row)
    facts = _facts(row, False)
    batchnorm = spec.pretrained and facts.batchnorm
    fine_tune = config is not None and bool(config.fine_tune_from) and config.fine_tune_epochs > 0
    referenced = {spec.trainable_from, config.fine_tune_from if fine_tune else None}
    height, width, _ = spec.input_shape
    steps = [_data(spec, config, data_dir)] if config is not None else []
    steps.append(_base(spec, row, names, weights, base_file or download_name(spec.base_model)))
    what_trains = ("the whole base is frozen" if spec.trainable_from is None else
                   "every layer of the base trains" if spec.trainable_from == ALL_LAYERS else
                   f"{spec.trainable_from} and the layers after it train")
    steps.append((f"Which layers train: {what_trains}.", _freezing(spec.trainable_from, batchnorm=batchnorm)))
    steps.append((_head_heading(spec, check.feature_map),
                  [*_head(spec, "len(class_names)" if config is not None else str(spec.num_classes)),
                   "model.summary(show_trainable=True)"]))
    if config is not None:
        steps.append((f"Train at learning rate {_rate(config.learning_rate)} for {config.epochs} "
                       f"epoch{'s' if config.epochs != 1 else ''}.",
                       _fit(config, config.learning_rate, config.epochs)))
        if fine_tune:
            where = ("every layer of the base" if config.fine_tune_from == ALL_LAYERS
                     else f"the base from {config.fine_tune_from}")
            steps.append((f"Fine-tune: unfreeze {where} and train on at a low learning rate "
                           "(compile again so the change takes effect).",
                           [*_freezing(config.fine_tune_from, batchnorm=batchnorm),
                            *_fit(config, config.fine_tune_learning_rate, config.fine_tune_epochs)]))
        steps.append(("Save the trained model.", ['model.save(f"{model.name}.keras")']))
    page = "Train" if config is not None else "Build"
    return _program(f"{spec.backbone} at {height}x{width} with a new head for your classes (Transfer Lab, "
                    f"{page} page).",
                    ["import keras", *_imports(names.module, [] if spec.base_model else [names.constructor],
                                               ["preprocess_input"] if config is not None else [])],
                    bool(referenced & facts.keras_named), steps)


def _image_reader(mode: str) -> list[str]:
    """``load_image`` then ``fit_image`` (tlcore.data.images) in PIL: the page's pixels exactly.

    The centre crop is PIL's ``ImageOps.fit``, whose box may start on a half pixel
    (when the sides differ by an odd number); ``keras.utils.load_img``'s
    ``keep_aspect_ratio`` crops on whole pixels and gives other numbers.
    """
    fit = ("return ImageOps.fit(image, size[::-1], Image.Resampling.BILINEAR)  # centre crop, bilinear resize"
           if mode == "crop" else
           "return image.resize(size[::-1], Image.Resampling.BILINEAR)  # the whole image, stretched")
    return ["def read_image(path, size):",
            '    """An image file as the dashboard reads it, fitted to size (height, width)."""',
            '    image = ImageOps.exif_transpose(Image.open(path)).convert("RGBA")  # upright, as photographed',
            '    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)  # transparent: white',
            '    image = image.convert("RGB")',
            f"    {fit}",
            ""]


def prediction_program(
    backbone: str | BackboneSpec,
    *,
    weights: str | os.PathLike | None = "imagenet",
    model_file: str | None = None,
    class_names: Sequence[str] | None = None,
    mode: str = "crop",
    k: int = 5,
    image: str = "my_image.jpg",
) -> str:
    """The Keras program that classifies one image, as the Predict page does.

    Args:
        backbone: whose network (or, with ``model_file``, whose preprocessing).
        weights: the full network's weights: "imagenet", None or a file (shown
            as ``WEIGHTS_FILE``). Not used with ``model_file``.
        model_file: a saved ``.keras`` classifier (a trained run, an upload) to
            use instead of the ImageNet network.
        class_names: the saved model's class names; "class 0", ... when None.
        mode: "crop" (centre crop) or "squash".
        k: how many classes to print.
        image: the image file the program reads.

    Raises:
        ConfigError: a ``mode`` or ``k`` outside what is accepted.
    """
    row = get_backbone(backbone)
    names = _names(row)
    _check_mode(mode)
    if not 1 <= k <= 1000:
        raise ConfigError(f"A prediction shows from 1 to 1,000 classes. Received: k={k}")
    fitted = "centre crop" if mode == "crop" else "squash"
    image_step = (f"The image as the network sees it ({fitted} to its input size).",
                  [*_image_reader(mode),
                   f"path = {_text(image)}",
                   "image = read_image(path, model.input_shape[1:3])",
                   "batch = preprocess_input(np.expand_dims(keras.utils.img_to_array(image), 0))"])
    if model_file is None:
        argument, comment = weights_text(weights)
        steps = [(f"The full network, with its ImageNet classifier ({row.default_size}x{row.default_size} inputs).",
                  [f"model = {names.constructor}(weights={argument})  # {comment}"]),
                 image_step,
                 (f"The {k} most probable of the 1,000 ImageNet classes.",
                  ["probabilities = model.predict(batch, verbose=0)",
                   f"for rank, (_, name, probability) in enumerate(decode_predictions(probabilities, top={k})[0], 1):",
                   "    print(f\"{rank}. {name}: {probability:.2%}\")"])]
        return _program(f"Classify an image with {row.name}'s ImageNet classifier (Transfer Lab, Predict page).",
                        ["import keras", "import numpy as np", f"from keras.applications.{names.module} import "
                         f"{names.constructor}, decode_predictions, preprocess_input", "from PIL import Image, ImageOps"],
                        False, steps)
    labels = (f"class_names = {_texts(class_names)}" if class_names else
              "class_names = [f\"class {i}\" for i in range(model.output_shape[-1])]")
    steps = [(f"The saved model and its classes (it expects {row.name}'s preprocessing).",
              [f"model = keras.saving.load_model({_text(model_file)})", labels]),
             image_step,
             (f"The {k} most probable classes (equal ones lowest class first).",
              ["probabilities = model.predict(batch, verbose=0)[0]",
               f"for rank, i in enumerate(np.argsort(-probabilities, kind=\"stable\")[:{k}], 1):",
               "    print(f\"{rank}. {class_names[i]}: {probabilities[i]:.2%}\")"])]
    return _program(f"Classify an image with a saved model built on {row.name} (Transfer Lab, Predict page).",
                    ["import keras", "import numpy as np",
                     f"from keras.applications.{names.module} import preprocess_input",
                     "from PIL import Image, ImageOps"], False, steps)


def feature_program(
    backbone: str | BackboneSpec,
    layer: str | None = None,
    *,
    weights: str | os.PathLike | None = "imagenet",
    images: Sequence[str] = ("my_image.jpg",),
    mode: str = "crop",
) -> str:
    """The Keras program that turns images into feature vectors, as the Features page does.

    The full network is cut after ``layer`` (by default its penultimate layer, as
    ``feature_extractor`` cuts it); each image's output is flattened into one row
    and saved as ``.npy``; with three images or more the rows are also placed on a
    2-D map by their two main directions (PCA, as ``features.project_2d``).

    Raises:
        ConfigError: a layer the network does not have, or an unknown ``mode``.
    """
    row = get_backbone(backbone)
    names = _names(row)
    _check_mode(mode)
    with shapes_only():
        layer_names = [l.name for l in build_architecture(row, include_top=True).layers]
    layer = layer or row.feature_layer or layer_names[-2]
    if layer not in layer_names:
        raise ConfigError(
            f"Feature layer must be a layer of {row.name} (e.g. {layer_names[-2]!r}). Received: layer={layer!r}")
    argument, comment = weights_text(weights)
    steps = [(f"The full network, cut after {layer}: the layers after it (the ImageNet output) are left out.",
              [f"network = {names.constructor}(weights={argument})  # {comment}",
               f"extractor = keras.Model(network.input, network.get_layer({_text(layer)}).output,",
               f"                        name={_text(row.name + '_' + layer + '_features')})"]),
             (f"The images as the network sees them ({'centre crop' if mode == 'crop' else 'squash'} "
              "to its input size).",
              [*_image_reader(mode),
               f"paths = {_texts(images)}",
               "images = [read_image(path, extractor.input_shape[1:3]) for path in paths]",
               "pixels = np.stack([keras.utils.img_to_array(image) for image in images])"]),
             ("One feature vector per image (spatial outputs flattened), saved.",
              ["features = extractor.predict(preprocess_input(pixels), verbose=0).reshape(len(paths), -1)",
               f"np.save({_text('features_' + layer + '.npy')}, features)",
               "print(features.shape)"])]
    if len(images) >= 3:
        steps.append(("A 2-D map of the images: their vectors along the two main directions (PCA).",
                      ["centred = features - features.mean(axis=0)",
                       "_, _, directions = np.linalg.svd(centred, full_matrices=False)",
                       "xy = centred @ directions[:2].T",
                       "for path, (x, y) in zip(paths, xy):",
                       "    print(f\"{path}: ({x:.2f}, {y:.2f})\")"]))
    return _program(f"Feature vectors from {row.name} cut after {layer} (Transfer Lab, Features page).",
                    ["import keras", "import numpy as np",
                     f"from keras.applications.{names.module} import {names.constructor}, preprocess_input",
                     "from PIL import Image, ImageOps"],
                    layer in _facts(row, True).keras_named, steps)


def layers_program(
    backbone: str | BackboneSpec, include_top: bool = True, input_size: int | None = None,
    pooling: str | None = None,
) -> str:
    """The Keras program that lists a network's layers with and without its top, as the Layers page does.

    Architecture only (``weights=None``, nothing downloaded): the full network,
    the one ``include_top=False`` leaves at ``input_size`` with ``pooling``, the
    summary of the one shown (``include_top``), and the layers the top takes away.

    Raises:
        ShapeError: an input size the network cannot take without its top.
        ConfigError: a pooling other than None, "avg" or "max".
    """
    row = get_backbone(backbone)
    names = _names(row)
    if pooling not in (None, "avg", "max"):
        raise ConfigError(f"Pooling must be one of (None, 'avg', 'max'). Received: pooling={pooling!r}")
    size = input_size or row.default_size
    check_input_shape(row, (size, size, 3))
    fresh = bool(_facts(row, True).keras_named - {"input_layer"})
    full = [f"full = {names.constructor}(weights=None)  # with the ImageNet top: "
            f"{row.default_size}x{row.default_size} inputs"]
    cut = [f"base = {names.constructor}(weights=None, include_top=False, input_shape={(size, size, 3)}"
           + (f", pooling={_text(pooling)})" if pooling else ")")]
    again = (["keras.backend.clear_session()  # start the layer numbers again, so both networks share names"]
             if fresh else [])
    shown, other = (full, cut) if include_top else (cut, full)
    steps = [("The architectures only (weights=None; weights=\"imagenet\" gives the same layers).",
              [*shown, *again, *other]),
             (f"The layers of the network {'with' if include_top else 'without'} its top.",
              [f"{'full' if include_top else 'base'}.summary(show_trainable=True)"]),
             ("What include_top=False takes away.",
              ["kept = {layer.name for layer in base.layers}",
               "print(\"Removed:\", [layer.name for layer in full.layers[1:] if layer.name not in kept])"])]
    return _program(f"{row.name}'s layers with and without its ImageNet top (Transfer Lab, Layers page).",
                    ["import keras", f"from keras.applications.{names.module} import {names.constructor}"],
                    fresh, steps)


def _check_mode(mode: str) -> None:
    if mode not in ("crop", "squash"):
        raise ConfigError(f"Resize mode must be one of ('crop', 'squash'). Received: mode={mode!r}")


def as_notebook(program: str) -> bytes:
    """A Jupyter notebook (nbformat 4, validated) of a program from this module.

    The program's docstring becomes a Markdown title; the imports, then each
    numbered step ("# 1. ..."), become one code cell each, in order, so running
    every cell runs the program.
    """
    import nbformat  # only needed here: the library imports without it

    lines = program.split("\n")  # never str.splitlines: U+2028, U+0085, ... are not line ends in Python
    title = ""
    if lines and lines[0].startswith('"""') and lines[0].endswith('"""') and len(lines[0]) > 6:
        title, lines = lines[0][3:-3], lines[1:]
    cells, current = [], []
    for line in lines:
        if _STEP.match(line) and current:
            cells.append(current)
            current = []
        current.append(line)
    cells.append(current)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    if title:
        notebook.cells.append(nbformat.v4.new_markdown_cell(f"# {message_text(title)}"))
    for cell in cells:
        source = "\n".join(cell).strip("\n")
        if source:
            notebook.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.validate(notebook)
    return nbformat.writes(notebook).encode()


__all__ = ["FROM_SPEC", "OPTIMIZER_CODE", "WEIGHTS_FILE", "as_notebook", "feature_program", "layers_program",
           "prediction_program", "transfer_program"]
