"""Where a backbone's weights come from: the Keras cache, a download, a file, or none.

ImageNet weights use Keras's own cache (``$KERAS_HOME/models``, by default
``~/.keras/models``) and file names, so a file Keras downloaded is found here
and a file downloaded here is found by Keras.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import keras

from tlcore.atomic import atomic_save
from tlcore.budgets import weights_file_problem
from tlcore.errors import WeightsError
from tlcore.zoo import BackboneSpec, WeightsFile, get_backbone

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None when the server does not say)."""

WEIGHTS_SUFFIXES = (".weights.h5", ".h5")


def keras_cache_dir() -> Path:
    """The folder where Keras caches downloaded model weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


@dataclasses.dataclass(frozen=True)
class WeightsStatus:
    """Whether a backbone's ImageNet weights are here, found without downloading.

    Attributes:
        backbone: the registry name.
        include_top: with or without the ImageNet classifier.
        cached: True when the file is in the Keras cache.
        path: where the file is (or will be once downloaded).
        file: the file's name, URL and size.
    """

    backbone: str
    include_top: bool
    cached: bool
    path: Path
    file: WeightsFile

    def describe(self) -> str:
        """One plain sentence for the user."""
        if self.cached:
            return f"ImageNet weights for {self.backbone} are cached at {self.path}."
        return (
            f"ImageNet weights for {self.backbone} are not on this machine. They will be "
            f"downloaded once (about {self.file.approx_mb} MB) from {self.file.url}. "
            f"Offline, put the file {self.file.file_name} in {self.path.parent}."
        )


def weights_status(backbone: str | BackboneSpec, *, include_top: bool = True) -> WeightsStatus:
    """Report whether the ImageNet weights are cached, without downloading anything."""
    spec = get_backbone(backbone)
    file = spec.weights_file(include_top)
    path = keras_cache_dir() / file.file_name
    return WeightsStatus(spec.name, include_top, path.is_file(), path, file)


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
    status = weights_status(backbone, include_top=include_top)
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


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load a ``.weights.h5`` or ``.h5`` weights file into ``model``.

    Before Keras reads any data, every dataset's declared shape (HDF5 metadata)
    must be the shape of one of the model's weights, and together they may hold
    no more numbers than the model has: a small file declaring huge datasets is
    refused before anything is allocated.

    Raises:
        WeightsError: when the file is missing, has another ending, or holds
            weights of another architecture or input size (naming the first
            dataset that does not fit).
    """
    path = Path(path)
    if not path.name.endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(
            f"A weights file must end in .weights.h5 or .h5. Received: {path.name!r}"
        )
    if not path.is_file():
        raise WeightsError(f"A weights file must exist. Received: {str(path)!r} (no such file)")
    expected = (f"The weights in {path.name!r} must fit {model.name} "
                f"({model.count_params():,} parameters, input {tuple(model.input.shape)})")
    try:
        problem = weights_file_problem(path, model)
    except OSError as exc:  # h5py: not an HDF5 file
        problem = f"it is not an HDF5 file ({str(exc)[:200]})"
    if problem:
        raise WeightsError(f"{expected}. Received: weights of another architecture or size: {problem}")
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError, KeyError or OSError here
        raise WeightsError(
            f"{expected}. Received: weights of another architecture or size ({str(exc)[:200]})"
        ) from exc
