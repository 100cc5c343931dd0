"""Which precision inference is asked to run in (``TL_PRECISION``, a session's switch), and saying so.

Plain Python (no Keras, no TensorFlow): the sidebar calls ``force_precision`` and
``describe_backbone`` on every page, before the page itself, and must not load TensorFlow to do
it (issue 18: a first answer within 5 s). Choosing and measuring is ``tlcore.inference.precision``'s.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from tlcore.core.errors import ConfigError
from tlcore.core.settings import load_settings
from tlcore.inference.verdicts import CALIBRATION_BATCH, Calibration, bfloat16_units, calibrations
from tlcore.models.zoo import BackboneSpec

PRECISIONS = ("auto", "float32", "bfloat16")
"""What ``TL_PRECISION`` (and every ``precision=`` argument) accepts."""

_FORCED: contextvars.ContextVar[str | None] = contextvars.ContextVar("tl_forced_precision", default=None)


def check_precision(value: object, *, name: str = "precision") -> str:
    """``value`` as one of ``PRECISIONS`` (case and spaces ignored).

    Raises:
        ConfigError: anything else, naming what is accepted and what was received.
    """
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in PRECISIONS:
        raise ConfigError(f"{name} must be one of {', '.join(PRECISIONS)}. Received: {value!r}")
    return word


def precision_setting() -> str:
    """``TL_PRECISION``, checked (default "auto")."""
    return check_precision(load_settings().precision, name="Setting TL_PRECISION")


def force_precision(precision: str | None) -> None:
    """Force ``precision`` for the rest of the current context (thread, Streamlit script run); None undoes it.

    The sidebar calls it on every run with "float32" or None, so one person's
    choice applies to their own session only.
    """
    _FORCED.set(None if precision is None else check_precision(precision))


@contextlib.contextmanager
def forced_precision(precision: str | None) -> Iterator[None]:
    """``force_precision`` for the ``with`` block only."""
    token = _FORCED.set(None if precision is None else check_precision(precision))
    try:
        yield
    finally:
        _FORCED.reset(token)


def requested_precision(precision: str | None = None) -> tuple[str, str]:
    """(precision, where it comes from): an argument, then a forced one, then ``TL_PRECISION``."""
    if precision is not None:
        return check_precision(precision), "asked for"
    if _FORCED.get() is not None:
        return _FORCED.get(), "forced for this session"
    return precision_setting(), "TL_PRECISION"


def describe_backbone(backbone: str | BackboneSpec) -> str:
    """What inference on ``backbone`` runs in here, in words (for the sidebar); measures nothing.

    E.g. "bfloat16 (measured 2.1x faster here for one image, 3.0x for batches)",
    "float32 (forced for this session)", or, before any measurement, what ``auto`` will do.
    """
    wanted, reason = requested_precision()
    if wanted != "auto":
        return f"{wanted} ({reason})"
    if bfloat16_units() is False:
        return "float32 (this CPU has no bfloat16 units)"
    latest: dict[int, Calibration] = {}
    for row in calibrations(backbone):  # oldest first: the latest of each batch kind stays
        latest[row.batch] = row
    if not latest:
        return "auto (bfloat16 if a short measurement on first use finds it faster here)"
    kinds = {1: "for one image", CALIBRATION_BATCH: "for batches"}
    parts = {"bfloat16": [], "float32": []}
    for batch, row in sorted(latest.items()):
        parts[row.precision].append(f"{row.gain:.1f}x {kinds.get(batch, f'for batches of {batch}')}")
    if not parts["float32"]:  # "2.1x faster here for one image, 3.0x for batches", as the docstring says
        gain, _, kind = parts["bfloat16"][0].partition(" ")
        return f"bfloat16 (measured {', '.join([f'{gain} faster here {kind}', *parts['bfloat16'][1:]])})"
    if not parts["bfloat16"]:
        return f"float32 (bfloat16 measured {', '.join(parts['float32'])} here)"
    return (f"bfloat16 where measured faster ({', '.join(parts['bfloat16'])}), "
            f"float32 elsewhere (bfloat16 {', '.join(parts['float32'])})")


__all__ = ["PRECISIONS", "check_precision", "describe_backbone", "force_precision", "forced_precision",
           "precision_setting", "requested_precision"]
