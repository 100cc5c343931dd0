"""The sample images that ship with the app (see samples/CREDITS.md)."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


def sample_images() -> dict[str, Path]:
    """Name -> path of each sample image, sorted by name."""
    return {path.stem: path for path in sorted(SAMPLES_DIR.glob("*.jpg"))}
