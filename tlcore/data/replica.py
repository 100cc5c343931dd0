"""Copies of stored datasets on machines without the server's disk, kept by content digest.

A job that trains on another machine needs its dataset there. The server describes the
dataset (``manifest``) and hands its files over in parts (``parts``); the machine that trains
keeps a copy in its own data folder, ``<its TL_DATA_DIR>/datasets/<digest>``, in the layout
of every stored dataset, so the next job on the same dataset finds it and nothing travels.

A copy is written as a dataset upload is: under the same budgets (images, stored pixels,
``TL_MAX_DATA_GB`` counted as each byte is written), in a hidden folder renamed into place
only once every file arrived and the content digest of what arrived is the one asked for.
A transfer cut off halfway leaves no dataset that looks finished: the receiver that is
told removes its hidden folder, and one whose process was killed leaves a hidden folder
named with its process id, which the next copy on that machine removes (that process is gone). File names are made here from
the labels and positions, never taken from what was received.

Plain Python: the transport (Ray's object store) is the training wing's business.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from tlcore.core.atomic import atomic_write_bytes, atomic_write_text
from tlcore.core.errors import DatasetError
from tlcore.core.orphans import owned_name, remove_orphans
from tlcore.core.settings import load_settings
from tlcore.core.storage import (
    BUILDING_PREFIX,
    CLASSES_FILE,
    DIGEST_FILE,
    RECORD_FILE,
    WriteBudget,
    datasets_dir,
    sweep_unfinished,
)
from tlcore.data.datasets import ContentDigest, ImageDataset, open_stored, too_many_pixels
from tlcore.data.images import STORED_SUFFIXES
from tlcore.data.intake import check_image_count

PART_BYTES = 32 * 2**20
"""A transfer hands files over in parts of about this many bytes, so neither side holds a whole dataset."""
COPY_PREFIX = f"{BUILDING_PREFIX}copy-"
"""Hidden folder of a copy being received: ``.building-copy-<pid>-<random>``."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a dataset is, without its bytes: enough to check the budgets before any is sent.

    Attributes:
        digest: the content digest (``ImageDataset.digest``): the copy's name and its check.
        name: for people.
        class_names: in label order.
        labels: one per file, in storing order.
        suffixes: each file's extension (``STORED_SUFFIXES``), in storing order.
        sizes: each file's bytes, in storing order.
        pixels: stored pixels in all, as the server's record says.
    """

    digest: str
    name: str
    class_names: tuple[str, ...]
    labels: tuple[int, ...]
    suffixes: tuple[str, ...]
    sizes: tuple[int, ...]
    pixels: int

    @property
    def bytes(self) -> int:
        return sum(self.sizes)


def manifest(dataset: ImageDataset) -> Manifest:
    """The server's description of ``dataset`` (reads the sizes, not the files).

    Raises:
        DatasetError: the dataset has no content digest (an unfinished or very old store).
    """
    if not dataset.digest:
        raise DatasetError(f"A dataset sent to another machine needs its content digest. Received: "
                           f"{dataset.name} has none; store it again")
    try:
        pixels = int(json.loads((dataset.root / RECORD_FILE).read_text(encoding="utf-8")).get("pixels", 0))
    except (OSError, ValueError):
        pixels = 0
    return Manifest(dataset.digest, dataset.name, tuple(dataset.class_names), tuple(dataset.labels),
                    tuple(path.suffix for path in dataset.files), tuple(path.stat().st_size for path in dataset.files),
                    pixels)


def parts(dataset: ImageDataset, part_bytes: int = PART_BYTES) -> Iterator[list[bytes]]:
    """The dataset's files, in storing order, in lists of about ``part_bytes`` (one file at least)."""
    part: list[bytes] = []
    size = 0
    for path in dataset.files:
        data = path.read_bytes()
        if part and size + len(data) > part_bytes:
            yield part
            part, size = [], 0
        part.append(data)
        size += len(data)
    if part:
        yield part


def local_copy(dataset_or_digest: ImageDataset | str) -> ImageDataset | None:
    """This machine's finished copy of a dataset, or None.

    An ``ImageDataset`` stored in this machine's own data folder with the same digest (the
    server's own machine, or a data folder shared at the same path) is itself the copy;
    otherwise ``<TL_DATA_DIR>/datasets/<digest>``. A folder outside this machine's data
    folder is never read, even when it happens to be reachable.
    """
    settings = load_settings()
    if isinstance(dataset_or_digest, ImageDataset):
        dataset, digest = dataset_or_digest, dataset_or_digest.digest
        if not digest:
            return None
        try:
            if dataset.root.resolve().parent == datasets_dir(settings).resolve() \
                    and (dataset.root / DIGEST_FILE).read_text(encoding="utf-8").strip() == digest:
                return dataset
        except OSError:
            pass
    else:
        digest = dataset_or_digest
    if not _is_digest(digest):
        return None
    return open_stored(datasets_dir(settings) / digest, "", settings)


MODEL_COPIES = "model-copies"
"""Folder, in a worker machine's data folder, of the saved models jobs build on (develop-a-model), by sha256."""


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_file(path: str, digest: str) -> str | None:
    """Where this machine holds the file ``path`` of the server with sha256 ``digest``, or None.

    The path itself when it lies in this machine's own data folder (the server's machine, or a shared
    folder); else a copy under ``<TL_DATA_DIR>/model-copies/<digest><suffix>``.
    """
    settings = load_settings()
    given = Path(path)
    try:
        if given.resolve().is_relative_to(settings.data_dir.resolve()) and given.is_file():
            return str(given)
    except OSError:
        pass
    if not _is_digest(digest):
        return None
    copy = settings.data_dir / MODEL_COPIES / f"{digest}{given.suffix}"
    return str(copy) if copy.is_file() else None


def keep_file(data: bytes, digest: str, suffix: str) -> str:
    """Keep ``data`` (a file sent by the server) under its sha256, counted against ``TL_MAX_DATA_GB``.

    Raises:
        DatasetError: the bytes are not the ones named by ``digest``, or an unexpected suffix.
        StorageError: no room for them.
    """
    if suffix not in (".keras", ".h5") or not _is_digest(digest) or hashlib.sha256(data).hexdigest() != digest:
        raise DatasetError(f"A model file sent to a worker must match its sha256 and end in .keras or .h5. "
                           f"Received: {len(data):,} bytes named {digest[:12]}...{suffix[:8]}")
    WriteBudget(expected=len(data), what="a copy of a saved model").take(len(data))
    copy = load_settings().data_dir / MODEL_COPIES / f"{digest}{suffix}"
    atomic_write_bytes(copy, data)
    return str(copy)


def _is_digest(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _whole(value: object) -> bool:
    """A whole number 0 or more: an int (numpy's too), never a bool, a float or a string."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _text(value: object) -> bool:
    return isinstance(value, str)


def _kind_problem(described: object) -> str | None:
    """What in a received description is not of the kind ``manifest`` writes, in words; None when all is.

    Texts are strings; class names, labels, extensions and sizes are lists or tuples, not strings; labels,
    sizes and pixels are whole numbers 0 or more (a label ``True`` was kept as a folder ``True/`` that no
    dataset reads, and a label ``1.0`` or a class name ``1`` failed with a Python error halfway through).
    """
    if not isinstance(described, Manifest):
        return f"a {type(described).__name__}, not a Manifest"
    if not isinstance(described.name, str):
        return f"name={described.name!r:.80}"
    for field, fits in (("class_names", _text), ("labels", _whole), ("suffixes", _text), ("sizes", _whole)):
        values = getattr(described, field)
        if not isinstance(values, list | tuple):
            return f"{field} as a {type(values).__name__}"
        odd = [value for value in values if not fits(value)][:1]
        if odd:
            return f"{odd[0]!r:.80} in {field}"
    return None if _whole(described.pixels) else f"pixels={described.pixels!r:.80}"


class Receiver:
    """One incoming copy: checks the manifest's budgets, writes parts as they come, checks the digest.

    Use ``begin``, then ``write`` for each part in order, then ``finish``; ``abandon`` (or a
    failure in any step) removes what was written.
    """

    def __init__(self, described: Manifest):
        settings = load_settings()
        self.manifest = described
        if (problem := _kind_problem(described)) is not None:
            raise DatasetError(f"A dataset's description must hold lists of class names, labels, extensions and "
                               f"sizes, text for its name, class names and extensions, and whole numbers 0 or more "
                               f"for each label, each size and its pixels. Received: {problem}")
        if not _is_digest(described.digest):
            raise DatasetError(f"A dataset's digest must be 64 hexadecimal digits. Received: {described.digest!r:.80}")
        count = len(described.labels)
        if not (count == len(described.suffixes) == len(described.sizes)):
            raise DatasetError(f"A dataset's description must give one label, extension and size per file. "
                               f"Received: {count}, {len(described.suffixes)} and {len(described.sizes)}")
        check_image_count(count, described.name, settings)
        if described.pixels > settings.max_dataset_pixels:
            raise too_many_pixels(settings, f"{described.pixels:,} pixels in {described.name}")
        bad = [s for s in described.suffixes if s not in STORED_SUFFIXES]
        if bad or any(not 0 <= label < len(described.class_names) for label in described.labels):
            raise DatasetError(f"A dataset's files must be {', '.join(STORED_SUFFIXES)} with labels below "
                               f"{len(described.class_names)}. Received: {bad[:3] or 'a label out of range'}")
        self._settings = settings
        self._budget: WriteBudget | None = None
        self._building: Path | None = None
        self._digest = ContentDigest()
        self._next = 0
        self.received = 0

    def begin(self) -> None:
        """Check the room for the whole copy, then open its hidden folder."""
        folder = datasets_dir(self._settings)
        folder.mkdir(parents=True, exist_ok=True)
        sweep_unfinished(self._settings)
        remove_orphans(folder, COPY_PREFIX)  # copies cut off mid-transfer (their process killed)
        self._budget = WriteBudget(expected=self.manifest.bytes, what=f"a copy of the dataset {self.manifest.name}")
        self._building = folder / f"{owned_name(COPY_PREFIX)}{uuid.uuid4().hex}"
        self._building.mkdir()

    def write(self, files: list[bytes]) -> None:
        """Write the next files, each named from its position and label."""
        try:
            for data in files:
                index = self._next
                if not isinstance(data, bytes):
                    raise DatasetError(f"File {index + 1:,} of the dataset copy must come as bytes. "
                                       f"Received: a {type(data).__name__}")
                if index >= len(self.manifest.labels):
                    raise DatasetError(f"A dataset copy must hold {len(self.manifest.labels):,} files. "
                                       f"Received: more than that")
                if len(data) != self.manifest.sizes[index]:
                    raise DatasetError(f"File {index + 1:,} of the dataset copy must be "
                                       f"{self.manifest.sizes[index]:,} bytes. Received: {len(data):,}")
                label = self.manifest.labels[index]
                self._budget.take(len(data))
                (self._building / str(label)).mkdir(exist_ok=True)
                (self._building / f"{label}/{index:06d}{self.manifest.suffixes[index]}").write_bytes(data)
                self._digest.add_file(label, data)
                self._next += 1
                self.received += len(data)
        except BaseException:
            self.abandon()
            raise

    def finish(self) -> ImageDataset:
        """Check that everything arrived and is what was asked for, then move the copy into place."""
        described = self.manifest
        try:
            if self._next != len(described.labels):
                raise DatasetError(f"A dataset copy must hold {len(described.labels):,} files. "
                                   f"Received: {self._next:,}")
            content = self._digest.finish(described.class_names)
            if content != described.digest:
                raise DatasetError(f"A dataset copy must have the digest it was sent under. Received: "
                                   f"{content[:12]}... for {described.digest[:12]}...; nothing was kept")
            record = {"name": described.name, "source": "copy", "classes": list(described.class_names),
                      "images": self._next, "pixels": described.pixels, "skipped": [], "digest": content,
                      "bytes": self.received}
            for file_name, text in ((CLASSES_FILE, "\n".join(described.class_names)),
                                    (RECORD_FILE, json.dumps(record)), (DIGEST_FILE, content)):
                self._budget.take(len(text.encode("utf-8")))
                atomic_write_text(self._building / file_name, text)
            root = datasets_dir(self._settings) / content
            try:
                self._building.rename(root)
            except OSError:  # another worker on this machine finished the same copy first: use that
                shutil.rmtree(self._building, ignore_errors=True)
            self._building = None
        except BaseException:
            self.abandon()
            raise
        stored = open_stored(root, described.name, self._settings)
        if stored is None:
            raise DatasetError(f"The copy of {described.name} could not be read back from {root}")
        return stored

    def abandon(self) -> None:
        if self._building is not None:
            shutil.rmtree(self._building, ignore_errors=True)
            self._building = None
