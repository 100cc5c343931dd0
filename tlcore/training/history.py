"""A run's history table as a server accepts it from elsewhere (a bundle, a worker): its columns, phases and
values checked, and from CSV bytes only after its header, rows and size are, so that parsing costs little.

A run trained here writes its history itself; one that came from another server or process is checked
before it is stored, so that a bad one never replaces a good one or breaks the pages that read it.
"""

from __future__ import annotations

import io
import math

import pandas as pd

from tlcore.core.errors import HistoryError
from tlcore.training.config import HISTORY_COLUMNS, HISTORY_PHASES

MAX_HISTORY_ROWS = 10_000
"""Epochs a history may hold (both phases)."""
MAX_ROW_BYTES = 256
"""A history row's CSV line at most (eight numbers and a phase take under 150)."""
_HEADER = ",".join(HISTORY_COLUMNS).encode("ascii")
_SHARES = ("accuracy", "val_accuracy")
_LOSSES = ("loss", "val_loss")


def _refused(rule: str, received: str, what: str) -> HistoryError:
    return HistoryError(f"A run's history {rule} Received: {received} in {what}")


def check_history(history: pd.DataFrame, *, what: str, max_rows: int = MAX_HISTORY_ROWS) -> pd.DataFrame:
    """``history`` as the run store keeps it, or the reason it cannot be kept.

    Args:
        history: the table, from elsewhere.
        what: where it came from, for messages ("bundled run 'x'", "the worker's report of run x").
        max_rows: the epochs it may hold at most (a job's planned epochs).

    Returns:
        The table with its numbers as floats, its epochs as whole numbers and ``complete`` as booleans.

    Raises:
        HistoryError: other columns, more rows, a phase outside ``HISTORY_PHASES``, a value that is not a
            number, accuracies outside 0..1, negative or infinite losses or seconds, epochs below 1.
    """
    if list(history.columns) != HISTORY_COLUMNS:
        raise _refused(f"must have the columns {HISTORY_COLUMNS}.", str(list(map(str, history.columns))[:10]), what)
    if len(history) > max_rows:
        raise _refused(f"may hold at most {max_rows:,} epochs.", f"{len(history):,} rows", what)
    phases = set(map(str, history["phase"]))
    if not phases <= set(HISTORY_PHASES):
        raise _refused(f"phases must be among {list(HISTORY_PHASES)}.", str(sorted(phases)[:5]), what)
    checked = history.copy()
    checked["phase"] = history["phase"].astype(str)
    for column in (*_SHARES, *_LOSSES, "epoch", "seconds"):
        try:
            checked[column] = pd.to_numeric(history[column], errors="raise").astype(float)
        except (TypeError, ValueError):
            raise _refused(f"column {column!r} must hold numbers.", f"{history[column].head(3).tolist()}",
                           what) from None
    shares = checked[list(_SHARES)].to_numpy()
    if ((shares < 0) | (shares > 1)).any():
        raise _refused("accuracies must be from 0 to 1 (or empty).", f"{shares[(shares < 0) | (shares > 1)][:3]}",
                       what)
    for column in _LOSSES:  # a diverged run's loss may be NaN; never negative or infinite
        if (checked[column] < 0).any() or checked[column].map(math.isinf).any():
            raise _refused(f"{column} must be 0 or more and finite (or empty).",
                           str(checked[column][(checked[column] < 0) | checked[column].map(math.isinf)].head(3)
                               .tolist()), what)
    seconds, epochs = checked["seconds"], checked["epoch"]
    if not seconds.map(lambda s: math.isfinite(s) and s >= 0).all():
        raise _refused("seconds must be finite, 0 or more.", str(seconds.head(3).tolist()), what)
    if not epochs.map(lambda e: math.isfinite(e) and e >= 1 and e == int(e)).all():
        raise _refused("epochs must be whole numbers from 1.", str(epochs.head(3).tolist()), what)
    checked["epoch"] = epochs.astype(int)
    complete = history["complete"].map(lambda v: {True: True, False: False, "True": True, "False": False}.get(v))
    if complete.isna().any():
        raise _refused("column 'complete' must hold True or False.", str(history["complete"].head(3).tolist()),
                       what)
    checked["complete"] = complete.astype(bool)
    return checked


def read_history_csv(data: bytes, *, what: str, max_rows: int = MAX_HISTORY_ROWS) -> pd.DataFrame:
    """A ``history.csv`` from elsewhere, checked: header, rows and size before it is parsed, then its values.

    Raises:
        HistoryError: as ``check_history``, or a header other than Transfer Lab's, more lines or bytes.
    """
    header = data.split(b"\n", 1)[0].rstrip(b"\r")
    if header != _HEADER:
        raise _refused(f"must start with the header {_HEADER.decode()!r}.", repr(header[:100])[1:], what)
    rows = data.count(b"\n") + (not data.endswith(b"\n")) - 1  # after the header, the last line ended or not
    if rows > max_rows:
        raise _refused(f"may hold at most {max_rows:,} epochs.", f"{rows:,} rows", what)
    if len(data) > MAX_ROW_BYTES * (rows + 1):
        raise _refused(f"rows must be at most {MAX_ROW_BYTES} bytes each.", f"{len(data):,} bytes in {rows:,} rows",
                       what)
    try:
        history = pd.read_csv(io.BytesIO(data), dtype={"phase": str, "complete": str}, keep_default_na=False,
                              na_values={c: ["", "nan", "NaN"] for c in (*_SHARES, *_LOSSES)})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise _refused("must be CSV as Transfer Lab writes it.", str(exc)[:200], what) from None
    return check_history(history, what=what, max_rows=max_rows)
