"""Image datasets: class folders, zip archives, uploads grouped by class, and a built-in sample.

Every image is decoded by ``load_image`` and re-encoded as a clean PNG under a
generated name, so user-supplied names never become paths and an image that
passed the checks can never crash training. Archives are inspected whole before
anything is read, and refused with the reason.

Storage, under ``<data_dir>/datasets``::

    <id>/<label>/<index>.png   the images (index counts across classes, in storing order)
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
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from tlcore.atomic import atomic_write_text
from tlcore.errors import DatasetError, ImageError
from tlcore.images import ImageSource, load_image
from tlcore.settings import Settings, load_settings
from tlcore.storage import (
    BUILDING_PREFIX,
    CLASSES_FILE,
    DIGEST_FILE,
    RECORD_FILE,
    WriteBudget,
    datasets_dir,
    sweep_unfinished,
)

SKIPPED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
MAX_STORED_SIDE = 512
"""Images are stored no larger than this on their longer side (inputs go up to 1024 but rarely past 512)."""


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """Labelled images stored as PNG files under ``root``.

    Attributes:
        root: the dataset's own folder.
        class_names: class names, in label order.
        files: one PNG per image.
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

    def split(self, validation_fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified, seeded indices (train, validation): each class keeps its share in both.

        Raises:
            DatasetError: a fraction outside [0, 0.9].
        """
        if not 0.0 <= validation_fraction <= 0.9:
            raise DatasetError(
                f"Validation fraction must be from 0 to 0.9. Received: {validation_fraction}"
            )
        rng = np.random.default_rng(seed)
        labels = np.asarray(self.labels)
        train, validation = [], []
        for label in range(len(self.class_names)):
            members = rng.permutation(np.flatnonzero(labels == label))
            take = int(round(len(members) * validation_fraction))
            if validation_fraction > 0:
                take = min(max(take, 1), len(members) - 1)
            validation.extend(members[:take])
            train.extend(members[take:])
        return np.sort(np.asarray(train, dtype=int)), np.sort(np.asarray(validation, dtype=int))

    def summary(self) -> dict:
        """Plain values for a run record."""
        return {"name": self.name, "classes": list(self.class_names), "counts": self.counts,
                "images": len(self), "skipped": len(self.skipped), "root": str(self.root), "digest": self.digest,
                "files": [str(f.relative_to(self.root)) for f in self.files]}


class _ContentDigest:
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
        files: (label, stored PNG bytes) in storing order.
    """
    digest = _ContentDigest()
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


def _is_skipped(parts: Sequence[str]) -> bool:
    return any(part in SKIPPED_NAMES or part.startswith(".") for part in parts)


def _too_many_images(settings: Settings, received: str) -> DatasetError:
    return DatasetError(
        f"A dataset may hold at most {settings.max_dataset_images:,} images (TL_MAX_DATASET_IMAGES). "
        f"Received: {received}"
    )


def _check_image_count(count: int, name: str, settings: Settings) -> None:
    if count > settings.max_dataset_images:
        raise _too_many_images(settings, f"{count:,} files in class folders in {name}")


def _stored_files(root: Path) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """The images of a stored upload, in storing order (their names count across classes)."""
    found = sorted((int(path.stem), int(path.parent.name), path) for path in root.glob("*/*.png"))
    return tuple(path for _, _, path in found), tuple(label for _, label, _ in found)


def _open_stored(root: Path, name: str, settings: Settings) -> ImageDataset | None:
    """A finished stored dataset, or None; refused if it is over today's budgets."""
    try:
        digest = (root / DIGEST_FILE).read_text(encoding="utf-8").strip()
        record = json.loads((root / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files, labels = _stored_files(root)
    _check_image_count(len(files), name, settings)
    pixels = int(record.get("pixels", 0))
    if pixels > settings.max_dataset_pixels:
        raise _too_many_pixels(settings, f"{pixels:,} pixels in {name}")
    return ImageDataset(root, tuple(record["classes"]), files, labels, tuple(record.get("skipped", ())),
                        name or record.get("name", ""), digest)


def _too_many_pixels(settings: Settings, received: str) -> DatasetError:
    return DatasetError(
        f"A dataset may hold at most {settings.max_dataset_pixels:,} pixels in all, as stored "
        f"(TL_MAX_DATASET_PIXELS). Received: {received}"
    )


Item = tuple[str, str, Callable[[], ImageSource]]
"""(class name, display name, read): ``read()`` returns the image's bytes or source."""


def _store(items: Sequence[Item], name: str, settings: Settings, *, key: str | None,
           expected_bytes: int, source: str, skipped: Sequence[str] = ()) -> ImageDataset:
    """Decode, re-encode and file each item; check the result; move it into place under its id.

    Args:
        items: what to store, in order.
        name: where it came from, for people.
        key: the upload's id; None to use the content digest.
        expected_bytes: the declared size, checked against the data cap before writing.
        source: "archive", "uploads" or "folder", for the record.
        skipped: inputs already left out (system files, files outside class folders).
    """
    _check_image_count(len(items), name, settings)
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
    digest = _ContentDigest()
    pixels = 0
    try:
        for class_name, display, read in items:
            try:
                image = load_image(read())
            except (ImageError, OSError) as exc:
                skipped.append(f"{display}: {exc}")
                continue
            image.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
            pixels += image.width * image.height
            if pixels > settings.max_dataset_pixels:
                raise _too_many_pixels(settings, f"more than that in {name}, passed at image {len(relative) + 1:,} "
                                                 f"({display})")
            if len(relative) >= settings.max_dataset_images:
                raise _too_many_images(settings, f"more than that in {name}")
            if class_name not in class_names:
                class_names.append(class_name)
            label = class_names.index(class_name)
            encoded = io.BytesIO()
            image.save(encoded, "PNG")
            data = encoded.getvalue()
            budget.take(len(data))
            path = f"{label}/{len(relative):06d}.png"
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
            existing = _open_stored(root, name, settings)
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


def _clean_name(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip()


def _strip_wrapper(paths: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Descend through one folder that wraps everything (``photos/cats/1.jpg``)."""
    while paths and all(len(p) >= 3 for p in paths) and len({p[0] for p in paths}) == 1:
        paths = [p[1:] for p in paths]
    return paths


def _check_no_overlap(members: list[zipfile.ZipInfo], data: bytes, end_of_entries: int) -> None:
    """Refuse members whose stored bytes overlap another's (the overlapping-files zip bomb).

    Each member spans its local header (30 bytes, its name and its extra field, as
    that header gives them) and its compressed data; it must end before the next
    member's header starts, and the last before the central directory.
    """
    ordered = sorted(members, key=lambda info: info.header_offset)
    for info, following in zip(ordered, [*ordered[1:], None]):
        offset = info.header_offset
        header = data[offset:offset + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise DatasetError(
                "Archive members must start with a local header where the directory says. "
                f"Received: {info.filename!r}, whose header is missing (a damaged or crafted zip)"
            )
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        end = offset + 30 + name_length + extra_length + info.compress_size
        limit = following.header_offset if following is not None else end_of_entries
        if end > limit:
            other = repr(following.filename) if following is not None else "the archive's directory"
            raise DatasetError(
                "Archive members may not overlap each other. "
                f"Received: {info.filename!r} overlaps {other} (an overlapping-files zip bomb?)"
            )


def _check_archive(archive: zipfile.ZipFile, settings: Settings, data: bytes) -> list[zipfile.ZipInfo]:
    """Refuse the whole archive, with the reason, before reading any member."""
    members = archive.infolist()
    if len(members) > settings.max_archive_files:
        raise DatasetError(
            f"An archive may hold at most {settings.max_archive_files:,} files. Received: {len(members):,}"
        )
    total = 0
    for info in members:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if "\x00" in info.orig_filename or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise DatasetError(
                "Archive member names must be relative paths inside the archive. "
                f"Received: {info.orig_filename!r}"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"An archive may not contain links. Received: {name!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise DatasetError(f"An archive may not be encrypted. Received: {name!r} is encrypted")
        if len(parts) > settings.max_archive_depth:
            raise DatasetError(
                f"Archive folders may be at most {settings.max_archive_depth} deep. "
                f"Received: {name!r} ({len(parts)} deep)"
            )
        total += info.file_size
        if total > settings.max_archive_bytes:
            raise DatasetError(
                f"An archive may unpack to at most {settings.max_archive_bytes:,} bytes. "
                f"Received: more than that (at {name!r})"
            )
        if info.file_size and info.file_size > settings.max_compression_ratio * max(info.compress_size, 1):
            raise DatasetError(
                f"Archive members may be compressed at most {settings.max_compression_ratio}:1. "
                f"Received: {name!r} at {info.file_size / max(info.compress_size, 1):,.0f}:1 (a zip bomb?)"
            )
    _check_no_overlap(members, data, getattr(archive, "start_dir", len(data)))
    return members


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read a member, trusting its declared size no further than the bytes actually read."""
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise DatasetError(
            f"Archive members must be no larger than they declare. Received: {info.filename!r} is larger"
        )
    return data


def _classified(entries: list[tuple[object, tuple[str, ...], str]], skipped: list[str]) -> list[tuple[str, str, object]]:
    """(handle, path parts, display name) -> (class, display name, handle) for each image in a class folder.

    System and hidden entries are dropped, one wrapping folder is descended
    through, and files outside any class folder are skipped and listed.
    """
    kept = [entry for entry in entries if not _is_skipped(entry[1])]
    stripped = _strip_wrapper([parts for _, parts, _ in kept])
    classified = []
    for (handle, _, display), parts in zip(kept, stripped):
        if len(parts) < 2:
            skipped.append(f"{display}: not inside a class folder")
            continue
        classified.append((_clean_name(parts[0]), display, handle))
    return classified


def _archive_items(archive: zipfile.ZipFile, settings: Settings, data: bytes,
                   skipped: list[str]) -> tuple[list[Item], int]:
    """The archive's images in class folders, read lazily, and their declared bytes."""
    members = [i for i in _check_archive(archive, settings, data) if not i.is_dir()]
    entries = [(i, PurePosixPath(i.filename.replace("\\", "/")).parts, i.filename) for i in members]
    items: list[Item] = []
    declared = 0
    for class_name, display, info in _classified(entries, skipped):
        items.append((class_name, display, lambda info=info: _read_capped(archive, info)))
        declared += info.file_size
    return items, declared


def _read_regular_file(path: str) -> bytes:
    """A regular file's bytes, never through a link (O_NOFOLLOW) and never a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"An image must be a regular file. Received: {os.path.basename(path)!r}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def _folder_items(folder: Path, settings: Settings, skipped: list[str]) -> tuple[list[Item], int]:
    """The folder's images in class folders and their bytes on disk, without following any link.

    Links (to files or folders) are listed as skipped and never opened; FIFOs and
    devices are skipped; files whose real path leaves the folder are skipped.

    Raises:
        DatasetError: more files than ``max_dataset_images`` or more bytes than
            ``max_archive_bytes`` (checked while listing, before reading any file).
    """
    top = Path(os.path.realpath(folder))
    found: list[tuple[str, tuple[str, ...], str]] = []
    total = 0
    for directory, subfolders, names in os.walk(top, followlinks=False):
        depth = len(Path(directory).relative_to(top).parts)
        for sub in list(subfolders):
            full = os.path.join(directory, sub)
            if os.path.islink(full):
                subfolders.remove(sub)
                skipped.append(f"{os.path.relpath(full, top)}: a link (links are not followed)")
            elif sub.startswith(".") or sub in SKIPPED_NAMES:
                subfolders.remove(sub)
            elif depth + 1 >= settings.max_archive_depth:
                subfolders.remove(sub)
                skipped.append(f"{os.path.relpath(full, top)}: more than {settings.max_archive_depth} "
                               "folders deep (not read)")
        subfolders.sort()
        for name in sorted(names):
            full = os.path.join(directory, name)
            shown = os.path.relpath(full, top)
            try:
                info = os.lstat(full)
            except OSError:  # gone meanwhile
                continue
            if stat.S_ISLNK(info.st_mode):
                skipped.append(f"{shown}: a link (links are not followed)")
                continue
            if not stat.S_ISREG(info.st_mode) or not Path(os.path.realpath(full)).is_relative_to(top):
                skipped.append(f"{shown}: not a regular file inside the folder")
                continue
            found.append((full, Path(shown).parts, shown))
            total += info.st_size
            if len(found) > settings.max_dataset_images:
                raise _too_many_images(settings, f"more than that many files in {folder.name}")
            if total > settings.max_archive_bytes:
                raise DatasetError(
                    f"A dataset folder may hold at most {settings.max_archive_bytes:,} bytes of files "
                    f"(TL_MAX_ARCHIVE_BYTES). Received: more than that in {folder.name}"
                )
    items = [(class_name, display, lambda full=full: _read_regular_file(full))
             for class_name, display, full in _classified(found, skipped)]
    return items, total


def server_folder(typed: str) -> Path:
    """Resolve a folder typed by a visitor, allowing only folders inside ``TL_DATASET_ROOTS``.

    The path is resolved (links and ``..`` followed) before it is compared, so no
    spelling leaves the allowed folders; nothing outside them is checked for
    existence, listed or read. A relative path is looked up in each allowed folder.

    Args:
        typed: what the visitor typed.

    Returns:
        The resolved folder, inside one of the allowed folders.

    Raises:
        DatasetError: no allowed folders are set (the option is off), the path
            leaves them, or it is not a folder.
    """
    roots = load_settings().dataset_roots
    if not roots:
        raise DatasetError(
            "A folder on the server may be used only inside a folder listed in TL_DATASET_ROOTS, and this "
            f"server lists none, so the option is off. Received: {typed!r}; upload a .zip instead"
        )
    allowed = ", ".join(str(root) for root in roots)
    text = typed.strip()
    if not text or "\x00" in text:
        raise DatasetError(f"A server folder must be a path inside {allowed} (TL_DATASET_ROOTS). Received: {typed!r}")
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    candidates = [Path(text)] if os.path.isabs(text) else [root / text for root in real_roots]
    inside = []
    for candidate in candidates:
        resolved = Path(os.path.realpath(candidate))
        if any(resolved == root or resolved.is_relative_to(root) for root in real_roots):
            inside.append(resolved)
    if not inside:
        raise DatasetError(
            f"A server folder must be inside one of the allowed folders (TL_DATASET_ROOTS): {allowed}. "
            f"Received: {typed!r}, which leaves them once links and '..' are followed"
        )
    for resolved in inside:
        if resolved.is_dir():
            return resolved
    raise DatasetError(
        f"A server folder must be an existing folder inside {allowed} (TL_DATASET_ROOTS). "
        f"Received: {typed!r}, which is not a folder there"
    )


def load_dataset(
    source: str | os.PathLike | bytes | Mapping[str, Sequence[ImageSource]],
) -> ImageDataset:
    """Make a dataset from class folders, or reuse the stored one made from the same upload.

    Args:
        source: a folder of class folders; a zip archive of them (path or bytes,
            optionally under one top folder); or a mapping class name -> images.
            A folder is read as it is: links inside it are not followed. For a
            folder a visitor typed, pass it through ``server_folder`` first.

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
    if isinstance(source, Mapping):
        name = "uploaded files"
        if key is not None and (stored := _open_stored(datasets_dir(settings) / key, name, settings)) is not None:
            return stored
        items: list[Item] = [(_clean_name(c), f"{c}/{i}", lambda s=s: s)
                             for c, group in source.items() for i, s in enumerate(group)]
        declared = sum(len(s) for group in source.values() for s in group if isinstance(s, (bytes, bytearray)))
        return _store(items, name, settings, key=key, expected_bytes=declared, source="uploads")
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        items, declared = _folder_items(Path(source), settings, skipped)
        return _store(items, Path(source).name, settings, key=None, expected_bytes=declared, source="folder",
                      skipped=skipped)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"A dataset must be a folder or a .zip archive. Received: {str(path)!r} (not found)")
        data, name = path.read_bytes(), path.name
        key = upload_key(data)
    else:
        data, name = bytes(source), "uploaded archive"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            items, declared = _archive_items(archive, settings, data, skipped)  # checked even if stored before
            if (stored := _open_stored(datasets_dir(settings) / key, name, settings)) is not None:
                return stored
            return _store(items, name, settings, key=key, expected_bytes=declared, source="archive",
                          skipped=skipped)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DatasetError(
            f"A dataset archive must be a readable .zip file. Received: {name}, which is damaged "
            f"or not a zip ({exc})"
        ) from None


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


def _draw_sample(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
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


def sample_dataset(*, per_class: int = 64, size: int = 64, seed: int = 0) -> ImageDataset:
    """The built-in dataset: coloured circles, squares, triangles and stripes.

    Generated deterministically (no download) and stored once per
    (per_class, size, seed) in the data folder, with its digest.
    """
    return generated_dataset(f"sample-{per_class}-{size}-{seed}", SAMPLE_CLASSES, "built-in sample shapes",
                             per_class, lambda kind, rng: _draw_sample(kind, size, rng), np.random.default_rng(seed))


def generated_dataset(folder: str, class_names: Sequence[str], name: str, per_class: int,
                      draw: Callable[[str, np.random.Generator], Image.Image],
                      rng: np.random.Generator) -> ImageDataset:
    """A built-in dataset drawn by ``draw`` (one image of a class per call, class after class, from
    ``rng``), stored once in the data folder under ``folder`` with its records and digest.

    The folder is built under a temporary name and renamed whole, so another process
    drawing it at the same time, or a crash half-way, never leaves half a dataset.
    """
    class_names = tuple(class_names)
    root = datasets_dir(load_settings()) / folder
    if not (root / CLASSES_FILE).is_file():
        building = root.with_name(f"{BUILDING_PREFIX}{uuid.uuid4().hex}")  # swept if left unfinished
        digest = _ContentDigest()
        for label, kind in enumerate(class_names):
            (building / str(label)).mkdir(parents=True)
            for index in range(per_class):
                encoded = io.BytesIO()
                draw(kind, rng).save(encoded, "PNG")
                (building / str(label) / f"{index:06d}.png").write_bytes(encoded.getvalue())
                digest.add_file(label, encoded.getvalue())
        _write_generated_records(building, name, class_names, digest.finish(class_names), per_class)
        try:
            building.rename(root)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(building, ignore_errors=True)
    files, labels = [], []
    for label in range(len(class_names)):
        members = sorted((root / str(label)).glob("*.png"))
        files.extend(members)
        labels.extend([label] * len(members))
    try:
        digest_text = (root / DIGEST_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:  # stored before datasets had digests: read the files once
        digest_text = content_digest(class_names, ((label, path.read_bytes()) for path, label in zip(files, labels)))
        _write_generated_records(root, name, class_names, digest_text, per_class)
    return ImageDataset(root, class_names, tuple(files), tuple(labels), (), name, digest_text)


def _write_generated_records(root: Path, name: str, class_names: tuple[str, ...], digest: str, per_class: int) -> None:
    record = {"name": name, "source": "sample", "classes": list(class_names),
              "images": per_class * len(class_names), "created": time.time(), "digest": digest}
    atomic_write_text(root / RECORD_FILE, json.dumps(record))
    atomic_write_text(root / CLASSES_FILE, "\n".join(class_names))
    atomic_write_text(root / DIGEST_FILE, digest)
