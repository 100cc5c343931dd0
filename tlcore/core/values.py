"""What kind of number a value from a JSON file, a link or a bundle holds (``True`` counts as no number here,
though Python's ``bool`` is an ``int``)."""

from __future__ import annotations

import math


def whole_number(value: object) -> bool:
    """An ``int``, not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def finite_number(value: object) -> bool:
    """An ``int`` or a ``float``, not a ``bool``, and neither infinite nor NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
