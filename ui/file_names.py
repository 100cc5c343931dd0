"""Files named apart: several uploads may share a name (phones call every photo image.jpg)."""

from __future__ import annotations

from collections.abc import Iterable


def named_apart(files: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    """Each file under its own name, in order: the second ``image.jpg`` becomes ``image.jpg (2)``, and so on."""
    named: dict[str, bytes] = {}
    for name, data in files:
        shown, copy = name, 1
        while shown in named:
            copy += 1
            shown = f"{name} ({copy})"
        named[shown] = data
    return named
