"""A dataset as a map: its images' feature vectors in 2-D, and how well its classes separate.

Before training anything, a person can see whether a network's features already
tell the classes apart: each image becomes one point (the two main directions of
the vectors, ``project_2d``), coloured by its class, and one number says how often
an image's nearest other image, in the full feature space, has its class.

Bounded: at most ``TL_MAX_MAP_IMAGES`` images (a stratified, seeded subset of a
larger dataset) and ``TL_MAX_MAP_FEATURE_MB`` of vectors, both checked before any
image is read. Images are read from their stored files one batch at a time
(``extract_features``); only the vectors are kept.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import keras
import numpy as np
import pandas as pd

from tlcore.core.errors import BudgetError, ConfigError, DatasetError
from tlcore.core.settings import Settings, load_settings
from tlcore.core.storage import DIGEST_FILE
from tlcore.data.datasets import ImageDataset
from tlcore.data.images import load_image
from tlcore.inference.features import check_feature_room, extract_features, project_2d
from tlcore.models.zoo import BackboneSpec

MAP_COLUMNS = ["x", "y", "class", "label", "index", "file"]
NEIGHBOUR_ROWS = 256
"""Rows whose distances to all others are computed at once when finding nearest neighbours."""
THUMBNAIL_SIDES = (8, 256)
"""Smallest and largest side of a hover thumbnail, in pixels."""


@dataclasses.dataclass(frozen=True)
class DatasetMap:
    """Where a dataset's images fall in 2-D, and how well its classes separate.

    Attributes:
        points: one row per image placed: ``x``, ``y`` (the first two principal
            components of the vectors), ``class`` (its name), ``label`` (its index),
            ``index`` (its position in the dataset) and ``file`` (the stored image).
        used: images placed on the map.
        total: images in the dataset.
        separability: leave-one-out nearest-neighbour accuracy in the full feature
            space: the share of placed images whose nearest other placed image
            (Euclidean distance between their whole vectors) has the same class.
        chance: what ``separability`` is on average when the labels say nothing
            about the images (the same class counts, labels shuffled):
            sum over classes of n_c (n_c - 1), over n (n - 1).
        feature_width: values in each vector.
        class_names: the dataset's classes, in label order.
        name: the dataset's name, for people.
    """

    points: pd.DataFrame
    used: int
    total: int
    separability: float
    chance: float
    feature_width: int
    class_names: tuple[str, ...]
    name: str = ""


def check_map_limit(limit: int, settings: Settings | None = None) -> int:
    """``limit`` if a map may place that many images; raises otherwise.

    Raises:
        ConfigError: fewer than 2 (nearest neighbours need two) or not a whole number.
        BudgetError: more than ``TL_MAX_MAP_IMAGES``.
    """
    settings = settings or load_settings()
    cap = int(settings.max_map_images)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 2:
        raise ConfigError(f"Images on a map must be a whole number from 2 to {cap:,}. Received: limit={limit!r}")
    if limit > cap:
        raise BudgetError(
            f"A dataset map may place at most {cap:,} images on this server (TL_MAX_MAP_IMAGES). "
            f"Received: limit={int(limit):,}"
        )
    return int(limit)


def map_subset(labels: Sequence[int] | np.ndarray, limit: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``limit`` images, each class keeping its share (stratified, seeded).

    Quotas are the classes' shares of ``limit``, rounded by largest remainder; when
    ``limit`` allows, every class keeps at least one image. Within a class the
    images are drawn with ``numpy.random.default_rng(seed)``.
    """
    labels = np.asarray(labels, dtype=int)
    if limit >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * limit / len(labels)
    quota = np.floor(exact).astype(int)
    if limit >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() < limit:  # the largest remainders get one more
        room = np.where(quota < counts, exact - quota, -np.inf)
        quota[int(np.argmax(room))] += 1
    while quota.sum() > limit:  # (only after the at-least-one rule) the most over their share give one back
        over = np.where(quota > 1, quota - exact, -np.inf)
        quota[int(np.argmax(over))] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def nearest_neighbour_accuracy(features: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """Leave-one-out 1-nearest-neighbour accuracy of ``labels`` in ``features``, and its chance level.

    Each row is classified by the label of its nearest other row (Euclidean); the
    chance level is that accuracy's expectation over shuffled labels.

    Returns:
        (accuracy, chance), both from 0 to 1.

    Raises:
        ConfigError: fewer than two rows, or rows and labels of different lengths.
    """
    labels = np.asarray(labels, dtype=int)
    n = len(features)
    if n < 2 or len(labels) != n:
        raise ConfigError(
            f"Nearest neighbours need at least 2 vectors, one label each. Received: {n} vectors, {len(labels)} labels"
        )
    rows = np.asarray(features, dtype=np.float32).reshape(n, -1)
    rows = rows - rows.mean(axis=0, keepdims=True)  # distances are unchanged; less cancellation below
    squared = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    nearest = np.empty(n, dtype=int)
    for start in range(0, n, NEIGHBOUR_ROWS):  # a block of rows at a time: memory follows the block, not n x n
        block = slice(start, min(start + NEIGHBOUR_ROWS, n))
        distances = squared[block, None] + squared[None, :] - 2.0 * (rows[block] @ rows.T).astype(np.float64)
        distances[np.arange(distances.shape[0]), np.arange(block.start, block.stop)] = np.inf  # not itself
        nearest[block] = np.argmin(distances, axis=1)
    accuracy = float(np.mean(labels[nearest] == labels))
    counts = np.bincount(labels).astype(np.float64)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    return accuracy, chance


def dataset_map(
    dataset: ImageDataset,
    extractor: keras.Model,
    *,
    backbone: str | BackboneSpec,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetMap:
    """The 2-D map of a dataset's feature vectors, and how well its classes separate.

    Args:
        dataset: stored images with labels.
        extractor: a network that turns an image into a vector (``feature_extractor``).
        backbone: the ``BACKBONES`` name whose preprocessing the extractor expects.
        limit: images placed at most (a stratified, seeded subset beyond it);
            None places up to ``TL_MAX_MAP_IMAGES``.
        seed: which subset, when the dataset has more images than ``limit``.
        progress: called with (images done, images to place) while extracting.

    Raises:
        ConfigError: ``limit`` under 2, or a dataset of fewer than 2 images.
        BudgetError: ``limit`` over ``TL_MAX_MAP_IMAGES``, or vectors over ``TL_MAX_MAP_FEATURE_MB``.
        ImageError: a stored image that cannot be read.
    """
    settings = load_settings()
    limit = check_map_limit(settings.max_map_images if limit is None else limit, settings)
    if len(dataset) < 2:
        raise ConfigError(f"A dataset map needs at least 2 images. Received: {len(dataset)} in {dataset.name!r}")
    chosen = map_subset(dataset.labels, limit, seed=seed)
    check_feature_room(extractor, len(chosen))
    width = int(np.prod(extractor.output.shape[1:]))
    files = [dataset.files[i] for i in chosen]
    labels = np.asarray(dataset.labels, dtype=int)[chosen]
    features = extract_features(extractor, files, backbone=backbone, progress=progress)
    separability, chance = nearest_neighbour_accuracy(features, labels)
    xy = project_2d(features)
    points = pd.DataFrame({
        "x": xy[:, 0], "y": xy[:, 1], "class": [dataset.class_names[label] for label in labels],
        "label": labels, "index": chosen, "file": [str(path) for path in files],
    }, columns=MAP_COLUMNS)
    return DatasetMap(points, len(chosen), len(dataset), separability, chance, width,
                      tuple(dataset.class_names), dataset.name)


def run_dataset(summary: Mapping) -> ImageDataset:
    """The stored dataset a training run used, from its summary (``RunRecord.dataset``).

    Raises:
        DatasetError: the summary lists no files (a run stored before summaries
            did), the dataset folder was deleted, or it holds other images now.
    """
    name = str(summary.get("name") or "the run's dataset")
    root = Path(str(summary.get("root", "")))
    listed = summary.get("files") or []
    if not listed or not summary.get("root"):
        raise DatasetError(
            f"A run's dataset summary must list its stored files to be mapped. Received: {name!r} lists none "
            "(the run was stored before summaries listed them)"
        )
    digest_path = root / DIGEST_FILE
    if not digest_path.is_file():
        raise DatasetError(
            f"A run's dataset must still be stored to be mapped. Received: {name!r}, whose folder {root} "
            "was deleted (datasets can be deleted on the Runs page to make room)"
        )
    stored = digest_path.read_text(encoding="utf-8").strip()
    if summary.get("digest") and stored != summary["digest"]:
        raise DatasetError(
            f"A run's dataset must hold the images the run trained on. Received: {name!r} in {root} holds "
            f"other images now (digest {stored[:12]}, the run's {str(summary['digest'])[:12]})"
        )
    files, labels = [], []
    for entry in listed:
        parts = PurePosixPath(str(entry)).parts
        if len(parts) != 2 or not parts[0].isdigit() or parts[1] in ("..", "."):
            raise DatasetError(
                f"A run's dataset files must be <label>/<name> inside its folder. Received: {str(entry)!r}"
            )
        files.append(root / parts[0] / parts[1])
        labels.append(int(parts[0]))
    class_names = tuple(str(c) for c in summary.get("classes", []))
    if not class_names or max(labels) >= len(class_names):
        raise DatasetError(
            f"A run's dataset must name a class for every label. Received: labels up to {max(labels)} "
            f"and {len(class_names)} class names in {name!r}"
        )
    return ImageDataset(root, class_names, tuple(files), tuple(labels), (), name, stored)


def thumbnail_url(path: str | Path, size: int = 64) -> str:
    """A small JPEG of a stored image as a ``data:`` URL (for a chart's hover tooltip).

    Raises:
        ConfigError: a side outside 8 to 256 pixels.
    """
    low, high = THUMBNAIL_SIDES
    if not low <= size <= high:
        raise ConfigError(f"Thumbnail side must be from {low} to {high} pixels. Received: size={size}")
    small = load_image(path)
    small.thumbnail((size, size))
    encoded = io.BytesIO()
    small.save(encoded, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")
