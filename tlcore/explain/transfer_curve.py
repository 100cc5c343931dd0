"""The transfer curve: a linear probe's validation accuracy at the end of every block of a network.

Early layers learn general features (edges, colours), late ones the source task's; which
depth suits *these* images is measured, not guessed. For one backbone (its weights, input
size, or a develop-a-model trained base) and one dataset:

1. the taps are the block ends the network diagram draws (``graph.block_ends``: VGG16's
   ``block1_pool`` ... ``block5_pool``, and ``fc1``, ``fc2`` when the top is kept);
2. one model with one output (every tap globally averaged, concatenated) runs over the
   images in ONE streaming pass, and each tap's pooled vectors go batch by batch into
   its own feature file, keyed as ``training.feature_cache`` keys a frozen prefix, so a
   later curve (or a run whose frozen prefix is that tap, pooled) reads it again. Memory
   follows the batch and the pooled vectors, never all taps' feature maps at once;
3. a linear probe (``training.probes``) per tap, on the same seeded split, as parallel
   Ray tasks from the app or one after another in a notebook (``use_ray``);
4. the curve is kept under ``<data_dir>/curves/<key>.json``: the same key never runs twice.

This module lives in the explain wing because the taps are the diagram's blocks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from tlcore.core.atomic import atomic_write_text
from tlcore.core.errors import BudgetError, ConfigError, DatasetError
from tlcore.core.settings import load_settings
from tlcore.core.storage import check_room
from tlcore.data.datasets import MAX_VALIDATION_FRACTION, ImageDataset
from tlcore.data.images import ResizeMode
from tlcore.data.pipeline import image_batches
from tlcore.explain.code import download_name, weights_text
from tlcore.explain.graph import block_ends
from tlcore.inference.forward import compiled_forward
from tlcore.models.backbone import load_backbone
from tlcore.models.build import check_transfer_spec, load_saved_base, model_cost, trainable_from_choices
from tlcore.models.cost import FLOAT_BYTES, GB, measure_model, own_calls
from tlcore.models.scopes import shapes_only
from tlcore.models.spec import TransferSpec
from tlcore.models.summary import layer_table
from tlcore.models.zoo import UNTRAINED_SEED, build_architecture, get_backbone
from tlcore.training.feature_cache import EXTRACT_BATCH, FeatureCache, cache_key
from tlcore.training.memory import PROCESS_OVERHEAD_BYTES
from tlcore.training.parallel import run_calls
from tlcore.training.probes import ProbeBudget, ProbeScore, fit_probe_file

CURVE_VERSION = 3  # 2: a probe's epochs in one fit call (other shuffles than 1); 3: taps at graph cuts
"""Part of every curve's key: a change to how curves are measured gives new keys."""
EXTRACT, PROBE = "extracting", "probing"
"""The stages ``on_progress`` reports."""


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    """One tap of the curve: its depth, its probe's score, and whether its features were on disk."""

    depth: int
    tap: str
    features: int
    accuracy: float
    loss: float
    train_accuracy: float
    cached: bool


@dataclasses.dataclass(frozen=True)
class TransferCurve:
    """A measured transfer curve, as plain values (stored as JSON, drawn by the Build page).

    Attributes:
        key: what it was measured from (equal keys, equal curves).
        backbone, input_size, weights, base_model, include_top: the network.
        dataset: the dataset's name; images: how many.
        chance: the share of the largest class among the validation images.
        points: one per tap, in depth order.
        train_from: the ``trainable_from`` the peak suggests (None: keep the whole base frozen).
        extract_seconds, probe_seconds: the one streaming pass, and the probes.
        validation_images: how many images the probes were scored on (0: not recorded, a curve kept before).
        validation_fraction, seed, mode, budget: the split, the fitting of images to the input and the probes'
            training, as measured (a curve kept before they were recorded reads the defaults).
    """

    key: str
    backbone: str
    input_size: int
    weights: str | None
    base_model: str | None
    include_top: bool
    dataset: str
    images: int
    chance: float
    points: tuple[CurvePoint, ...]
    train_from: str | None
    extract_seconds: float
    probe_seconds: float
    validation_images: int = 0
    validation_fraction: float = 0.2
    seed: int = 0
    mode: str = "crop"
    budget: ProbeBudget = ProbeBudget()

    @property
    def peak(self) -> CurvePoint:
        """The tap with the best validation accuracy (the deepest of equals: it leaves less to train)."""
        return max(reversed(self.points), key=lambda point: point.accuracy)

    def margin(self, accuracy: float) -> float:
        """Twice the standard error of an accuracy measured on the validation images (about 95% of the
        accuracies another draw of as many images would give lie within it); NaN when their count is unknown."""
        n = self.validation_images
        return 2 * math.sqrt(accuracy * (1 - accuracy) / n) if n else math.nan

    @property
    def clear(self) -> bool:
        """Whether the peak beats chance by more than luck reaches on the validation images (``margin``); True when
        their count is unknown."""
        return not self.validation_images or self.peak.accuracy - self.chance > self.margin(self.chance)

    def recommendation(self) -> str:
        """The curve in words: where the probe peaks, how sure that is, and where to start training.

        With few validation images a peak may be luck: one within the margin of chance (``margin``) is said to be
        no clear winner (on shuffled labels a 24-image curve "peaked" at 42% against 25% by chance)."""
        peak, n = self.peak, self.validation_images
        where = f"the probe peaks at {peak.tap} ({peak.accuracy:.0%} against {self.chance:.0%} by chance"
        if not self.clear:
            return (f"{where}), but on {n} validation images no tap clearly beats chance (within "
                    f"{self.margin(self.chance) * 100:.0f} points of it, as luck may reach): measure on more images "
                    "before choosing a cut")
        if n:
            where += f"; give or take {self.margin(peak.accuracy) * 100:.0f} points on {n} validation images"
        if self.train_from is None:
            return f"{where}): keep the whole base frozen and train a new head on it"
        return f"{where}): train from {self.train_from}"

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(point) for point in self.points])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TransferCurve:
        values = json.loads(text)
        values["points"] = tuple(CurvePoint(**point) for point in values["points"])
        if "budget" in values:
            values["budget"] = ProbeBudget(**values["budget"])
        return cls(**values)


def graph_cuts(network: keras.Model) -> list[str]:
    """The layers every path from ``network``'s input to its output goes through, in order.

    Only there is the network cut in two: the layers after a cut read nothing but what it gives,
    so its output is all a new head on it would see, and the first layer with weights after it
    is where training from there starts. A residual branch's last layer before its ``Add``
    (Xception's ``block2_pool``) or one branch's concatenation (InceptionV3's ``mixed9_0``) is none.
    """
    position = {id(layer): index for index, layer in enumerate(network.layers)}
    earliest = [len(network.layers)] * len(network.layers)  # the earliest layer each layer reads from
    for index, layer in enumerate(network.layers):
        for node in own_calls(network, layer):
            for tensor in node.input_tensors:
                source = position.get(id(tensor._keras_history.operation))
                if source is not None:
                    earliest[index] = min(earliest[index], source)
    cuts, reads_from_before = [], len(network.layers)
    for index in range(len(network.layers) - 1, -1, -1):  # a cut: no later layer reads from before it
        if reads_from_before >= index:
            cuts.append(network.layers[index].name)
        reads_from_before = min(reads_from_before, earliest[index])
    return cuts[::-1]


def curve_taps(network: keras.Model, *, include_top: bool) -> list[str]:
    """The layers a curve taps: each block's end, or the first graph cut after it where the block ends
    inside a branch (``graph_cuts``), but a ``Flatten`` and the ImageNet classifier."""
    table = layer_table(network)
    types = dict(zip(table["name"], table["type"]))
    names = [layer.name for layer in network.layers]
    cuts = graph_cuts(network)
    taps = []
    for end in block_ends(table):
        cut = next((name for name in cuts if names.index(name) >= names.index(end)), None)
        if cut is not None and types.get(cut) != "Flatten" and cut not in taps:
            taps.append(cut)
    if include_top and taps and taps[-1] == network.layers[-1].name:
        taps = taps[:-1]
    return taps


def _tapped(network: keras.Model, tap: str) -> keras.Model:
    """The network up to ``tap``, pooled to a vector, as a frozen prefix is keyed.

    Built as ``train.frozen_split`` builds a frozen base's prefix (an input, the base up to
    ``tap`` as a nested model, a global average), so the deepest tap of a base without its
    top has the key of a run's features on that base with an average-pooling head.
    """
    inner = keras.Model(network.input, network.get_layer(tap).output, name=f"to_{tap}")
    inputs = keras.Input(network.input.shape[1:], name="image")
    x = inner(inputs)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name=f"pool_{tap}")(x)
    elif len(x.shape) != 2:
        raise ConfigError(f"A tap must give a feature map or a vector. Received: {tap} with shape {x.shape}")
    return keras.Model(inputs, x, name=f"tap_{tap}")


def _all_taps(network: keras.Model, taps: list[str]) -> keras.Model:
    """One model with one output: every tap's pooled vector, side by side (one pass computes all)."""
    pooled = []
    for tap in taps:
        x = network.get_layer(tap).output
        pooled.append(keras.layers.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x)
    output = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
    return keras.Model(network.input, output, name="all_taps")


def check_curve_budget(backbone: str, size: int, classes: int, *, include_top: bool = False) -> int:
    """Refuse a curve whose network is over this server's budgets before anything is built, and say how many
    images its extraction may run at once.

    The base at ``size`` is checked as a frozen transfer model (``TL_MAX_MODEL_PARAMS``,
    ``TL_MAX_ACTIVATION_MB``, an input it cannot take); its weights (the ImageNet top's too with
    ``include_top``), the process and each image's activations must fit ``TL_JOB_MEMORY_GB``: the batch is
    ``EXTRACT_BATCH``, or as many images as fit (memory follows the batch; the features are the same).

    Returns:
        Images per extraction batch, 1 to ``EXTRACT_BATCH``.

    Raises:
        BudgetError: over a model budget, or one image at a time over ``TL_JOB_MEMORY_GB``.
    """
    frozen = TransferSpec(backbone=backbone, input_shape=(size, size, 3), weights=None, num_classes=max(2, classes))
    check_transfer_spec(frozen)
    cost = model_cost(frozen)
    params = cost.params
    if include_top:
        with shapes_only():
            params = measure_model(build_architecture(backbone, include_top=True)).params
    limit = load_settings().job_memory_gb
    fixed = params * FLOAT_BYTES + PROCESS_OVERHEAD_BYTES
    fits = int((limit * GB - fixed) // max(cost.activation_bytes, 1))
    if fits < 1:
        raise BudgetError(
            f"A transfer curve's extraction may need at most {limit:g} GB of memory on this server "
            f"(TL_JOB_MEMORY_GB), even one image at a time. Received: about {(fixed + cost.activation_bytes) / GB:,.1f} "
            f"GB for {backbone} at {size}x{size}; choose a smaller input")
    return min(EXTRACT_BATCH, fits)


def _load_network(backbone: str, *, weights: str | None, input_size: int | None, include_top: bool,
                  base_model: str | None) -> keras.Model:
    row = get_backbone(backbone)
    size = input_size or row.default_size
    if base_model:
        if include_top:
            raise ConfigError("A develop-a-model base has no ImageNet top to keep. Received: include_top=True")
        return load_saved_base(base_model, TransferSpec(backbone=row.name, input_shape=(size, size, 3),
                                                        weights=None, base_model=base_model))
    # untrained: the same network in every call and process (as on the pages), so its curve keeps its key
    return load_backbone(row.name, weights=weights, include_top=include_top, input_shape=(size, size, 3),
                         seed=UNTRAINED_SEED)


def _train_from(network: keras.Model, backbone: str, peak: str) -> str | None:
    """The first layer with weights after ``peak`` in the base without its top; None past the base's end."""
    choices = set(trainable_from_choices(backbone))
    names = [layer.name for layer in network.layers]
    if peak not in names:
        return None
    return next((name for name in names[names.index(peak) + 1:] if name in choices), None)


def _curve_key(tap_keys: list[str], split: tuple[np.ndarray, np.ndarray], budget: ProbeBudget) -> str:
    described = {"version": CURVE_VERSION, "taps": tap_keys, "budget": dataclasses.asdict(budget),
                 "split": hashlib.sha256(np.concatenate(split).astype(np.int64).tobytes()).hexdigest(),
                 "validation": int(len(split[1]))}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def curves_folder() -> Path:
    """Where curves are kept: ``TL_DATA_DIR``/curves."""
    return load_settings().data_dir / "curves"


def extract_taps(network: keras.Model, taps: list[str], dataset: ImageDataset, *, backbone: str,
                 mode: ResizeMode, cache: FeatureCache, batch_size: int = EXTRACT_BATCH,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, str], set[str]]:
    """Every tap's pooled features for ``dataset`` in the cache, computed in at most one streaming pass of
    ``batch_size`` images at a time.

    Returns:
        (tap -> its cache key, the taps whose files were already there).

    Raises:
        StorageError: the missing files would take the data folder past ``TL_MAX_DATA_GB``.
    """
    keys = {tap: cache_key(_tapped(network, tap), dataset, backbone=backbone, mode=mode) for tap in taps}
    found = {tap for tap in taps if (rows := cache.load(keys[tap])) is not None and len(rows) == len(dataset)}
    missing = [tap for tap in taps if tap not in found]
    if not missing:
        return keys, found
    model = _all_taps(network, missing)
    widths = [int(_tapped(network, tap).output.shape[-1]) for tap in missing]
    check_room(len(dataset) * sum(widths) * 4, what=f"the pooled features of {len(missing)} taps "
                                                     f"for {len(dataset):,} images")
    partials = [cache.partial(keys[tap]) for tap in missing]
    try:
        files = [np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(dataset), width))
                 for path, width in zip(partials, widths)]
        bounds = np.cumsum([0, *widths])
        size = tuple(int(d) for d in network.input.shape[1:3])
        forward = compiled_forward(model)
        done = 0
        for x, _ in image_batches(dataset, np.arange(len(dataset)), size, preprocess=get_backbone(backbone).preprocess,
                                  batch_size=batch_size, mode=mode):
            output = forward(x.numpy())
            for file, start, end in zip(files, bounds[:-1], bounds[1:]):
                file[done:done + len(output)] = output[:, start:end]
            done += len(output)
            if on_progress:
                on_progress(done, len(dataset))
        for file in files:
            file.flush()
        del files
        for tap, partial, width in zip(missing, partials, widths):
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, cache.path(keys[tap]))
            atomic_write_text(cache.root / f"{keys[tap]}.json", json.dumps({
                "backbone": backbone, "dataset": dataset.name, "dataset_digest": dataset.digest,
                "images": len(dataset), "shape": [width], "precision": "float32", "tap": tap,
                "created": time.time()}, indent=2))
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)
    return keys, found


def transfer_curve(
    backbone: str,
    dataset: ImageDataset,
    *,
    weights: str | None = "imagenet",
    input_size: int | None = None,
    include_top: bool = False,
    base_model: str | os.PathLike | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
    mode: ResizeMode = "crop",
    budget: ProbeBudget | None = None,
    cache: FeatureCache | None = None,
    folder: str | os.PathLike | None = None,
    use_ray: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> TransferCurve:
    """Measure how well a linear probe separates ``dataset``'s classes at the end of every block.

    Args:
        backbone: a ``BACKBONES`` name.
        dataset: labelled images (at least 2 a class, so each class is in both parts of the split).
        weights: "imagenet", None (untrained, drawn from ``UNTRAINED_SEED``: the same baseline every
            time) or a weights file.
        input_size: the square input side; the backbone's default when None.
        include_top: keep the ImageNet top, so ``fc1``/``fc2`` (VGG) are tapped too.
        base_model: a saved transfer model (develop-a-model) whose trained base is measured instead.
        validation_fraction, seed: the split (stratified, seeded), the same for every probe.
        mode: how images are fitted to the input ("crop" or "squash").
        budget: how each probe trains (``ProbeBudget``; seeded with ``seed`` when None).
        cache: where the feature files go (the data folder's ``features`` by default).
        folder: where curves are kept (``curves_folder()`` by default).
        use_ray: run the probes as parallel Ray tasks (the app); False runs them here in order.
        on_progress: called with (stage, done, total): ``EXTRACT`` per batch, ``PROBE`` per probe.

    Returns:
        The curve; a curve with the same key found in ``folder`` is returned as it was stored.

    Raises:
        ConfigError, ShapeError, WeightsError, ModelFileError: a network that cannot be built.
        BudgetError: a network or an extraction over a budget of this server (``check_curve_budget``).
        DatasetError: a class with fewer than 2 images, or a split outside 0.05 to 0.9.
        StorageError: the feature files would not fit ``TL_MAX_DATA_GB``.
    """
    budget = budget or ProbeBudget(seed=seed)
    budget.check()
    if not 0.05 <= validation_fraction <= MAX_VALIDATION_FRACTION:
        raise DatasetError(f"The probes' validation share must be from 0.05 to {MAX_VALIDATION_FRACTION}. "
                           f"Received: {validation_fraction}")
    small = {name: count for name, count in dataset.counts.items() if count < 2}
    if small:
        raise DatasetError(f"A transfer curve needs at least 2 images of every class (one to fit, one to check). "
                           f"Received: {small}")
    row = get_backbone(backbone)
    batch = check_curve_budget(row.name, input_size or row.default_size, len(dataset.class_names),
                               include_top=include_top)
    cache = cache or FeatureCache(load_settings().data_dir / "features")
    folder = Path(folder) if folder is not None else curves_folder()
    base_model = str(base_model) if base_model else None
    network = _load_network(row.name, weights=None if base_model else weights, input_size=input_size,
                            include_top=include_top, base_model=base_model)
    taps = curve_taps(network, include_top=include_top)
    split = dataset.split(validation_fraction, seed=seed)
    started = time.perf_counter()
    keys, found = extract_taps(network, taps, dataset, backbone=row.name, mode=mode, cache=cache, batch_size=batch,
                               on_progress=(lambda done, total: on_progress(EXTRACT, done, total))
                               if on_progress else None)
    extract_seconds = time.perf_counter() - started
    key = _curve_key([keys[tap] for tap in taps], split, budget)
    stored = folder / f"{key}.json"
    if stored.is_file():
        return TransferCurve.from_json(stored.read_text())
    labels = np.asarray(dataset.labels, dtype=np.int64)
    calls = [dict(path=str(cache.path(keys[tap])), labels=labels, train_idx=split[0], val_idx=split[1],
                  classes=len(dataset.class_names), tap=tap, budget=budget) for tap in taps]
    started, finished = time.perf_counter(), []

    def probed(index: int, _: ProbeScore) -> None:
        finished.append(index)
        if on_progress:
            on_progress(PROBE, len(finished), len(calls))

    scores: list[ProbeScore] = run_calls(fit_probe_file, calls, use_ray=use_ray, on_done=probed)
    probe_seconds = time.perf_counter() - started
    points = tuple(CurvePoint(depth, score.tap, score.features, score.accuracy, score.loss, score.train_accuracy,
                              score.tap in found) for depth, score in enumerate(scores, start=1))
    peak = max(reversed(points), key=lambda point: point.accuracy).tap
    counts = np.bincount(labels[split[1]], minlength=len(dataset.class_names))
    curve = TransferCurve(key, row.name, int(network.input.shape[1]), weights if not base_model else None,
                          base_model, include_top, dataset.name, len(dataset), float(counts.max() / counts.sum()),
                          points, _train_from(network, row.name, peak), extract_seconds, probe_seconds,
                          int(len(split[1])), validation_fraction, seed, mode, budget)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stored, curve.to_json())
    return curve


def stored_curve(key: str, folder: str | os.PathLike | None = None) -> TransferCurve | None:
    """The curve kept under ``key`` (a link's value: anything else than 32 hex digits finds nothing)."""
    if not isinstance(key, str) or len(key) != 32 or any(ch not in "0123456789abcdef" for ch in key):
        return None
    path = (Path(folder) if folder is not None else curves_folder()) / f"{key}.json"
    try:
        return TransferCurve.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def probe_program(curve: TransferCurve) -> str:
    """The curve's measurement as a plain Keras 3 program: every block end pooled, one pass, a probe per tap."""
    weights = weights_text(curve.weights)[0]  # files by the names their downloads have, never a server path
    network = (f"keras.models.load_model({download_name(curve.base_model)!r}).layers[1]  # the trained base of a run"
               if curve.base_model else
               f"keras.applications.{curve.backbone}(weights={weights}, include_top={curve.include_top}, "
               f"input_shape=({curve.input_size}, {curve.input_size}, 3))")
    taps = [point.tap for point in curve.points]
    module = get_backbone(curve.backbone).preprocess.__module__.rsplit(".", 1)[-1]
    crop, budget = ", crop_to_aspect_ratio=True" if curve.mode == "crop" else "", curve.budget
    return f'''"""The transfer curve of {curve.backbone} at {curve.input_size}x{curve.input_size}: a linear probe per block."""

import keras
import numpy as np

network = {network}
taps = {taps!r}

# one model, one pass: every tap's output, globally averaged, side by side
pooled = [keras.layers.GlobalAveragePooling2D()(network.get_layer(t).output)
          if len(network.get_layer(t).output.shape) == 4 else network.get_layer(t).output for t in taps]
all_taps = keras.Model(network.input, keras.layers.Concatenate()(pooled))

images = keras.utils.image_dataset_from_directory(
    "my_images", image_size=({curve.input_size}, {curve.input_size}){crop}, shuffle=False, batch_size=32)
features, labels = [], []
for x, y in images:
    features.append(all_taps.predict(keras.applications.{module}.preprocess_input(x), verbose=0))
    labels.append(y.numpy())
features, labels = np.concatenate(features), np.concatenate(labels)
widths = np.cumsum([0] + [int(p.shape[-1]) for p in pooled])

# drawn by the curve's rule: each class keeps its share ({curve.validation_fraction:g}) in both parts, seed {curve.seed}
# (the same rule, not the same images: folders list files in another order; and Transfer Lab keeps exact
# copies of an image on one side, where here each file is drawn alone)
rng = np.random.default_rng({curve.seed})
train, val = [], []
for label in range(len(images.class_names)):
    members = rng.permutation(np.flatnonzero(labels == label))
    take = min(max(round(len(members) * {curve.validation_fraction:g}), 1), len(members) - 1)
    val.extend(members[:take])
    train.extend(members[take:])
train, val = np.sort(train), np.sort(val)
print(len(val), "validation images")

for tap, start, end in zip(taps, widths[:-1], widths[1:]):
    x = features[:, start:end]
    keras.utils.set_random_seed({budget.seed})  # every probe starts alike
    probe = keras.Sequential([  # logistic regression on the standardised vector
        keras.Input((end - start,)),
        keras.layers.Normalization(),
        keras.layers.Dense(len(images.class_names), activation="softmax"),
    ])
    probe.layers[0].adapt(x[train])
    probe.compile(keras.optimizers.Adam({budget.learning_rate:g}), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    probe.fit(x[train], labels[train], epochs={budget.epochs}, batch_size={budget.batch_size}, verbose=0)
    print(tap, probe.evaluate(x[val], labels[val], verbose=0)[1])
'''
