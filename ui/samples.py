"""The sample images that ship with the app (see samples/CREDITS.md), and decoding images once."""

import hashlib
from pathlib import Path

import streamlit as st
from PIL import Image

import tlcore

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


def sample_images() -> dict[str, Path]:
    """Name -> path of each sample image, sorted by name."""
    return {path.stem: path for path in sorted(SAMPLES_DIR.glob("*.jpg"))}


@st.cache_resource(max_entries=8, ttl=3600, show_spinner="Decoding the image...")
def _decoded(key: str, _data: bytes) -> tuple[Image.Image | None, str | None]:
    try:
        return tlcore.load_image(_data), None
    except tlcore.ImageError as exc:
        return None, str(exc)


def decoded_image(data: bytes) -> Image.Image:
    """The image in ``data``, decoded once per distinct content (its sha256), for every session.

    The image is shared between reruns and sessions: read it, never change it.

    Raises:
        tlcore.ImageError: not a usable image (remembered too: it is not decoded again).
    """
    image, error = _decoded(hashlib.sha256(data).hexdigest(), data)
    if error is not None:
        raise tlcore.ImageError(error)
    return image
