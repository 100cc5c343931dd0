"""Exports that deploy: a trained run as .keras without optimizer state, TFLite, or a SavedModel.

Every export is a zip holding the model, ``labels.txt`` (one class a line, in
output order), ``MODEL_CARD.md`` (classes, input size, preprocessing, metrics,
training settings, dates) and ``predict.py``, a short inference example that
needs no ``tlcore``::

    transfer-lab-<run id>-<format>/
        model.keras | model.tflite | saved_model/1/   the model
        labels.txt  MODEL_CARD.md  predict.py

The formats (``EXPORT_FORMATS``) and how a model becomes each are ``tlcore.deploy.formats``'s;
the card, labels and example are ``tlcore.deploy.card``'s. Exports of a run are built
once and kept in the run's folder (``exports/<format>.zip``).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np

from tlcore.core.atomic import atomic_save
from tlcore.core.errors import ModelFileError
from tlcore.core.storage import check_room
from tlcore.deploy.card import CARD, EXAMPLE, LABELS, ExportInfo, example_script, labels_text, model_card
from tlcore.deploy.formats import (
    EXPORT_FORMATS,
    check_format,
    save_without_optimizer,
    tflite_bytes,
    write_saved_model,
)
from tlcore.models.model_files import load_model_file
from tlcore.training.runs import RunRecord

"""The serving signature's input and output of TFLite and SavedModel exports."""

_LOCK = threading.Lock()
"""One export at a time per process: a conversion takes a few cores' seconds and the model's size in memory."""


def _folder_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_export(model: keras.Model, info: ExportInfo, fmt: str, target: str | os.PathLike) -> Path:
    """Export ``model`` as a zip at ``target``: the model, labels.txt, the model card and predict.py.

    Args:
        model: the run's model (softmax outputs over ``info.class_names``).
        info: what the card and the example say about it.
        fmt: a key of ``EXPORT_FORMATS``.
        target: the zip to write (atomically: a reader never sees half of it).

    Raises:
        ConfigError: an unknown format.
        StorageError: the data folder has no room (``TL_MAX_DATA_GB``) or the disk is full.
    """
    form = check_format(fmt)
    target = Path(target)
    check_room(4 * model.count_params() + 1_000_000, what=f"a {form.title} export")
    top = f"transfer-lab-{info.run_id}-{fmt}"
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent if target.parent.is_dir() else None) as tmp:
        work = Path(tmp)
        if fmt == "keras":
            model_path = save_without_optimizer(model, work / "model.keras")
        else:
            saved = write_saved_model(model, info.backbone, work / "saved_model" / "1")
            if fmt == "savedmodel":
                model_path = saved
            else:
                model_path = work / "model.tflite"
                model_path.write_bytes(tflite_bytes(saved, fmt.split("-", 1)[1]))
                shutil.rmtree(work / "saved_model")
        texts = {LABELS: labels_text(info.class_names),
                 CARD: model_card(info, fmt, model_bytes=_folder_bytes(model_path)),
                 EXAMPLE: example_script(info, fmt)}

        def write_zip(path: Path) -> None:
            with zipfile.ZipFile(path, "w") as archive:
                files = [model_path] if model_path.is_file() else sorted(p for p in model_path.rglob("*") if p.is_file())
                for file in files:  # models are stored as they are: their weights barely compress
                    archive.write(file, f"{top}/{file.relative_to(work)}", compress_type=zipfile.ZIP_STORED)
                for name, text in texts.items():
                    archive.writestr(f"{top}/{name}", text, compress_type=zipfile.ZIP_DEFLATED)

        atomic_save(target, write_zip, suffix=".zip")
    return target


def exports_folder(record: RunRecord) -> Path:
    return record.folder / "exports"


def export_path(record: RunRecord, fmt: str) -> Path:
    """Where a run's export in ``fmt`` is kept once built (it may not exist yet)."""
    check_format(fmt)
    return exports_folder(record) / f"{fmt}.zip"


def _run_model(record: RunRecord) -> keras.Model:
    if not record.model_path.is_file():
        raise ModelFileError(f"A run must have finished to have a model to export. Received: run {record.id!r} has none")
    return load_model_file(record.model_path)


def export_run(record: RunRecord, fmt: str, *, model: keras.Model | None = None, name: str = "") -> Path:
    """The run's export in ``fmt``, built on first use and kept in the run's folder.

    Args:
        record: a finished run.
        fmt: a key of ``EXPORT_FORMATS``.
        model: the run's model if already loaded (else read from its file, in safe mode).
        name: what to call the model in its card (default: backbone and dataset).

    Returns:
        The path of the zip.

    Raises:
        ModelFileError: the run has no model.
        StorageError: no room for the export.
    """
    path = export_path(record, fmt)
    with _LOCK:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_export(model if model is not None else _run_model(record), ExportInfo.of(record, name), fmt, path)
    return path


def run_keras_file(record: RunRecord) -> Path:
    """The run's model as a bare ``.keras`` file without optimizer state (built once, then kept).

    The file Predict takes as "a .keras model file of mine"; often a third of
    ``model.keras``'s size for a run that trained its whole base.
    """
    path = exports_folder(record) / "model.keras"
    with _LOCK:
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        zipped = export_path(record, "keras")
        if zipped.is_file():  # the Keras export holds the same file: copy it out instead of loading the model
            with zipfile.ZipFile(zipped) as archive:
                member = next(n for n in archive.namelist() if n.endswith("/" + EXPORT_FORMATS["keras"].model_name))
                check_room(archive.getinfo(member).file_size, what="a .keras export")

                def copy(target: Path) -> None:
                    with archive.open(member) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)

                atomic_save(path, copy, suffix=".keras")
            return path
        model = _run_model(record)
        check_room(4 * model.count_params(), what="a .keras export")
        save_without_optimizer(model, path)
    return path


def zip_members(data: bytes | str | os.PathLike) -> list[str]:
    """The names in an export zip (bytes or path), for checks and tests."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with zipfile.ZipFile(source) as archive:
        return archive.namelist()


def softmax_agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(largest absolute difference, share of rows with the same top-1 class) of two outputs."""
    reference, other = np.asarray(reference), np.asarray(other)
    return float(np.abs(reference - other).max()), float((reference.argmax(-1) == other.argmax(-1)).mean())
