"""Safe decoding and resizing of user images.

Every image enters through ``load_image``: Pillow only, an allow-list of
formats checked by content (not by file name), a pixel limit checked before
decoding, and one output form: an upright 8-bit RGB ``PIL.Image``.
``kept_suffix`` says whether bytes ``load_image`` accepted may be stored as they
came, which is how datasets keep JPEGs small.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tlcore.core.errors import BudgetError, ImageError
from tlcore.core.settings import Settings, load_settings

ImageSource = bytes | bytearray | str | os.PathLike | BinaryIO | Image.Image
ResizeMode = Literal["crop", "squash"]

DECODERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
"""The only Pillow decoders that ever see an upload's bytes."""
ALLOWED_FORMATS = (*DECODERS, "MPO")
"""Formats accepted once decoded (MPO, the JPEG variant phone cameras write, comes from the JPEG decoder)."""

ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"
KEPT_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
"""Formats whose validated bytes may be stored as they came, with the extension they are stored under."""
STORED_SUFFIXES = tuple(sorted(set(KEPT_FORMATS.values())))
"""Extensions of stored image files: the kept formats (images stored re-encoded are PNG)."""
_PLAIN_MODES = frozenset({"1", "L", "P", "RGB", "CMYK", "YCbCr"})
"""Modes ``to_rgb`` turns into RGB with a plain ``convert("RGB")`` (a "P" one only without transparency)."""
_TRANSPOSING = frozenset(range(2, 9))
"""EXIF orientations ``ImageOps.exif_transpose`` turns or flips (1, or none, leaves the pixels as stored)."""
_ORIENTATION = 0x0112
"""The EXIF Orientation tag."""
RESIZE_MODES = ("crop", "squash")

_STANDALONE_MARKERS = frozenset({0x00, 0x01, 0xD8, *range(0xD0, 0xD8)})
"""JPEG markers without a length field (TEM, SOI, the restart markers RST0-RST7; 00 is not a marker)."""
_NOT_FILL = re.compile(rb"[^\xff]")
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""In entropy-coded data: 0xFF followed by a byte that is not stuffing (00), a restart or fill."""


def jpeg_structure(data: bytes, *, max_scans: int, max_segments: int) -> tuple[int, int]:
    """Count the scans (SOS markers, 0xFFDA) and marker segments of a JPEG's first picture, without decoding.

    Walks the marker segments by their lengths and skips each scan's entropy-coded
    data with one search, so it takes milliseconds however many scans there are.
    The walk ends at the first EOI (an MPO's later pictures are never decoded), at
    the end of the data, or as soon as a count passes its maximum.

    Args:
        data: the JPEG's bytes, starting with SOI (0xFFD8).
        max_scans: stop once there are more scans than this.
        max_segments: stop once there are more marker segments than this.

    Returns:
        (scans, segments) seen, each at most one past its maximum.
    """
    size, scans, segments = len(data), 0, 0
    pos = 2 if data[:2] == b"\xff\xd8" else 0
    while pos + 1 < size and scans <= max_scans and segments <= max_segments:
        if data[pos] != 0xFF:  # bytes between segments: resume at the next 0xFF, as decoders do
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # a run of fill bytes
            following = _NOT_FILL.search(data, pos + 1)
            if following is None:
                break
            pos = following.start() - 1
            continue
        if marker == 0xD9:  # EOI: the end of the first picture
            break
        segments += 1
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if pos + 4 > size:
            break
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            scans += 1
            following = _NEXT_MARKER.search(data, pos)  # the entropy-coded data ends at a marker
            if following is None:
                break
            pos = following.start()
    return scans, segments


def _open_bytes(source: ImageSource) -> tuple[BinaryIO, str]:
    """Return a binary stream and a name for messages."""
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(bytes(source)), "the uploaded bytes"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"An image path must name an existing file. Received: {str(path)!r}")
        return io.BytesIO(path.read_bytes()), repr(path.name)
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read()
        return io.BytesIO(data), repr(getattr(source, "name", "the uploaded file"))
    raise ImageError(
        f"An image source must be bytes, a path or a file object. Received: {type(source).__name__}"
    )


def _check_jpeg_structure(data: bytes, name: str, max_scans: int) -> None:
    """Refuse a JPEG whose scans (each a full decoding pass) or segments are past the budget."""
    max_segments = 1_000 + 4 * max_scans
    scans, segments = jpeg_structure(data, max_scans=max_scans, max_segments=max_segments)
    if scans > max_scans:
        raise ImageError(
            f"A JPEG may have at most {max_scans} scans (TL_MAX_JPEG_SCANS): each scan is a full "
            f"decoding pass. Received: {name} with more than {max_scans} scans."
        )
    if segments > max_segments:
        raise ImageError(
            f"A JPEG may have at most {max_segments:,} marker segments (1,000 plus 4 per scan allowed "
            f"by TL_MAX_JPEG_SCANS). Received: {name} with more than {max_segments:,}."
        )


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit single-channel images to 8-bit over their range.

    In the image's own integers or in float32, in place: in float64 with a temporary array a step, a
    92 KB 16-bit PNG of 40 million pixels took 1.3 GB to convert.
    """
    values = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) <= 65535
                                        and values.min(initial=0) >= 0):
        if values.max(initial=0) > 255:  # 0..65535 to 0..255, rounded to nearest (257 never halves a whole)
            values = values.astype(np.uint32)  # one copy, then in place
            values += 128
            values //= 257
        return Image.fromarray(values.astype(np.uint8), mode="L")
    scaled = np.array(values, dtype=np.float32)  # "I" outside 0..65535, or "F": stretch the actual range
    low, high = float(scaled.min(initial=0)), float(scaled.max(initial=0))
    if 0.0 <= low and high <= 1.0 and image.mode == "F":
        scaled *= 255.0
    else:
        scaled -= low
        scaled *= 255.0 / (high - low or 1.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def _on_white(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_white(image)
    return image.convert("RGB")


class DecodeBudget:
    """The pixels one dataset or batch may decode in all (``TL_MAX_DECODED_PIXELS``), each image counted
    from its header before it is decoded, as ``load_image`` will decode it (a JPEG perhaps at a reduced
    scale): decoding is where the CPU goes, and a 127 KB PNG may hold 40 million pixels."""

    def __init__(self, what: str, settings: Settings | None = None) -> None:
        self.what = what
        self.limit = (settings or load_settings()).max_decoded_pixels
        self.pixels = 0
        self.images = 0

    def take(self, width: int, height: int, name: str) -> None:
        """Count one image about to be decoded.

        Raises:
            BudgetError: the images so far hold more pixels than the budget.
        """
        self.pixels += width * height
        self.images += 1
        if self.pixels > self.limit:
            raise BudgetError(
                f"The images of {self.what} may hold at most {self.limit:,} pixels in all as decoded "
                f"(TL_MAX_DECODED_PIXELS). Received: more than that, passed at image {self.images:,} ({name}, "
                f"{width}x{height})"
            )


def load_image(source: ImageSource, *, max_pixels: int | None = None, largest_side: int | None = None,
               budget: DecodeBudget | None = None, name: str | None = None) -> Image.Image:
    """Decode an image safely into an upright RGB picture.

    Args:
        source: bytes, a path, a binary file object, or a PIL image.
        max_pixels: refuse larger images before decoding (default: the
            ``max_image_pixels`` setting, 40 million).
        largest_side: the side the caller will shrink the picture to fit within, if any: a JPEG at
            least four times as large decodes at a half, a quarter or an eighth of its size, never
            under twice that side (Pillow's ``draft``, as its own ``thumbnail`` does it).
        budget: counts the image's pixels, as it will be decoded, before decoding it.
        name: how messages name the image (default: its file's name, or "the uploaded bytes").

    Returns:
        An 8-bit RGB ``PIL.Image`` with its EXIF orientation applied; the first
        frame of an animation.

    Raises:
        ImageError: for an empty file, something that is not an image, a format
            outside JPEG/PNG/WebP/BMP/GIF/TIFF, a truncated file, an image over
            the pixel limit, one smaller than the minimum side, or a JPEG with
            more scans than ``max_jpeg_scans`` (counted before decoding).
        BudgetError: ``budget`` is spent.
    """
    settings = load_settings()
    max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    stream, opened_name = _open_bytes(source)
    name = opened_name if name is None else repr(name)
    if stream.getbuffer().nbytes == 0:
        raise ImageError(f"An image file must not be empty. Received: {name} (0 bytes)")
    Image.init()  # register every plugin, so the allow-list can name WebP and TIFF
    try:
        image = Image.open(stream, formats=DECODERS)  # other decoders never see the bytes
    except UnidentifiedImageError:
        raise ImageError(
            f"An image must be {ACCEPTED_TEXT}. Received: {name}, which is not an image "
            "in any of these formats."
        ) from None
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit, hit while opening
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "far more pixels"
        raise ImageError(
            f"An image must have at most {max_pixels:,} pixels. Received: {name} of {size}."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # a header cut short or malformed
        raise ImageError(
            f"An image file must be complete and readable. Received: {name}, whose header "
            f"could not be read ({exc})."
        ) from None
    if image.format not in ALLOWED_FORMATS:
        raise ImageError(
            f"An image must be {ACCEPTED_TEXT}. Received: {name} in {image.format} format."
        )
    if image.format in ("JPEG", "MPO"):
        _check_jpeg_structure(stream.getvalue(), name, settings.max_jpeg_scans)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"An image must have at most {max_pixels:,} pixels. "
            f"Received: {name} of {width}x{height} = {width * height:,} pixels."
        )
    if min(width, height) < settings.min_image_side:
        side = settings.min_image_side
        raise ImageError(
            f"An image must be at least {side}x{side} pixels. Received: {name} of {width}x{height}."
        )
    if largest_side is not None and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (2 * largest_side, 2 * largest_side))
    if budget is not None:
        budget.take(*image.size, name)
    try:
        image.seek(0)
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"An image file must be complete and readable. Received: {name}, which could "
            f"not be decoded ({exc})."
        ) from None
    return to_rgb(upright)


def kept_suffix(data: bytes, image: Image.Image) -> str | None:
    """The extension under which ``data`` may be stored as it came, or None to store ``image`` re-encoded.

    ``data`` must be bytes ``load_image`` accepted, and ``image`` what it returned (perhaps
    shrunk since). They are kept only if opening them with Pillow and converting to RGB,
    as reading a stored dataset does, gives exactly ``image``: JPEG, PNG or WebP
    (``KEPT_FORMATS``; not MPO), one frame, no EXIF turn, no alpha, no 16-bit or float
    values, and the size of ``image`` (not shrunk). And only in no more bytes than the
    raw pixels take, so nothing else rides along. Only the header is read (and, for a PNG,
    its EXIF chunk).

    Returns:
        ".jpg", ".png" or ".webp"; None to re-encode.
    """
    if len(data) > image.width * image.height * 3:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=tuple(KEPT_FORMATS)) as opened:
            if opened.format not in KEPT_FORMATS or opened.size != image.size:
                return None
            if getattr(opened, "n_frames", 1) != 1 or opened.mode not in _PLAIN_MODES:
                return None
            if opened.mode == "P" and "transparency" in opened.info:
                return None
            if opened.getexif().get(_ORIENTATION, 1) in _TRANSPOSING:
                return None
            return KEPT_FORMATS[opened.format]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def fit_image(image: Image.Image, size: tuple[int, int], *, mode: ResizeMode = "crop") -> Image.Image:
    """Resize to (height, width) as a model sees it.

    Args:
        image: an RGB image.
        size: (height, width) of the model input.
        mode: "crop" keeps the aspect ratio and cuts the centre (default);
            "squash" stretches the whole image to the size.
    """
    height, width = size
    if mode == "crop":
        return ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
    if mode == "squash":
        return image.resize((width, height), Image.Resampling.BILINEAR)
    raise ValueError(f"Resize mode must be one of {RESIZE_MODES}. Received: mode={mode!r}")


def to_batch(images: list[Image.Image], size: tuple[int, int], *, mode: ResizeMode = "crop") -> np.ndarray:
    """Stack images, fitted to ``size``, into a float32 (n, h, w, 3) array of 0..255."""
    return np.stack([np.asarray(fit_image(im, size, mode=mode), dtype=np.float32) for im in images])
