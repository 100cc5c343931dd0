"""Image datasets: class folders, zip archives, uploads grouped by class, and a built-in sample.

Every image is decoded by ``load_image`` and filed under a generated name, so
user-supplied names never become paths and an image that passed the checks can
never crash training. A JPEG, PNG or WebP that decoded cleanly and needs no change
(not shrunk, not turned, no alpha: ``kept_suffix``) is kept byte for byte
under its format's extension (a low-quality JPEG stored as PNG grew 48 times);
every other image is re-encoded as PNG. Archives are inspected whole before
anything is read, and refused with the reason.

Storage, under ``<data_dir>/datasets``::

    <id>/<label>/<index>.<ext> the images, .jpg, .png or .webp (index counts across classes,
                               in storing order)
    <id>/classes.txt           class names, one a line, in label order
    <id>/dataset.json          name, images, pixels, skipped inputs, created, digest
    <id>/digest.txt            the content digest; written last (no digest: unfinished)

The id of an upload is the sha256 of what was uploaded (``upload_key``), so an
archive or a set of per-class uploads stored before is found and reused without
decoding or a second copy; a folder's id is its content digest. A dataset is
written in a hidden folder and renamed into place when complete, and every byte
is counted against ``TL_MAX_DATA_GB`` as it is written. Budgets (images, stored
pixels, the data cap) are checked before the work they protect.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tlcore.core.atomic import atomic_write_text
from tlcore.core.errors import DatasetError, ImageError
from tlcore.core.settings import Settings, load_settings
from tlcore.core.storage import (
    BUILDING_PREFIX,
    CLASSES_FILE,
    DIGEST_FILE,
    RECORD_FILE,
    WriteBudget,
    datasets_dir,
    sweep_unfinished,
)
from tlcore.data.copies import Copies, find_copies, split_keeping_copies
from tlcore.data.images import STORED_SUFFIXES, DecodeBudget, ImageSource, kept_suffix, load_image
from tlcore.data.intake import (
    Item,
    archive_items,
    check_image_count,
    clean_name,
    folder_items,
    too_many_images,
)

MAX_STORED_SIDE = 512
"""Images are stored no larger than this on their longer side (inputs go up to 1024 but rarely past 512)."""


MAX_VALIDATION_FRACTION = 0.9
"""The largest share of each class a split may hold out for validation."""

@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Labelled images stored as files under ``root``.

    Attributes:
        root: the dataset's own folder.
        class_names: class names, in label order.
        files: one image file per image: JPEG, PNG or WebP, named by its format
            (``STORED_SUFFIXES``); Pillow opens each, and ``convert("RGB")`` gives
            exactly what ``load_image`` gave when it was stored.
        labels: the class index of each file.
        skipped: "name: reason" for each input that was not used.
        name: where it came from, for people.
        digest: sha256 of the stored content (see ``content_digest``): equal for
            the same images, labels and class names, different if one pixel differs.
    """

    root: Path
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    skipped: tuple[str, ...] = ()
    name: str = ""
    digest: str = ""

    def __len__(self) -> int:
        return len(self.files)

    @property
    def counts(self) -> dict[str, int]:
        """Images per class."""
        tally = np.bincount(np.asarray(self.labels, dtype=int), minlength=len(self.class_names))
        return dict(zip(self.class_names, (int(n) for n in tally)))

    @functools.cached_property
    def copies(self) -> Copies:
        """The images stored with the same bytes as another (read once per dataset object): see ``Copies``."""
        return find_copies(self.files, self.labels)

    def split(self, validation_fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified, seeded indices (train, validation): each class keeps about its share in both, and the
        exact copies of an image stay on its side (a group of copies is held out only while it fits the share;
        a picture filed under two classes always trains), so validation never scores an exact copy of an image
        training saw. A dataset without copies splits as it always did.

        Raises:
            DatasetError: a fraction outside [0, ``MAX_VALIDATION_FRACTION``].
        """
        if not 0.0 <= validation_fraction <= MAX_VALIDATION_FRACTION:
            raise DatasetError(
                f"Validation fraction must be from 0 to {MAX_VALIDATION_FRACTION}. Received: {validation_fraction}"
            )
        rng = np.random.default_rng(seed)
        labels = np.asarray(self.labels)
        train, validation = [], []
        for label in range(len(self.class_names)):
            members = rng.permutation(np.flatnonzero(labels == label))
            take = int(round(len(members) * validation_fraction))
            if validation_fraction > 0:
                take = min(max(take, 1), len(members) - 1)
            if take:
                held, trained = split_keeping_copies(members, self.copies.original, take,
                                                     frozenset(self.copies.across_classes))
            else:
                held, trained = [], members
            validation.extend(held)
            train.extend(trained)
        return np.sort(np.asarray(train, dtype=int)), np.sort(np.asarray(validation, dtype=int))

    def summary(self) -> dict:
        """Plain values for a run record."""
        return {"name": self.name, "classes": list(self.class_names), "counts": self.counts,
                "images": len(self), "skipped": len(self.skipped), "root": str(self.root), "digest": self.digest,
                "files": [str(f.relative_to(self.root)) for f in self.files]}


class ContentDigest:
    """The running sha256 of a dataset's content; see ``content_digest`` for the layout."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"tlcore-dataset-v1\0")

    def add_file(self, label: int, data: bytes) -> None:
        self._hash.update(struct.pack("<QQ", label, len(data)))
        self._hash.update(data)

    def finish(self, class_names: Sequence[str]) -> str:
        final = self._hash.copy()
        final.update(struct.pack("<Q", len(class_names)))
        for name in class_names:
            encoded = name.encode("utf-8")
            final.update(struct.pack("<Q", len(encoded)) + encoded)
        return final.hexdigest()


def content_digest(class_names: Sequence[str], files: Iterable[tuple[int, bytes]]) -> str:
    """The digest of a stored dataset: sha256 over its files and class names.

    Layout hashed: ``b"tlcore-dataset-v1\\0"``; for each stored file in order, its
    label and byte length (two little-endian uint64) and its bytes; then the number
    of class names (uint64) and each name as length (uint64) and UTF-8 bytes.

    Args:
        class_names: in label order.
        files: (label, stored file bytes) in storing order.
    """
    digest = ContentDigest()
    for label, data in files:
        digest.add_file(label, data)
    return digest.finish(class_names)


def upload_key(source: object) -> str | None:
    """The sha256 id under which an upload is stored, or None for a source read from disk.

    An archive's key is the sha256 of its bytes; a mapping's (class -> image bytes)
    hashes each class name and the sha256 of each of its files, in order.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, Mapping) and all(
            isinstance(data, (bytes, bytearray)) for group in source.values() for data in group):
        key = hashlib.sha256(b"tlcore-uploads-v1\0")
        for name, group in source.items():
            encoded = str(name).encode("utf-8")
            key.update(struct.pack("<QQ", len(encoded), len(group)) + encoded)
            for data in group:
                key.update(hashlib.sha256(data).digest())
        return key.hexdigest()
    return None


def _stored_files(root: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """The images of a stored upload, in storing order (their names count across classes)."""
    found = sorted((int(path.stem), int(path.parent.name), path) for path in root.glob("*/*")
                   if path.suffix in STORED_SUFFIXES and path.stem.isdigit() and path.parent.name.isdigit())
    return tuple(path for _, _, path in found), tuple(label for _, label, _ in found)


def open_stored(root: Path, name: str, settings: Settings) -> ImageDataset | None:
    """A finished stored dataset, or None; refused if it is over today's budgets."""
    try:
        digest = (root / DIGEST_FILE).read_text(encoding="utf-8").strip()
        record = json.loads((root / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files, labels = _stored_files(root)
    check_image_count(len(files), name, settings)
    pixels = int(record.get("pixels", 0))
    if pixels > settings.max_dataset_pixels:
        raise too_many_pixels(settings, f"{pixels:,} pixels in {name}")
    return ImageDataset(root, tuple(record["classes"]), files, labels, tuple(record.get("skipped", ())),
                        name or record.get("name", ""), digest)


def too_many_pixels(settings: Settings, received: str) -> DatasetError:
    """The refusal of a dataset over ``TL_MAX_DATASET_PIXELS``, with what was received."""
    return DatasetError(
        f"A dataset may hold at most {settings.max_dataset_pixels:,} pixels in all, as stored "
        f"(TL_MAX_DATASET_PIXELS). Received: {received}"
    )


def _store(items: Sequence[Item], name: str, settings: Settings, *, key: str | None,
           expected_bytes: int, source: str, skipped: Sequence[str] = ()) -> ImageDataset:
    """Decode and file each item (as it came if keepable, else as PNG); check the result; move it into place.

    Args:
        items: what to store, in order.
        name: where it came from, for people.
        key: the upload's id; None to use the content digest.
        expected_bytes: the declared size, checked against the data cap before writing.
        source: "archive", "uploads" or "folder", for the record.
        skipped: inputs already left out (system files, files outside class folders).
    """
    check_image_count(len(items), name, settings)
    folder = datasets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    sweep_unfinished(settings)
    budget = WriteBudget(expected=expected_bytes, what=f"a dataset ({name})")
    building = folder / f"{BUILDING_PREFIX}{uuid.uuid4().hex}"
    building.mkdir()
    class_names: list[str] = []
    relative: list[str] = []
    labels: list[int] = []
    skipped = list(skipped)
    digest = ContentDigest()
    decoding = DecodeBudget(f"a dataset ({name})", settings)
    pixels = 0
    try:
        for class_name, display, read in items:
            try:
                given = read()
                image = load_image(given, largest_side=MAX_STORED_SIDE, budget=decoding, name=display)
            except (ImageError, OSError) as exc:
                skipped.append(f"{display}: {exc}")
                continue
            image.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
            pixels += image.width * image.height
            if pixels > settings.max_dataset_pixels:
                raise too_many_pixels(settings, f"more than that in {name}, passed at image {len(relative) + 1:,} "
                                                 f"({display})")
            if len(relative) >= settings.max_dataset_images:
                raise too_many_images(settings, f"more than that in {name}")
            if class_name not in class_names:
                class_names.append(class_name)
            label = class_names.index(class_name)
            suffix = kept_suffix(bytes(given), image) if isinstance(given, (bytes, bytearray)) else None
            if suffix is not None:
                data = bytes(given)
            else:  # shrunk, turned upright, flattened, or a format not kept as it came
                encoded = io.BytesIO()
                image.save(encoded, "PNG")
                data, suffix = encoded.getvalue(), ".png"
            budget.take(len(data))
            path = f"{label}/{len(relative):06d}{suffix}"
            (building / str(label)).mkdir(exist_ok=True)
            (building / path).write_bytes(data)
            digest.add_file(label, data)
            relative.append(path)
            labels.append(label)
        content = digest.finish(class_names)
        root = folder / (key or content)
        files = tuple(root / path for path in relative)
        dataset = ImageDataset(root, tuple(class_names), files, tuple(labels), tuple(skipped), name, content)
        _check_usable(dataset)
        record = {"name": name, "source": source, "classes": class_names, "images": len(files), "pixels": pixels,
                  "skipped": skipped, "created": time.time(), "digest": content, "bytes": budget.written}
        for file_name, text in ((CLASSES_FILE, "\n".join(class_names)), (RECORD_FILE, json.dumps(record)),
                                (DIGEST_FILE, content)):
            budget.take(len(text.encode("utf-8")))
            atomic_write_text(building / file_name, text)
        try:
            building.rename(root)
        except OSError:  # stored meanwhile (the same upload, or the same content from a folder): use that
            shutil.rmtree(building, ignore_errors=True)
            existing = open_stored(root, name, settings)
            if existing is None:
                raise
            return dataclasses.replace(existing, skipped=tuple(skipped))
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return dataset


def _check_usable(dataset: ImageDataset) -> None:
    if len(dataset.class_names) < 2:
        raise DatasetError(
            "A dataset needs at least 2 classes, each a folder of images. "
            f"Received: {len(dataset.class_names)} class(es) {list(dataset.class_names)} "
            f"in {dataset.name}" + (f", {len(dataset.skipped)} file(s) skipped" if dataset.skipped else "")
        )
    small = {name: n for name, n in dataset.counts.items() if n < 2}
    if small:
        raise DatasetError(
            f"Each class needs at least 2 usable images. Received: {small} in {dataset.name}"
        )


def load_dataset(
    source: str | os.PathLike | bytes | Mapping[str, Sequence[ImageSource]], *, name: str | None = None,
) -> ImageDataset:
    """Make a dataset from class folders, or reuse the stored one made from the same upload.

    Args:
        source: a folder of class folders; a zip archive of them (path or bytes,
            optionally under one top folder); or a mapping class name -> images.
            A folder is read as it is: links inside it are not followed. For a
            folder a visitor typed, pass it through ``server_folder`` first.
        name: what to call the dataset, e.g. an uploaded file's name ("cats.zip"); by
            default the folder's or file's name, "uploaded archive" or "uploaded files".

    Returns:
        The stored dataset; unreadable images are skipped and listed in ``skipped``.

    Raises:
        DatasetError: an unsafe or damaged archive, fewer than 2 classes, a class
            with fewer than 2 usable images, or more images or stored pixels than
            ``max_dataset_images`` / ``max_dataset_pixels``.
        StorageError: the data folder would grow past ``max_data_gb``.
    """
    settings = load_settings()
    skipped: list[str] = []
    key = upload_key(source)
    given = " ".join(str(name).split())[:120] if name else ""  # one line, not a whole essay
    if isinstance(source, Mapping):
        name = given or "uploaded files"
        if key is not None and (stored := open_stored(datasets_dir(settings) / key, name, settings)) is not None:
            return stored
        items: list[Item] = [(clean_name(c), f"{c}/{i}", lambda s=s: s)
                             for c, group in source.items() for i, s in enumerate(group)]
        declared = sum(len(s) for group in source.values() for s in group if isinstance(s, (bytes, bytearray)))
        return _store(items, name, settings, key=key, expected_bytes=declared, source="uploads")
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        items, declared = folder_items(Path(source), settings, skipped)
        return _store(items, given or Path(source).name, settings, key=None, expected_bytes=declared, source="folder",
                      skipped=skipped)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"A dataset must be a folder or a .zip archive. Received: {str(path)!r} (not found)")
        data, name = path.read_bytes(), given or path.name
        key = upload_key(data)
    else:
        data, name = bytes(source), given or "uploaded archive"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            items, declared = archive_items(archive, settings, data, skipped)  # checked even if stored before
            if (stored := open_stored(datasets_dir(settings) / key, name, settings)) is not None:
                return stored
            return _store(items, name, settings, key=key, expected_bytes=declared, source="archive",
                          skipped=skipped)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DatasetError(
            f"A dataset archive must be a readable .zip file. Received: {name}, which is damaged "
            f"or not a zip ({exc})"
        ) from None


