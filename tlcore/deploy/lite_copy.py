"""Writing a classifier's LiteRT copy (``tlcore.inference.lite`` reads it without TensorFlow).

The copy is the TFLite float32 export (``tlcore.deploy.formats``): raw 0..255 RGB pixels in, the
backbone's preprocessing inside, the probabilities out. Writing it takes TensorFlow's converter
(MobileNetV2 about 3 s, VGG16 about 25 s on 2 cores); it is written once per ``LiteKey``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import keras

from tlcore.core.atomic import atomic_write_bytes
from tlcore.core.storage import check_room
from tlcore.deploy.formats import tflite_bytes, write_saved_model
from tlcore.inference.lite import LiteKey

log = logging.getLogger(__name__)
LEFTOVER_SECONDS = 3600.0
"""A work folder of a copy (``lite-*``) older than this was left by a writer that was killed: it is removed."""


def write_lite_copy(model: keras.Model, key: LiteKey) -> Path:
    """Write ``model``'s LiteRT copy where ``key`` says, and remove the stale copies of the same network
    and weights kind (other weights files, other library versions).

    Args:
        model: the Keras classifier ``key`` stands for (a registry backbone with its top).
        key: ``tlcore.lite_key``'s answer for it.

    Raises:
        StorageError: the data folder has no room for the copy (``TL_MAX_DATA_GB``); nothing is written.
    """
    path = key.path
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path.parent)
    weights_bytes = 4 * model.count_params()  # float32: the copy's size, and its SavedModel's on the way
    check_room(2 * weights_bytes, what=f"{key.backbone}'s LiteRT copy")
    with tempfile.TemporaryDirectory(prefix="lite-", dir=path.parent) as work:
        saved = Path(work) / "saved_model"
        write_saved_model(model, key.backbone, saved)
        data = tflite_bytes(saved, "float32")
    atomic_write_bytes(path, data)
    for stale in key.others():
        stale.unlink(missing_ok=True)
    log.info("Wrote %s's LiteRT copy (%.1f MB) at %s.", key.backbone, len(data) / 1e6, path)
    return path


def _remove_leftovers(folder: Path) -> None:
    """Remove the work folders of writers killed mid-way (their SavedModel: the copy's size or more)."""
    for work in folder.glob("lite-*"):
        try:
            old = time.time() - work.stat().st_mtime > LEFTOVER_SECONDS
        except OSError:
            continue
        if old and work.is_dir():
            shutil.rmtree(work, ignore_errors=True)
