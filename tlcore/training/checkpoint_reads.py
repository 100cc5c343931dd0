"""The checkpoint a run across Ray Train workers ends with, read back by the server: its trained weights, its
history and each worker's part, each checked before it is read.

The first worker adds the weights (``np.savez``) and the history; every worker adds ``rank-<r>.json``. The
weights must be the model's own arrays, checked on the file's size and each ``.npy`` header before an array is
read (one declaring 8 TiB was allocated as it came); the JSON files are read only within their sizes; the
history holds a run's columns and values, no more epochs than planned. Refusals are ``WorkerError`` (or
``HistoryError``) in words.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tlcore.core.errors import WorkerError
from tlcore.models.spec import TransferSpec
from tlcore.training.config import HISTORY_COLUMNS
from tlcore.training.history import check_history

WEIGHTS_FILE, HISTORY_FILE = "weights.npz", "history.json"
"""What the first worker adds to the run's checkpoint: its trained weights (``np.savez``) and its history."""
MEMBER_SLACK = 4096
"""Bytes a ``weights.npz`` may hold for each array besides its numbers (zip headers and the ``.npy`` header)."""
PART_FILE_BYTES, ROW_BYTES = 4096, 1024
"""The most bytes of a ``rank-<r>.json``, and of ``history.json`` for each epoch planned (a row takes about 250)."""


def refused(rule: str, received: str) -> WorkerError:
    """A refusal of the checkpoint, in the words every refusal here uses: the rule, then what was received."""
    return WorkerError(f"{rule} Received: {received} in the checkpoint of this run across workers")


def weight_shapes(spec: TransferSpec) -> list[tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each weight of the model ``spec`` builds, in ``get_weights`` order, allocating nothing:
    read from the model's cost (``model_cost``: one shapes-only build of each base and process, and the head alone
    for each spec; a memory check made in the same process has already done it, and a queued job's Ray worker,
    checked by its server, does it here)."""
    from tlcore.models.build import model_cost

    return [(shape, np.dtype(dtype)) for shape, dtype in model_cost(spec).weights]


def _npy_header(member) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) an ``.npy`` member declares, read from its header alone."""
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f".npy format version {version}")
    shape, _, dtype = readers[version](member)
    return tuple(shape), dtype.newbyteorder("=")


def _weights_problem(path: Path, expected: list[tuple[tuple[int, ...], np.dtype]]) -> str | None:
    """What in a worker's ``weights.npz`` is not the model's own arrays, read from its size and headers; None if all is."""
    if not path.is_file():
        return f"no {WEIGHTS_FILE}"
    limit = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in expected) + MEMBER_SLACK * (len(expected) + 1)
    if (size := path.stat().st_size) > limit:
        return f"{size:,} bytes, more than the {limit:,} its model's {len(expected):,} weights take"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if names != [f"arr_{i}.npy" for i in range(len(expected))]:
                return f"{len(names):,} arrays ({', '.join(names[:3])}...) for its model's {len(expected):,} weights"
            for name, (shape, dtype) in zip(names, expected, strict=True):
                with archive.open(name) as member:
                    declared = _npy_header(member)
                if declared != (shape, dtype):
                    return f"{name} of shape {declared[0]} {declared[1]} where its weight is {shape} {dtype}"
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        return f"a {WEIGHTS_FILE} that cannot be read ({str(exc)[:120] or type(exc).__name__})"
    return None


def read_weights(path: Path, expected: list[tuple[tuple[int, ...], np.dtype]]) -> list[np.ndarray]:
    """The trained weights a worker saved: one array for each of the model's weights, each of its weight's shape and
    dtype, checked on the file's size and each array's header before any array is read (an array declaring 8 TiB,
    or a 190 KB deflated one that unpacked to 200 MB, were allocated as they came); never pickled objects.

    Raises:
        WorkerError: in words, the first array that is not the model's.
    """
    if (problem := _weights_problem(path, expected)) is not None:
        raise refused(f"A run's trained weights must be its model's {len(expected):,} arrays, each of its weight's "
                      f"shape and dtype.", problem)
    try:
        with np.load(path, allow_pickle=False) as saved:
            return [saved[f"arr_{i}"] for i in range(len(expected))]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # damaged past its headers
        raise refused("A run's trained weights must be readable.", f"{str(exc)[:120] or type(exc).__name__}") from None


def _small_json(path: Path, limit: int) -> object:
    """A JSON file a worker wrote, read only when it holds at most ``limit`` bytes."""
    if not path.is_file():
        raise refused(f"A run's checkpoint must hold {path.name}.", "none")
    if (size := path.stat().st_size) > limit:
        raise refused(f"{path.name} may hold at most {limit:,} bytes.", f"{size:,} bytes")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or arrays nested past Python's stack
        raise refused(f"{path.name} must be JSON.", "other bytes") from None


def read_history(folder: Path, epochs: int) -> tuple[pd.DataFrame, bool]:
    """(the first worker's history, whether Stop ended it): at most ``epochs`` rows of a run's history columns
    and values (``check_history``), and ``stopped`` true or false."""
    saved = _small_json(folder / HISTORY_FILE, PART_FILE_BYTES + ROW_BYTES * epochs)
    rows = saved.get("rows") if isinstance(saved, dict) else None
    if not (isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
            and isinstance(saved.get("stopped"), bool)):
        raise refused(f"{HISTORY_FILE} must hold its rows, a list of epochs, and stopped, true or false.",
                      f"{str(saved)[:80]}")
    history = check_history(pd.DataFrame(rows, columns=HISTORY_COLUMNS),
                            what="the checkpoint of this run across workers", max_rows=epochs)
    return history, saved["stopped"]


def read_parts(folder: Path, workers: int) -> tuple[dict[int, int], dict[int, int]]:
    """(steps, images) of each worker, by rank: one ``rank-<r>.json`` a worker, each two whole numbers 0 or more."""
    names = sorted(path.name for path in folder.glob("rank-*.json"))
    wanted = sorted(f"rank-{rank}.json" for rank in range(workers))
    if names != wanted:
        raise refused(f"A run's checkpoint must hold one part for each of its {workers} workers, {wanted[:3]}...",
                      f"{names[:3]}... ({len(names):,} parts)")
    steps, images = {}, {}
    for rank in range(workers):
        part = _small_json(folder / f"rank-{rank}.json", PART_FILE_BYTES)
        counts = [part.get(key) for key in ("steps", "images")] if isinstance(part, dict) else [None]
        if not all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in counts):
            raise refused("A worker's part must give its steps and images as whole numbers 0 or more.",
                           f"{str(part)[:80]} in rank-{rank}.json")
        steps[rank], images[rank] = counts
    return steps, images
