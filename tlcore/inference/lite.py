"""Answers without TensorFlow: a classifier's LiteRT copy, kept in the data folder.

Importing TensorFlow and Keras takes 3 to 5 s on 2 cores, before a model is even built, and
Predict's first answer after a server start used to wait for it (issue 18). A pretrained
classifier's LiteRT copy (float32, the backbone's preprocessing inside: raw 0..255 RGB pixels in,
the probabilities out, as ``tlcore.deploy``'s TFLite export) answers without it: LiteRT
(``ai-edge-litert``) loads MobileNetV2's copy and answers in about 0.1 s.

The copy is written once per network, weights and library versions (``tlcore.deploy.lite_copy``),
by the first server that builds the Keras classifier; later servers read it here. Its key changes
whenever its weights file (size, time written), its seed (random weights) or the Keras or
TensorFlow version does, so a copy never answers for other weights. This module imports neither
Keras nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tlcore.core.settings import load_settings
from tlcore.data.images import ImageSource, ResizeMode, fit_image, load_image
from tlcore.inference.top_k import class_names, top_k_table
from tlcore.models.imagenet_files import weights_status
from tlcore.models.zoo import get_backbone

LITE_FOLDER = "lite"
"""Where the copies are kept, inside ``TL_DATA_DIR``."""
LITE_LAYOUT = 1
"""The copy's own layout (raw pixels in, preprocessing inside, probabilities out): part of every key,
so a change to how copies are made never reads an older one."""
_LIBRARIES = ("keras", "tensorflow-cpu", "tensorflow")

log = logging.getLogger(__name__)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@functools.cache
def _versions() -> str:
    """The libraries' versions as a key reads them: looked up once per process (0.5 ms a time, and Predict
    asks for a key on every rerun)."""
    return "|".join(f"{package} {_version(package)}" for package in _LIBRARIES)


@dataclasses.dataclass(frozen=True)
class LiteKey:
    """Which classifier a LiteRT copy stands for.

    Attributes:
        backbone: the registry name.
        kind: "imagenet", "random" (the pages' seeded untrained weights) or "file-<digest of its path>".
        identity: a digest of the weights (file, size, time written; or the seed), the Keras and
            TensorFlow versions and ``LITE_LAYOUT``.
    """

    backbone: str
    kind: str
    identity: str

    @property
    def path(self) -> Path:
        return load_settings().data_dir / LITE_FOLDER / f"{self.backbone}-{self.kind}-{self.identity}.tflite"

    def others(self) -> list[Path]:
        """Copies of the same network and weights kind for other weights or versions (stale ones)."""
        folder = self.path.parent
        if not folder.is_dir():
            return []
        return [path for path in folder.glob(f"{self.backbone}-{self.kind}-*.tflite") if path != self.path]


def lite_key(backbone: str, weights: str | os.PathLike | None, *, seed: int) -> LiteKey | None:
    """The key of ``backbone``'s classifier with ``weights`` ("imagenet", a weights file, or None for
    random weights made with ``seed``); None when its weights file is not on this server."""
    name = get_backbone(backbone).name
    if weights is None:
        kind, fingerprint = "random", f"seed {seed}"
    else:
        file = (weights_status(name).path if weights == "imagenet" else Path(weights)).resolve()
        kind = "imagenet" if weights == "imagenet" else "file-" + hashlib.sha256(str(file).encode()).hexdigest()[:8]
        try:
            stat = file.stat()
        except OSError:
            return None
        fingerprint = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
    identity = hashlib.sha256(f"{name}|{fingerprint}|{_versions()}|layout {LITE_LAYOUT}".encode()).hexdigest()[:16]
    return LiteKey(name, kind, identity)


class LiteClassifier:
    """A classifier's LiteRT copy: one image's raw pixels in, its probabilities out.

    One interpreter, used by one caller at a time (a lock): a single image takes MobileNetV2 about
    7 ms, VGG16 about 140 ms on 2 cores.
    """

    def __init__(self, path: str | os.PathLike, *, backbone: str) -> None:
        from ai_edge_litert.interpreter import Interpreter  # about 0.1 s; no TensorFlow

        self.path = Path(path)
        self.backbone = get_backbone(backbone).name
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=os.cpu_count() or 1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.input_size: tuple[int, int] = tuple(int(side) for side in self._input["shape"][1:3])
        self._lock = threading.Lock()

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The probabilities of one image's raw RGB pixels, shape (height, width, 3), values 0..255."""
        batch = np.ascontiguousarray(pixels, dtype=np.float32)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output["index"])[0].copy()

    def top_k(self, image: ImageSource, *, k: int = 5, labels: Sequence[str] | None = None,
              mode: ResizeMode = "crop") -> pd.DataFrame:
        """``tlcore.predict_top_k``'s table for ``image``, answered by the copy (float32).

        Raises:
            ImageError: the image is not usable.
            ConfigError: labels that do not match the outputs.
        """
        fitted = fit_image(load_image(image), self.input_size, mode=mode)
        probabilities = self.probabilities(np.asarray(fitted, dtype=np.float32))
        return top_k_table(probabilities, class_names(len(probabilities), labels), k)


def open_lite(key: LiteKey | None) -> LiteClassifier | None:
    """The copy ``key`` names, or None when there is none (or ``TL_LITE_ANSWERS=0``).

    A copy LiteRT cannot open (cut short by a full disk, say) is removed, so the next Keras load writes
    it again; the caller answers with Keras meanwhile.
    """
    if key is None or not load_settings().lite_answers or not key.path.is_file():
        return None
    try:
        return LiteClassifier(key.path, backbone=key.backbone)
    except (ValueError, RuntimeError) as exc:
        log.warning("The LiteRT copy %s cannot be opened (%s); it is removed and will be written again.",
                    key.path, exc)
        key.path.unlink(missing_ok=True)
        return None
