"""Image datasets: class folders, zip archives, uploads grouped by class, and a built-in sample.

Every image is decoded by ``load_image`` and re-encoded as a clean PNG under a
generated name in a fresh folder of the data directory, so user-supplied names
never become paths and an image that passed the checks can never crash training.
Archives are inspected whole before anything is read, and refused with the reason.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import stat
import unicodedata
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from tlcore.atomic import atomic_write_text
from tlcore.errors import DatasetError, ImageError
from tlcore.images import ImageSource, ResizeMode, fit_image, load_image
from tlcore.settings import Settings, load_settings

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
    """

    root: Path
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    skipped: tuple[str, ...] = ()
    name: str = ""

    def __len__(self) -> int:
        return len(self.files)

    @property
    def counts(self) -> dict[str, int]:
        """Images per class."""
        tally = np.bincount(np.asarray(self.labels, dtype=int), minlength=len(self.class_names))
        return dict(zip(self.class_names, (int(n) for n in tally)))

    def arrays(self, size: tuple[int, int], *, mode: ResizeMode = "crop") -> tuple[np.ndarray, np.ndarray]:
        """All images fitted to (height, width): uint8 (n, h, w, 3) and int labels (n,)."""
        pixels = np.stack([np.asarray(fit_image(Image.open(f).convert("RGB"), size, mode=mode)) for f in self.files])
        return pixels, np.asarray(self.labels, dtype=np.int64)

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
                "images": len(self), "skipped": len(self.skipped), "root": str(self.root),
                "files": [str(f.relative_to(self.root)) for f in self.files]}


def _is_skipped(parts: Sequence[str]) -> bool:
    return any(part in SKIPPED_NAMES or part.startswith(".") for part in parts)


def _fresh_folder(settings: Settings) -> Path:
    root = settings.data_dir / "datasets" / uuid.uuid4().hex
    root.mkdir(parents=True)
    return root


def _store(items: Iterable[tuple[str, str, ImageSource]], name: str, settings: Settings) -> ImageDataset:
    """Decode, re-encode and file each (class, display name, source); then check the result."""
    root = _fresh_folder(settings)
    class_names: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    skipped: list[str] = []
    try:
        for class_name, display, source in items:
            try:
                image = load_image(source)
            except ImageError as exc:
                skipped.append(f"{display}: {exc}")
                continue
            if class_name not in class_names:
                class_names.append(class_name)
            label = class_names.index(class_name)
            image.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
            path = root / str(label) / f"{len(files):06d}.png"
            path.parent.mkdir(exist_ok=True)
            image.save(path, "PNG")
            files.append(path)
            labels.append(label)
        dataset = ImageDataset(root, tuple(class_names), tuple(files), tuple(labels), tuple(skipped), name)
        _check_usable(dataset)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    atomic_write_text(root / "classes.txt", "\n".join(class_names))
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


def _check_archive(archive: zipfile.ZipFile, settings: Settings) -> list[zipfile.ZipInfo]:
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


def _classified(entries: list[tuple[object, tuple[str, ...], str]], skipped: list[str]):
    """(handle, path parts, display name) -> (class, display name, handle) for each image in a class folder.

    System and hidden entries are dropped, one wrapping folder is descended
    through, and files outside any class folder are skipped and listed.
    """
    kept = [entry for entry in entries if not _is_skipped(entry[1])]
    stripped = _strip_wrapper([parts for _, parts, _ in kept])
    for (handle, _, display), parts in zip(kept, stripped):
        if len(parts) < 2:
            skipped.append(f"{display}: not inside a class folder")
            continue
        yield _clean_name(parts[0]), display, handle


def _archive_items(archive: zipfile.ZipFile, settings: Settings, skipped: list[str]):
    members = [i for i in _check_archive(archive, settings) if not i.is_dir()]
    entries = [(i, PurePosixPath(i.filename.replace("\\", "/")).parts, i.filename) for i in members]
    for class_name, display, info in _classified(entries, skipped):
        yield class_name, display, _read_capped(archive, info)


def _folder_items(folder: Path, skipped: list[str]):
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    entries = [(path, path.relative_to(folder).parts, str(path.relative_to(folder))) for path in files]
    yield from _classified(entries, skipped)


def load_dataset(
    source: str | os.PathLike | bytes | Mapping[str, Sequence[ImageSource]],
) -> ImageDataset:
    """Make a dataset from class folders.

    Args:
        source: a folder of class folders; a zip archive of them (path or bytes,
            optionally under one top folder); or a mapping class name -> images.

    Returns:
        The stored dataset; unreadable images are skipped and listed in ``skipped``.

    Raises:
        DatasetError: an unsafe or damaged archive, fewer than 2 classes, or a
            class with fewer than 2 usable images.
    """
    settings = load_settings()
    skipped: list[str] = []
    if isinstance(source, Mapping):
        items = ((_clean_name(c), f"{c}/{i}", s) for c, group in source.items() for i, s in enumerate(group))
        return _store(items, "uploaded files", settings)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = Path(source)
        dataset = _store(_folder_items(folder, skipped), folder.name, settings)
        return dataclasses.replace(dataset, skipped=tuple(skipped) + dataset.skipped)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"A dataset must be a folder or a .zip archive. Received: {str(path)!r} (not found)")
        data, name = path.read_bytes(), path.name
    else:
        data, name = bytes(source), "uploaded archive"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            dataset = _store(_archive_items(archive, settings, skipped), name, settings)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DatasetError(
            f"A dataset archive must be a readable .zip file. Received: {name}, which is damaged "
            f"or not a zip ({exc})"
        ) from None
    return dataclasses.replace(dataset, skipped=tuple(skipped) + dataset.skipped)


SAMPLE_CLASSES = ("circle", "square", "triangle", "stripes")


def _draw_sample(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    background = rng.integers(150, 256, 3)
    noise = rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 140, 3))
    extent = rng.uniform(0.35, 0.7) * size
    x, y = rng.uniform(0, size - extent, 2)
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
    (per_class, size, seed) in the data folder.
    """
    settings = load_settings()
    root = settings.data_dir / "datasets" / f"sample-{per_class}-{size}-{seed}"
    if not (root / "classes.txt").is_file():
        rng = np.random.default_rng(seed)
        building = root.with_name(root.name + f".{uuid.uuid4().hex}")
        for label, kind in enumerate(SAMPLE_CLASSES):
            (building / str(label)).mkdir(parents=True)
            for index in range(per_class):
                _draw_sample(kind, size, rng).save(building / str(label) / f"{index:06d}.png")
        atomic_write_text(building / "classes.txt", "\n".join(SAMPLE_CLASSES))
        try:
            building.rename(root)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(building, ignore_errors=True)
    files, labels = [], []
    for label in range(len(SAMPLE_CLASSES)):
        members = sorted((root / str(label)).glob("*.png"))
        files.extend(members)
        labels.extend([label] * len(members))
    return ImageDataset(root, SAMPLE_CLASSES, tuple(files), tuple(labels), (), "built-in sample shapes")
