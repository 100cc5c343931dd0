"""Frozen-prefix features on disk, computed once and reused by every later run with the same key.

A run whose first layers are frozen computes their output for every image in
one streaming pass and writes it, batch by batch, to a ``.npy`` file that is
then memory-mapped. The file's name is a key over what decides its contents:
the dataset's content, the backbone and input size, how images are fitted, the
prefix's layers and the digest of its weights. A second run with another head,
learning rate or split reads the file and never runs the base again.

Layout, under ``<data_dir>/features``::

    <key>.npy    float32 (images, *feature shape), rows in dataset order
    <key>.json   what the key stands for, for people
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from tlcore.core.atomic import StorageError, atomic_write_text
from tlcore.core.errors import StoppedBeforeTraining
from tlcore.core.orphans import owned_name, remove_orphans
from tlcore.core.storage import check_room
from tlcore.data.datasets import ImageDataset
from tlcore.data.images import ResizeMode
from tlcore.data.pipeline import READ_BYTES, HeldRows, batched_outputs, image_batches, read_rows
from tlcore.inference.forward import compiled_forward
from tlcore.inference.precision import choose_precision

EXTRACT_BATCH = 32
"""Images per forward pass when extracting (memory follows this, not the dataset)."""


def weights_digest(model: keras.Model) -> str:
    """A digest of every weight of ``model``, in order (trained, frozen and statistics alike)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.data)
    return digest.hexdigest()


def cache_key(prefix: keras.Model, dataset: ImageDataset, *, backbone: str, mode: ResizeMode,
              precision: str = "float32") -> str:
    """The key of ``prefix``'s features for ``dataset``: equal keys, equal contents.

    Layer names are left out (Keras numbers unnamed layers per process); the
    layers (each weightless one with its settings: a pooling window changes the
    features, not their shape), the output shape and the weights decide what the
    prefix computes, and the precision it ran in (bfloat16 features differ).
    """
    described = {
        "backbone": backbone,
        "input": [int(d) for d in prefix.input.shape[1:]],
        "output": [int(d) for d in prefix.output.shape[1:]],
        "layers": _layer_types(prefix),
        "weights": weights_digest(prefix),
        "dataset": dataset.digest,
        "mode": mode,
    }
    if precision != "float32":
        described["precision"] = precision
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


_UNKEYED_SETTINGS = ("name", "trainable", "dtype")
"""Layer settings that do not change what a layer computes (names are numbered per process)."""


def _layer_types(model: keras.Model) -> list[str]:
    """Each layer's type, and for a layer without weights its settings too (``AveragePooling2D``'s window, a
    padding's size), which nothing else in the key holds; a layer with weights is described by their digest."""
    types = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            types.extend(_layer_types(layer))
        elif layer.weights:
            types.append(type(layer).__name__)
        else:
            settings = {k: v for k, v in layer.get_config().items() if k not in _UNKEYED_SETTINGS}
            types.append(f"{type(layer).__name__}{json.dumps(settings, sort_keys=True, default=str)}")
    return types


PARTIAL_PREFIX = ".tl-partial-"
"""Feature files being written: ``.tl-partial-<pid>-<key>.<random>.npy`` (hidden: never taken for features)."""
RECENT_USE_SECONDS = 300
"""A feature file used (computed or loaded) this recently is never deleted to make room for another."""


class FeatureCache:
    """Feature files under one folder, keyed by ``cache_key``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def partial(self, key: str) -> Path:
        """A new file for ``key``'s features while a pass writes them, named for this process: one a
        killed process left (a worker ends killed) is removed by the next pass on this machine."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_orphans(self.root, PARTIAL_PREFIX)
        return self.root / f"{owned_name(PARTIAL_PREFIX)}{key}.{uuid.uuid4().hex}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The memory-mapped features for ``key``, or None when not computed yet."""
        path = self.path(key)
        if not path.is_file():
            return None
        os.utime(path)  # the last use, for whoever cleans up
        return np.load(path, mmap_mode="r")

    def features(
        self,
        prefix: keras.Model,
        dataset: ImageDataset,
        *,
        backbone: str,
        preprocess: Callable,
        mode: ResizeMode = "crop",
        on_progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[np.ndarray, bool]:
        """``prefix``'s output for every image of ``dataset``, computed at most once.

        Args:
            prefix: the frozen layers, from the model input to the cut.
            dataset: the stored images.
            backbone: the registry name (part of the key).
            preprocess: the backbone's ``preprocess_input``.
            mode: how images are fitted to the input size.
            on_progress: called with (images done, images in all) while extracting.
            stop: once set, the pass ends before its next batch and nothing of it is kept.

        Returns:
            (features memory-mapped from disk, True when they were already there).

        Raises:
            StoppedBeforeTraining: ``stop`` was set during the pass.
        """
        precision = choose_precision(prefix, backbone=backbone, batch=EXTRACT_BATCH).precision
        key = cache_key(prefix, dataset, backbone=backbone, mode=mode, precision=precision)
        cached = self.load(key)
        if cached is not None and len(cached) == len(dataset):
            return cached, True
        self._make_room(len(dataset) * int(np.prod(prefix.output.shape[1:])) * 4, dataset)
        self._extract(prefix, dataset, key, preprocess=preprocess, mode=mode, on_progress=on_progress,
                      precision=precision, stop=stop)
        atomic_write_text(self.root / f"{key}.json", json.dumps({
            "backbone": backbone, "dataset": dataset.name, "dataset_digest": dataset.digest,
            "images": len(dataset), "shape": [int(d) for d in prefix.output.shape[1:]], "precision": precision,
            "created": time.time(),
        }, indent=2))
        return self.load(key), False

    @staticmethod
    def read(rows: np.memmap) -> HeldRows:
        """A feature file's rows held in memory by TensorFlow (``HeldRows``), read a block at a time.

        Read with plain reads (``read_rows``), not copied from the mapping: the pages of a mapped file
        count toward a process's resident memory (the worker's limit) while it is mapped, so the rows
        would count twice. Memory is the rows once, and one block.

        Raises:
            StorageError: the file is shorter than its header says.
        """
        held = HeldRows(rows.shape)
        step = max(1, READ_BYTES // max(held.nbytes // max(len(held), 1), 1))
        for start in range(0, len(held), step):
            held.put(start, read_rows(rows, np.arange(start, min(start + step, len(held)))))
        return held

    def _make_room(self, needed: int, dataset: ImageDataset) -> None:
        """Delete the least recently used feature files until ``needed`` bytes fit ``TL_MAX_DATA_GB``.

        Files used in the last ``RECENT_USE_SECONDS`` stay (a sweep's trials or a curve's probes open
        them by path after they were handed out), and so do other passes' files still being written.

        Raises:
            StorageError: even without any other feature file, they would not fit.
        """
        what = f"frozen features of {len(dataset):,} images"
        recent = time.time() - RECENT_USE_SECONDS
        used = [(path.stat().st_mtime, path) for path in self.root.glob("[!.]*.npy") if path.is_file()]
        oldest_first = [path for mtime, path in sorted(used) if mtime < recent]
        while True:
            try:
                check_room(needed, what=what)
                return
            except StorageError:
                if not oldest_first:
                    raise
                stale = oldest_first.pop(0)
                stale.unlink(missing_ok=True)
                stale.with_suffix(".json").unlink(missing_ok=True)

    def _extract(self, prefix: keras.Model, dataset: ImageDataset, key: str, *, preprocess: Callable,
                 mode: ResizeMode, on_progress: Callable[[int, int], None] | None,
                 precision: str = "float32", stop: threading.Event | None = None) -> None:
        """One streaming pass: each batch goes from the files through ``prefix`` into the file."""
        size = tuple(int(d) for d in prefix.input.shape[1:3])
        shape = (len(dataset), *(int(d) for d in prefix.output.shape[1:]))
        partial = self.partial(key)
        try:
            batches = image_batches(dataset, np.arange(len(dataset)), size, preprocess=preprocess,
                                    batch_size=EXTRACT_BATCH, mode=mode)
            with open(partial, "wb") as handle:  # written, not mapped: no page of it counts as the worker's
                np.lib.format.write_array_header_1_0(handle, {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                    "shape": shape})
                done = 0
                for output in batched_outputs(compiled_forward(prefix, precision=precision), batches):
                    if stop is not None and stop.is_set():
                        raise StoppedBeforeTraining(
                            f"The run was stopped while its frozen features were computed ({done:,} of "
                            f"{len(dataset):,} images): nothing was trained, and nothing of the pass was kept.")
                    handle.write(np.ascontiguousarray(output, dtype=np.float32).data)
                    done += len(output)
                    if on_progress:
                        on_progress(done, len(dataset))
                if done != len(dataset):
                    raise StorageError(f"The feature pass gave {done:,} rows for {len(dataset):,} images; "
                                       "nothing was kept.")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.path(key))
        finally:
            partial.unlink(missing_ok=True)
