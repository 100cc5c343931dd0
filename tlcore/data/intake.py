"""Intake of images from strangers: zip archives and folders, inspected before anything is read.

An archive is checked whole (member count, declared sizes, compression ratio, overlapping
entries) before any member is read, and a member is never read past its declared size (batch
prediction also reads a member's first bytes, and checks its declared size, before the rest); a
folder is listed without following links, FIFOs or devices. What passes comes out as
``Item`` rows (class name, display name, read) for ``tlcore.data.datasets`` to decode and
store, and for batch prediction to read.
"""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from PIL import Image

from tlcore.core.errors import DatasetError, ImageError
from tlcore.core.settings import Settings, load_settings
from tlcore.data.images import ACCEPTED_TEXT, DECODERS, ImageSource

SKIPPED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


def is_skipped(parts: Sequence[str]) -> bool:
    return any(part in SKIPPED_NAMES or part.startswith(".") for part in parts)


def too_many_images(settings: Settings, received: str) -> DatasetError:
    return DatasetError(
        f"A dataset may hold at most {settings.max_dataset_images:,} images (TL_MAX_DATASET_IMAGES). "
        f"Received: {received}"
    )


def check_image_count(count: int, name: str, settings: Settings) -> None:
    if count > settings.max_dataset_images:
        raise too_many_images(settings, f"{count:,} files in class folders in {name}")


Item = tuple[str, str, Callable[[], ImageSource]]
"""(class name, display name, read): ``read()`` returns the image's bytes or source."""


def clean_name(name: str) -> str:
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


def check_archive(archive: zipfile.ZipFile, settings: Settings, data: bytes) -> list[zipfile.ZipInfo]:
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


DAMAGED_MEMBER = (zlib.error, zipfile.BadZipFile, EOFError)
"""What reading a damaged member raises: its compressed bytes do not unpack, or fail their CRC-32."""


def damaged(info: zipfile.ZipInfo, exc: BaseException) -> DatasetError:
    return DatasetError(f"Archive members must unpack intact. Received: {info.filename!r} is damaged "
                        f"({exc or type(exc).__name__})")


def read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read a member, trusting its declared size no further than the bytes actually read.

    Raises:
        DatasetError: a member larger than it declares, or damaged.
    """
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except DAMAGED_MEMBER as exc:
        raise damaged(info, exc) from None
    if len(data) > info.file_size:
        raise DatasetError(
            f"Archive members must be no larger than they declare. Received: {info.filename!r} is larger"
        )
    return data


IMAGE_HEAD_BYTES = 16
"""How many first bytes Pillow looks at to recognise a format (``Image.open`` reads this prefix)."""
BYTES_PER_PIXEL = 8
"""The widest pixels the decoders read (16-bit RGBA): an image file stored plainly takes no more."""
METADATA_BYTES = 16 * 2**20
"""Room in an image file for what is not pixels: EXIF, colour profiles, thumbnails, text."""


def max_image_file_bytes(settings: Settings) -> int:
    """The largest image file worth reading: ``TL_MAX_IMAGE_PIXELS`` pixels stored plainly, and metadata."""
    return settings.max_image_pixels * BYTES_PER_PIXEL + METADATA_BYTES


def image_format(head: bytes) -> str | None:
    """The allowed format whose signature ``head`` (a file's first bytes) carries, as Pillow tells; else None."""
    Image.init()
    for name in DECODERS:
        accept = Image.OPEN[name][1]
        accepted = accept is None or accept(head[:IMAGE_HEAD_BYTES])
        if accepted and not isinstance(accepted, str):  # a str is Pillow declining, with a warning
            return name
    return None


def check_image_size(size: int, settings: Settings) -> None:
    """Refuse, before reading it, a file larger than any image worth reading (``max_image_file_bytes``)."""
    limit = max_image_file_bytes(settings)
    if size > limit:
        raise ImageError(
            f"An image file may be at most {limit:,} bytes ({BYTES_PER_PIXEL} bytes for each of the "
            f"TL_MAX_IMAGE_PIXELS={settings.max_image_pixels:,} pixels, and {METADATA_BYTES // 2**20} MiB of "
            f"metadata). Received: {size:,} bytes (not read)"
        )


def check_image_head(head: bytes) -> None:
    """Refuse a file whose first bytes are none or no allowed format's signature, before reading the rest."""
    if not head:
        raise ImageError("An image file must not be empty. Received: 0 bytes")
    if image_format(head) is None:
        start = " ".join(f"{byte:02x}" for byte in head[:8])
        raise ImageError(
            f"An image must be {ACCEPTED_TEXT}, recognised by its first bytes. "
            f"Received: a file starting {start} (not read further)"
        )


def read_image_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, settings: Settings) -> bytes:
    """Read a member that should be an image: its declared size, then its first bytes, are checked first.

    Raises:
        ImageError: a member too large to be an image (not opened), or one whose first
            bytes are no image's (only they are read).
        DatasetError: a member larger than it declares.
    """
    check_image_size(info.file_size, settings)
    try:
        with archive.open(info) as member:
            check_image_head(member.read(IMAGE_HEAD_BYTES))
    except DAMAGED_MEMBER as exc:
        raise damaged(info, exc) from None
    return read_capped(archive, info)


def _classified(entries: list[tuple[object, tuple[str, ...], str]], skipped: list[str]) -> list[tuple[str, str, object]]:
    """(handle, path parts, display name) -> (class, display name, handle) for each image in a class folder.

    System and hidden entries are dropped, one wrapping folder is descended
    through, and files outside any class folder are skipped and listed.
    """
    kept = [entry for entry in entries if not is_skipped(entry[1])]
    stripped = _strip_wrapper([parts for _, parts, _ in kept])
    classified = []
    for (handle, _, display), parts in zip(kept, stripped):
        if len(parts) < 2:
            skipped.append(f"{display}: not inside a class folder")
            continue
        classified.append((clean_name(parts[0]), display, handle))
    return classified


def archive_items(archive: zipfile.ZipFile, settings: Settings, data: bytes,
                   skipped: list[str]) -> tuple[list[Item], int]:
    """The archive's images in class folders, read lazily, and their declared bytes."""
    members = [i for i in check_archive(archive, settings, data) if not i.is_dir()]
    entries = [(i, PurePosixPath(i.filename.replace("\\", "/")).parts, i.filename) for i in members]
    items: list[Item] = []
    declared = 0
    for class_name, display, info in _classified(entries, skipped):
        items.append((class_name, display, lambda info=info: read_capped(archive, info)))
        declared += info.file_size
    return items, declared


def _read_regular_file(path: str, top: Path) -> bytes:
    """A regular file's bytes, never through a link (O_NOFOLLOW) and never a FIFO or device, and only if the
    file opened lies inside ``top``: O_NOFOLLOW guards the last name only, and a folder on the way swapped
    for a link after the listing would lead outside."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"An image must be a regular file. Received: {os.path.basename(path)!r}")
        proc = f"/proc/self/fd/{fd}"  # the file this descriptor opened, wherever the path now leads
        opened = Path(os.readlink(proc) if os.path.exists(proc) else os.path.realpath(path))
        if not opened.is_relative_to(top):
            raise ImageError("An image of a server folder must lie inside that folder. Received: "
                             f"{os.path.basename(path)!r} opened outside it (a folder on its way became a link)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def folder_items(folder: Path, settings: Settings, skipped: list[str]) -> tuple[list[Item], int]:
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
                raise too_many_images(settings, f"more than that many files in {folder.name}")
            if total > settings.max_archive_bytes:
                raise DatasetError(
                    f"A dataset folder may hold at most {settings.max_archive_bytes:,} bytes of files "
                    f"(TL_MAX_ARCHIVE_BYTES). Received: more than that in {folder.name}"
                )
    items = [(class_name, display, lambda full=full: _read_regular_file(full, top))
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
