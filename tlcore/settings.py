"""Every limit and location tlcore uses, read from one place.

Each setting has a documented default and can be changed with an environment
variable named ``TL_<NAME>`` (for example ``TL_MAX_IMAGE_PIXELS=20000000``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Settings:
    """Limits and locations.

    Attributes:
        data_dir: where runs, datasets and uploaded weights are stored.
        max_image_pixels: images with more pixels are refused before decoding.
        min_image_side: images with a smaller side are refused.
        max_archive_files: dataset archives with more members are refused.
        max_archive_bytes: dataset archives that unpack to more bytes are refused.
        max_archive_depth: dataset archives with deeper folders are refused.
        max_compression_ratio: archive members compressed more than this are refused.
        max_training_jobs: how many training jobs run at once on one server.
        max_queued_jobs: how many training jobs may wait in line.
    """

    data_dir: Path = Path.home() / ".transfer-lab"
    max_image_pixels: int = 40_000_000
    min_image_side: int = 8
    max_archive_files: int = 20_000
    max_archive_bytes: int = 2_000_000_000
    max_archive_depth: int = 8
    max_compression_ratio: int = 100
    max_training_jobs: int = 1
    max_queued_jobs: int = 8


def _from_env(field: dataclasses.Field, environ: dict[str, str]) -> object:
    raw = environ.get(f"TL_{field.name.upper()}")
    if raw is None:
        return field.default
    if field.type in ("Path", Path):
        return Path(raw).expanduser()
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"Setting TL_{field.name.upper()} must be a whole number. Received: {raw!r}"
        ) from None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``TL_*`` environment variables over the defaults."""
    environ = dict(os.environ if environ is None else environ)
    return Settings(**{f.name: _from_env(f, environ) for f in dataclasses.fields(Settings)})
