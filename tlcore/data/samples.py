"""Datasets the project draws itself: the built-in sample shapes, and a store-once builder for drawn sets.

Drawn deterministically from a seed (no download), stored once in the data folder with
their records and digest, so the same arguments give the same images and the same digest.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tlcore.core.atomic import atomic_write_text
from tlcore.core.settings import load_settings
from tlcore.core.storage import BUILDING_PREFIX, CLASSES_FILE, DIGEST_FILE, RECORD_FILE, WriteBudget, datasets_dir
from tlcore.data.datasets import ContentDigest, ImageDataset, content_digest

SAMPLE_CLASSES = ("circle", "square", "triangle", "stripes")


@dataclasses.dataclass(frozen=True)
class Canvas:
    """A generated image to draw one shape on: a light noisy background, and the shape's dark colour and
    square box (``x``, ``y``, side ``extent``), each drawn at random from ``rng`` in this order."""

    image: Image.Image
    draw: ImageDraw.ImageDraw
    colour: tuple[int, int, int]
    x: float
    y: float
    extent: float


def canvas(size: int, rng: np.random.Generator) -> Canvas:
    """A ``size`` x ``size`` canvas for one drawn shape (the sample's and the demo's datasets)."""
    background = rng.integers(150, 256, 3)
    noise = rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
    colour = tuple(int(c) for c in rng.integers(0, 140, 3))
    extent = rng.uniform(0.35, 0.7) * size
    x, y = rng.uniform(0, size - extent, 2)
    return Canvas(image, ImageDraw.Draw(image), colour, x, y, extent)


def draw_sample(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    c = canvas(size, rng)
    image, draw, colour, x, y, extent = c.image, c.draw, c.colour, c.x, c.y, c.extent
    box = [x, y, x + extent, y + extent]
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([(x, y + extent), (x + extent, y + extent), (x + extent / 2, y)], fill=colour)
    else:
        width = max(2, int(size / rng.integers(6, 10)))
        for start in range(-size, size, 2 * width):
            draw.line([(start, 0), (start + size, size)], fill=colour, width=width)
    return image


def sample_dataset_name(per_class: int, size: int) -> str:
    """What a drawing of the sample shapes is called, so two of them read differently:
    "built-in sample shapes, 64 a class at 64 px"."""
    return f"built-in sample shapes, {per_class} a class at {size} px"


def sample_dataset(*, per_class: int = 64, size: int = 64, seed: int = 0) -> ImageDataset:
    """The built-in dataset: coloured circles, squares, triangles and stripes.

    Generated deterministically (no download) and stored once per
    (per_class, size, seed) in the data folder, with its digest.
    """
    return generated_dataset(f"sample-{per_class}-{size}-{seed}", SAMPLE_CLASSES, sample_dataset_name(per_class, size),
                             per_class, lambda kind, rng: draw_sample(kind, size, rng), np.random.default_rng(seed))


def generated_dataset(folder: str, class_names: Sequence[str], name: str, per_class: int,
                      draw: Callable[[str, np.random.Generator], Image.Image],
                      rng: np.random.Generator) -> ImageDataset:
    """A built-in dataset drawn by ``draw`` (one image of a class per call, class after class, from
    ``rng``), stored once in the data folder under ``folder`` with its records and digest.

    The folder is built under a temporary name and renamed whole, so another process
    drawing it at the same time, or a crash half-way, never leaves half a dataset. Every
    byte written is counted against ``TL_MAX_DATA_GB`` first (``WriteBudget``), as uploads are.

    Raises:
        StorageError: the data folder has no room for it (``TL_MAX_DATA_GB``) or the disk
            refused a write; the unfinished folder is removed.
    """
    class_names = tuple(class_names)
    settings = load_settings()
    root = datasets_dir(settings) / folder
    if not (root / CLASSES_FILE).is_file():
        budget = WriteBudget(what=f"a dataset ({name})")
        building = root.with_name(f"{BUILDING_PREFIX}{uuid.uuid4().hex}")  # swept if left unfinished
        try:
            digest = ContentDigest()
            for label, kind in enumerate(class_names):
                (building / str(label)).mkdir(parents=True)
                for index in range(per_class):
                    encoded = io.BytesIO()
                    draw(kind, rng).save(encoded, "PNG")
                    budget.take(len(encoded.getvalue()))
                    (building / str(label) / f"{index:06d}.png").write_bytes(encoded.getvalue())
                    digest.add_file(label, encoded.getvalue())
            _write_generated_records(building, name, class_names, digest.finish(class_names), per_class, budget)
            try:
                building.rename(root)
            except OSError:  # another process finished first: use theirs
                shutil.rmtree(building, ignore_errors=True)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    files, labels = [], []
    for label in range(len(class_names)):
        members = sorted((root / str(label)).glob("*.png"))
        files.extend(members)
        labels.extend([label] * len(members))
    try:
        digest_text = (root / DIGEST_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:  # stored before datasets had digests: read the files once
        digest_text = content_digest(class_names, ((label, path.read_bytes()) for path, label in zip(files, labels)))
        _write_generated_records(root, name, class_names, digest_text, per_class, WriteBudget(what=f"a dataset ({name})"))
    return ImageDataset(root, class_names, tuple(files), tuple(labels), (), name, digest_text)


def _write_generated_records(root: Path, name: str, class_names: tuple[str, ...], digest: str, per_class: int,
                             budget: WriteBudget) -> None:
    """The record, class names and digest (last: it marks the folder finished), each counted by ``budget``."""
    record = {"name": name, "source": "sample", "classes": list(class_names),
              "images": per_class * len(class_names), "created": time.time(), "digest": digest}
    for file_name, text in ((RECORD_FILE, json.dumps(record)), (CLASSES_FILE, "\n".join(class_names)),
                            (DIGEST_FILE, digest)):
        budget.take(len(text.encode("utf-8")))
        atomic_write_text(root / file_name, text)
