"""Batch prediction: many images, or zips of them, in; one row per image out (top-1, top-5), and a CSV.

The inputs pass the same checks and budgets as datasets: a zip is inspected
whole with the dataset archive checks before any member is read (traversal,
links, encryption, depth, sizes, compression ratio, overlapping members) and
its members are read no larger than they declare; every image is decoded by
``load_image``; there may be at most ``TL_MAX_DATASET_IMAGES`` images and
``TL_MAX_ARCHIVE_BYTES`` bytes in all. Images are decoded, classified and let
go a batch at a time, so memory follows the batch, not the upload.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import zipfile
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

import keras
import numpy as np
import pandas as pd
from PIL import Image

from tlcore.core.errors import ConfigError, DatasetError, ImageError
from tlcore.core.settings import load_settings
from tlcore.data.images import ResizeMode, fit_image, load_image
from tlcore.data.intake import check_archive, is_skipped, read_capped, too_many_images
from tlcore.inference.precision import inference_forward
from tlcore.inference.predict import model_input_size, top_k_table
from tlcore.models.labels import imagenet_labels
from tlcore.models.zoo import BackboneSpec, get_backbone

BATCH_COLUMNS = ["file", "top-1", "probability", "top-5"]
THUMBNAIL_SIDE = 64


@dataclasses.dataclass(frozen=True)
class BatchItem:
    """One image to classify: its name for people and how to read its bytes."""

    name: str
    read: Callable[[], bytes]


def _is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def archive_items(name: str, data: bytes) -> tuple[list[BatchItem], int]:
    """The files of one zip, checked whole first (the dataset checks), read lazily and capped; and their bytes."""
    settings = load_settings()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in check_archive(archive, settings, data) if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError):
        raise DatasetError(
            f"An archive of images must be a readable .zip file. Received: {name}, which is damaged or not a zip"
        ) from None
    items, declared = [], 0
    for info in members:
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if is_skipped(parts):  # __MACOSX, .DS_Store, hidden files
            continue
        items.append(BatchItem(f"{name}/{'/'.join(parts)}", lambda info=info: read_capped(archive, info)))
        declared += info.file_size
    return items, declared


def batch_inputs(files: Sequence[tuple[str, bytes]]) -> list[BatchItem]:
    """Uploaded files (images, or zips of images) as the images to classify, in upload order.

    Args:
        files: (name, bytes) of each upload. A zip is recognised by its content,
            and its members are named ``<zip name>/<path inside>``.

    Returns:
        The images to classify (zip members expanded and read lazily; system and
        hidden files left out). Whether each is an image is found when it is decoded.

    Raises:
        DatasetError: a zip the dataset checks refuse (with their reason), more images
            than ``TL_MAX_DATASET_IMAGES``, or more than ``TL_MAX_ARCHIVE_BYTES`` bytes in all.
    """
    settings = load_settings()
    items: list[BatchItem] = []
    total = 0
    for name, data in files:
        if _is_zip(data):
            members, declared = archive_items(name, data)
            items.extend(members)
            total += declared
        else:
            items.append(BatchItem(name, lambda data=data: data))
            total += len(data)
        if len(items) > settings.max_dataset_images:
            raise too_many_images(settings, f"more than that in {len(files):,} upload(s), at {name}")
        if total > settings.max_archive_bytes:
            raise DatasetError(
                f"Images to classify may take at most {settings.max_archive_bytes:,} bytes in all, unpacked "
                f"(TL_MAX_ARCHIVE_BYTES). Received: more than that, at {name}"
            )
    return items


def thumbnail_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A small PNG of ``image`` (at most ``side`` pixels a side) as a ``data:`` URI, for a table cell."""
    small = image.copy()
    small.thumbnail((side, side))
    encoded = io.BytesIO()
    small.save(encoded, "PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """The predictions for a batch of images.

    Attributes:
        table: one row per classified image: ``file``, ``top-1``, ``probability``
            (of the top-1) and ``top-5`` ("label 81.2% · label 10.1% · ..."), in input order.
        thumbnails: a small PNG ``data:`` URI per row of ``table``.
        top_k: per row, the top-k table (``rank, label, class_id, probability``).
        skipped: "name: reason" for each input that is not a usable image.
    """

    table: pd.DataFrame
    thumbnails: tuple[str, ...]
    top_k: tuple[pd.DataFrame, ...]
    skipped: tuple[str, ...]

    def csv(self) -> bytes:
        """The table as CSV (UTF-8), plus a row per skipped input with its reason under ``top-5``."""
        skipped = pd.DataFrame({"file": [s.split(": ", 1)[0] for s in self.skipped],
                                "top-5": ["skipped: " + s.split(": ", 1)[-1] for s in self.skipped]})
        frame = pd.concat([self.table, skipped], ignore_index=True) if len(skipped) else self.table
        return frame.to_csv(index=False).encode("utf-8")


def _top_text(table: pd.DataFrame) -> str:
    return " · ".join(f"{row.label} {row.probability:.1%}" for row in table.itertuples())


def predict_batch(
    model: keras.Model,
    items: Sequence[BatchItem],
    *,
    backbone: str | BackboneSpec,
    labels: Sequence[str] | None = None,
    k: int = 5,
    mode: ResizeMode = "crop",
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Classify many images, a batch at a time.

    Args:
        model: a classifier ending in a softmax (ImageNet's, a trained run's, an uploaded one).
        items: from ``batch_inputs``.
        backbone: whose preprocessing the model expects.
        labels: class names; ImageNet's for 1,000 outputs when None.
        k: how many classes the ``top-5`` column lists (clamped to the classes).
        mode: "crop" or "squash".
        batch_size: images decoded and run together.
        progress: called with (images done, images in all) after each batch.

    Returns:
        The table (one row per usable image), thumbnails, and the skipped inputs
        with their reasons (an input that is not a usable image never stops the batch).

    Raises:
        ConfigError: labels that do not match the model's outputs.
    """
    spec = get_backbone(backbone)
    size = model_input_size(model)
    classes = int(model.output.shape[-1])
    if labels is None:
        labels = imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    if len(labels) != classes:
        raise ConfigError(f"Labels must name each of the model's {classes} outputs. Received: {len(labels)} labels")
    forward = inference_forward(model, backbone=spec, batch=max(1, min(batch_size, len(items))))
    rows, thumbnails, tops, skipped = [], [], [], []
    for start in range(0, len(items), batch_size):
        names, pixels = [], []
        for item in items[start:start + batch_size]:
            try:
                image = load_image(item.read())
            except (ImageError, DatasetError) as exc:
                skipped.append(f"{item.name}: {exc}")
                continue
            names.append(item.name)
            thumbnails.append(thumbnail_uri(image))
            pixels.append(np.asarray(fit_image(image, size, mode=mode), dtype=np.float32))
        if pixels:
            probabilities = forward(spec.preprocess(np.stack(pixels)))
            for name, row in zip(names, probabilities):
                top = top_k_table(row, labels, k)
                tops.append(top)
                rows.append((name, top.label.iloc[0], float(top.probability.iloc[0]), _top_text(top)))
        if progress:
            progress(min(start + batch_size, len(items)), len(items))
    table = pd.DataFrame(rows, columns=BATCH_COLUMNS)
    return BatchResult(table, tuple(thumbnails), tuple(tops), tuple(skipped))
