"""Keras's ImageNet weights files: whether one is cached here, whether it can be downloaded, the download.

Plain Python (no Keras, no TensorFlow): the sidebar and Home ask these questions on every visit,
and they must answer before anything heavy is loaded (issue 18). Files use Keras's own cache
(``$KERAS_HOME/models``) and names, so a file Keras downloaded is found here and the reverse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tlcore.core.atomic import atomic_save
from tlcore.core.errors import WeightsError
from tlcore.core.settings import keras_cache_dir
from tlcore.models.zoo import BackboneSpec, WeightsFile, get_backbone

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None when the server does not say)."""

@dataclasses.dataclass(frozen=True)
class WeightsStatus:
    """Whether a backbone's ImageNet weights are here, found without downloading.

    Attributes:
        backbone: the registry name.
        include_top: with or without the ImageNet classifier.
        cached: True when the file is in the Keras cache.
        input_shape: the input the file is for (None: the backbone's default size).
        path: where the file is (or will be once downloaded).
        file: the file's name, URL and size.
    """

    backbone: str
    include_top: bool
    cached: bool
    path: Path
    file: WeightsFile
    input_shape: tuple[int, int, int] | None = None

    def describe(self) -> str:
        """One plain sentence for the user."""
        if self.cached:
            return f"ImageNet weights for {self.backbone} are cached at {self.path}."
        return (
            f"ImageNet weights for {self.backbone} are not on this machine. They will be "
            f"downloaded once (about {self.file.approx_mb} MB) from {self.file.url}. "
            f"Offline, put the file {self.file.file_name} in {self.path.parent}."
        )


def weights_status(
    backbone: str | BackboneSpec,
    *,
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
) -> WeightsStatus:
    """Report whether the ImageNet weights are cached, without downloading anything.

    Args:
        backbone: a ``BACKBONES`` name.
        include_top: the file with the ImageNet classifier, or the one without.
        input_shape: the input the network is built for; the file is the one
            Keras loads at that size (MobileNetV2 has one per size: 96 to 224).
    """
    spec = get_backbone(backbone)
    file = spec.weights_file(include_top, input_shape)
    path = keras_cache_dir() / file.file_name
    return WeightsStatus(spec.name, include_top, path.is_file(), path, file, input_shape)


def weights_reachable(
    backbone: str | BackboneSpec, *, include_top: bool = True, timeout: float = 3.0
) -> bool:
    """Whether the ImageNet weights file could be downloaded now: a HEAD request to its URL answers.

    Nothing is downloaded. False when offline (no name resolution, no route, ``timeout``
    seconds without an answer) or when the server answers with an error.
    """
    file = get_backbone(backbone).weights_file(include_top, None)
    try:
        with urllib.request.urlopen(urllib.request.Request(file.url, method="HEAD"), timeout=timeout) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, TimeoutError, OSError, ValueError):
        return False


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_weights(
    backbone: str | BackboneSpec,
    *,
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Return the cached ImageNet weights file, downloading it first if needed.

    The download goes to a temporary file beside the target, is checked against
    Keras's checksum, and is fsynced and renamed into place only when whole.

    Raises:
        WeightsError: when the file is not cached and cannot be downloaded; the
            message names the file, the folder to put it in and its URL.
    """
    status = weights_status(backbone, include_top=include_top, input_shape=input_shape)
    if status.cached:
        return status.path
    file, target = status.file, status.path

    def fetch(partial: Path) -> None:
        with urllib.request.urlopen(file.url, timeout=timeout) as response, open(partial, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total else None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if file.md5 and _md5(partial) != file.md5:
            raise WeightsError(
                f"Downloaded weights must match Keras's checksum {file.md5}. "
                f"Received: a different file from {file.url}"
            )

    try:
        atomic_save(target, fetch, suffix=".part")
    except (urllib.error.URLError, TimeoutError) as exc:
        raise WeightsError(
            f"ImageNet weights for {status.backbone} are not cached and could not be "
            f"downloaded ({exc}). Put the file {file.file_name} in {target.parent} "
            f"(it comes from {file.url}), or use a local weights file. "
            f"Received: no network access to the download."
        ) from exc
    except OSError as exc:
        raise WeightsError(
            f"Downloaded weights must be saved in {target.parent}. Received: {exc}"
        ) from exc
    return target


__all__ = ["Progress", "WeightsStatus", "download_weights", "weights_reachable", "weights_status"]
