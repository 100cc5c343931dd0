"""Batch prediction: many images, or zips of them, in; one row per image out (top-1, top-5), and a CSV.

The inputs pass the same checks and budgets as datasets: a zip is inspected
whole with the dataset archive checks before any member is read (traversal,
links, encryption, depth, sizes, compression ratio, overlapping members) and
its members are read no larger than they declare; every image is decoded by
``load_image``; there may be at most ``TL_MAX_DATASET_IMAGES`` images and
``TL_MAX_ARCHIVE_BYTES`` bytes in all. A file is read whole only once its
declared size fits an image (``max_image_file_bytes``, from
``TL_MAX_IMAGE_PIXELS``) and its first bytes are an image format's signature;
others are skipped with the reason. Images are read, decoded, classified and
let go one file and a batch at a time, so memory follows the batch, not the
upload; the result keeps a small thumbnail and the top-k per image.

The CSV download neutralises text cells a spreadsheet would run as a formula
(starting with ``= + - @``, a tab or a carriage return: a single quote goes
first, as OWASP advises), so a file or class named ``=HYPERLINK(...)`` stays text.
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
from tlcore.core.settings import Settings, load_settings
from tlcore.data.images import DecodeBudget, ResizeMode, fit_image, load_image
from tlcore.data.intake import (
    IMAGE_HEAD_BYTES,
    check_archive,
    check_image_head,
    check_image_size,
    is_skipped,
    read_image_member,
    too_many_images,
)
from tlcore.inference.precision import inference_forward
from tlcore.inference.predict import TOP_K_COLUMNS, model_input_size, top_k_table
from tlcore.inference.top_k import as_probabilities
from tlcore.models.labels import imagenet_labels
from tlcore.models.zoo import BackboneSpec, get_backbone

BATCH_COLUMNS = ["file", "top-1", "probability", "top-5"]
THUMBNAIL_SIDE = 64
THUMBNAIL_QUALITY = 85
"""JPEG quality of the thumbnails: about 2 KB each, a fifth of a PNG's."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
"""What a CSV cell may not start with, lest a spreadsheet run it (OWASP's CSV injection list, and a line feed)."""


@dataclasses.dataclass(frozen=True)
class BatchItem:
    """One image to classify: its name for people and how to read its bytes."""

    name: str
    read: Callable[[], bytes]


def _is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _checked_file(data: bytes, settings: Settings) -> bytes:
    """An uploaded file's bytes, once its size and first bytes allow it to be an image."""
    check_image_size(len(data), settings)
    check_image_head(data[:IMAGE_HEAD_BYTES])
    return data


def archive_items(name: str, data: bytes) -> tuple[list[BatchItem], int]:
    """The files of one zip, checked whole first (the dataset checks), and their declared bytes.

    Each member is read lazily: its declared size and first bytes first, then whole
    (capped at its declared size) only if they may be an image's.
    """
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
        items.append(BatchItem(f"{name}/{'/'.join(parts)}",
                               lambda info=info: read_image_member(archive, info, settings)))
        declared += info.file_size
    return items, declared


def batch_inputs(files: Sequence[tuple[str, bytes]]) -> list[BatchItem]:
    """Uploaded files (images, or zips of images) as the images to classify, in upload order.

    Args:
        files: (name, bytes) of each upload. A zip is recognised by its content,
            and its members are named ``<zip name>/<path inside>``.

    Returns:
        The images to classify (zip members expanded and read lazily; system and
        hidden files left out). Whether each is an image is found when it is read:
        its size and first bytes, then its decoding.

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
            items.append(BatchItem(name, lambda data=data: _checked_file(data, settings)))
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
    """A small JPEG of ``image`` (RGB, at most ``side`` pixels a side) as a ``data:`` URI, for a table cell."""
    small = image.copy()
    small.thumbnail((side, side))
    encoded = io.BytesIO()
    small.save(encoded, "JPEG", quality=THUMBNAIL_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")


def csv_safe(cell: object) -> object:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a single quote first."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """The predictions for a batch of images.

    Attributes:
        table: one row per classified image: ``file``, ``top-1``, ``probability``
            (of the top-1) and ``top-5`` ("label 81.2% · label 10.1% · ..."), in input order.
        thumbnails: a small JPEG ``data:`` URI per row of ``table``.
        top_k: one table for all rows, k records a row: ``row`` (of ``table``), then
            ``rank, label, class_id, probability`` as ``predict_top_k`` gives them
            (``top_k_of(row)``); one table, not one per row, so that it stays small.
        skipped: "name: reason" for each input that is not a usable image.
    """

    table: pd.DataFrame
    thumbnails: tuple[str, ...]
    top_k: pd.DataFrame
    skipped: tuple[str, ...]

    def top_k_of(self, row: int) -> pd.DataFrame:
        """Row ``row``'s top-k table (``rank, label, class_id, probability``), as ``predict_top_k`` gives it."""
        return self.top_k[self.top_k["row"] == row][TOP_K_COLUMNS].reset_index(drop=True)

    def nbytes(self) -> int:
        """About how many bytes this result holds (tables, thumbnails, reasons): what keeping it costs."""
        tables = self.table.memory_usage(deep=True).sum() + self.top_k.memory_usage(deep=True).sum()
        return int(tables) + sum(map(len, self.thumbnails)) + sum(map(len, self.skipped))

    def csv(self) -> bytes:
        """The table as CSV (UTF-8), plus a row per skipped input with its reason under ``top-5``.

        Text cells that a spreadsheet would run as a formula start with a single quote.
        """
        skipped = pd.DataFrame({"file": [s.split(": ", 1)[0] for s in self.skipped],
                                "top-5": ["skipped: " + s.split(": ", 1)[-1] for s in self.skipped]})
        frame = pd.concat([self.table, skipped], ignore_index=True) if len(skipped) else self.table
        texts = ["file", "top-1", "top-5"]
        return frame.assign(**{c: frame[c].map(csv_safe) for c in texts}).to_csv(index=False).encode("utf-8")


def _top_text(table: pd.DataFrame) -> str:
    return " · ".join(f"{row.label} {row.probability:.1%}" for row in table.itertuples())


def _decode(item: BatchItem, size: tuple[int, int], mode: ResizeMode,
            budget: DecodeBudget) -> tuple[str, np.ndarray]:
    """One image's thumbnail and model-sized pixels; its bytes and full-size picture are let go on return."""
    image = load_image(item.read(), budget=budget, name=item.name)
    return thumbnail_uri(image), np.asarray(fit_image(image, size, mode=mode), dtype=np.float32)


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
    precision: str | None = None,
) -> BatchResult:
    """Classify many images, a batch at a time.

    Args:
        model: a classifier ending in a softmax (ImageNet's, a trained run's, an uploaded one).
        items: from ``batch_inputs``.
        backbone: whose preprocessing the model expects.
        labels: class names; ImageNet's for 1,000 outputs when None.
        k: how many classes the ``top-5`` column and ``top_k`` list (clamped to the classes).
        mode: "crop" or "squash".
        batch_size: images decoded and run together.
        progress: called with (images done, images in all) after each batch.
        precision: "float32" or "bfloat16" to insist (a trained run's verdict, ``precision_for_run``);
            None follows ``TL_PRECISION``, as ``predict_top_k`` does.

    Returns:
        The table (one row per usable image), thumbnails, the top-k records, and the
        skipped inputs with their reasons (an input that is not a usable image never
        stops the batch).

    Raises:
        ConfigError: labels that do not match the model's outputs.
        BudgetError: the images hold more pixels in all than ``TL_MAX_DECODED_PIXELS`` (counted from each
            header before it is decoded).
    """
    spec = get_backbone(backbone)
    size = model_input_size(model)
    classes = int(model.outputs[0].shape[-1])
    if labels is None:
        labels = imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    if len(labels) != classes:
        raise ConfigError(f"Labels must name each of the model's {classes} outputs. Received: {len(labels)} labels")
    forward = inference_forward(model, backbone=spec, batch=max(1, min(batch_size, len(items))), precision=precision)
    rows, thumbnails, class_ids, probabilities, skipped = [], [], [], [], []
    decoding = DecodeBudget(f"a batch ({len(items):,} files)")
    for start in range(0, len(items), batch_size):
        names, pixels = [], []
        for item in items[start:start + batch_size]:
            try:
                thumbnail, fitted = _decode(item, size, mode, decoding)
            except (ImageError, DatasetError) as exc:
                skipped.append(f"{item.name}: {exc}")
                continue
            names.append(item.name)
            thumbnails.append(thumbnail)
            pixels.append(fitted)
        if pixels:
            for name, row in zip(names, as_probabilities(forward(spec.preprocess(np.stack(pixels))))):
                top = top_k_table(row, labels, k)
                class_ids.append(top["class_id"].to_numpy())
                probabilities.append(top["probability"].to_numpy())
                rows.append((name, top.label.iloc[0], float(top.probability.iloc[0]), _top_text(top)))
        if progress:
            progress(min(start + batch_size, len(items)), len(items))
    table = pd.DataFrame(rows, columns=BATCH_COLUMNS)
    return BatchResult(table, tuple(thumbnails), _top_k_records(class_ids, probabilities, labels), tuple(skipped))


def _top_k_records(class_ids: list[np.ndarray], probabilities: list[np.ndarray],
                   labels: Sequence[str]) -> pd.DataFrame:
    """Each row's top-k (as ``top_k_table`` gave it) in one table, ``row`` first."""
    k = len(class_ids[0]) if class_ids else 0
    ids = np.concatenate(class_ids) if class_ids else np.zeros(0, int)
    return pd.DataFrame({
        "row": np.repeat(np.arange(len(class_ids)), k),
        "rank": np.tile(np.arange(1, k + 1), len(class_ids)),
        "label": [labels[i] for i in ids],
        "class_id": ids.astype(int),
        "probability": np.concatenate(probabilities).astype(float) if probabilities else np.zeros(0),
    })
