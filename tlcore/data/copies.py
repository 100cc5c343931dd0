"""Byte-identical images in one dataset, and a split that keeps each image's copies on its side.

An image uploaded twice (a folder zipped with its backup, a class gathered from two sources) is stored
twice: the same bytes under two names. Split image by image, one copy can land in training and the other in
validation, and validation then scores images training saw. ``find_copies`` finds them from the stored
files (sizes first: only files whose size another file shares are read and hashed); ``split_keeping_copies``
draws the same seeded split as before and moves no image unless it has a copy, so a dataset without copies
splits exactly as it always did.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class Copies:
    """Which stored images hold the same bytes as an earlier one.

    Attributes:
        original: for each image, the index of the first image with the same bytes and label (itself when
            it has no copy before it): a split keeps images with the same original on one side.
        across_classes: indices of images whose bytes are also filed under another class (the same picture
            labelled two ways), for people to check.
    """

    original: np.ndarray
    across_classes: tuple[int, ...] = ()

    @property
    def within_class(self) -> int:
        """Images that are copies of an earlier image of their own class."""
        return int(np.count_nonzero(self.original != np.arange(len(self.original))))


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:  # a file that is not there is nobody's copy: reading it later says what is missing
        return None


def _content(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


def find_copies(files: Sequence[Path], labels: Sequence[int]) -> Copies:
    """The byte-identical images among ``files`` (labelled ``labels``): see ``Copies``."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for index, path in enumerate(files):
        size = _size(Path(path))
        if size is not None:
            by_size[size].append(index)
    original = np.arange(len(files))
    across: set[int] = set()
    for indices in (group for group in by_size.values() if len(group) > 1):
        first_of: dict[tuple[bytes, int], int] = {}
        classes_of: dict[bytes, set[int]] = defaultdict(set)
        for index in indices:
            digest = _content(Path(files[index]))
            if digest is None:
                continue
            label = int(labels[index])
            original[index] = first_of.setdefault((digest, label), index)
            classes_of[digest].add(label)
        across.update(i for (digest, _), i in first_of.items() if len(classes_of[digest]) > 1)
    if across:  # every image of a picture filed under two classes, not only the first of each class
        across = {i for i in range(len(files)) if original[i] in across}
    return Copies(original, tuple(sorted(across)))


def split_keeping_copies(members: np.ndarray, original: np.ndarray, take: int,
                         train_only: frozenset[int] = frozenset()) -> tuple[list[int], list[int]]:
    """``members`` (one class, in the split's seeded order) as (validation, train), for a class that is validated
    (``take`` at least 1; the caller keeps a class with no validation share whole, reading no file).

    Validation takes whole groups of copies, in the order their first member comes, each only while it still
    fits in ``take`` images (a picture stored 30 times is not a class's whole validation share); when none fits,
    the smallest group is held out, so a class keeps some validation. At least one group stays for training,
    and ``train_only`` images (the same picture filed under another class) are never held out. Without copies
    this is ``members[:take]``, ``members[take:]``.
    """
    if take < 1:
        raise ValueError(f"take must be at least 1 (a class with no validation share is not split). Received: {take}")
    groups: dict[int, list[int]] = {}
    for member in members:
        groups.setdefault(int(original[member]), []).append(int(member))
    candidates = [group for group in groups.values() if not train_only.intersection(group)]
    if len(groups) < 2 or not candidates:
        return [], [int(m) for m in members]
    held: list[list[int]] = []
    count = 0
    for group in candidates:
        if count + len(group) <= take and len(held) + 1 < len(groups):
            held.append(group)
            count += len(group)
    if not held:
        held.append(min(candidates, key=len))  # the first of the smallest: this class is still validated
    validation = [m for group in held for m in group]
    chosen = set(validation)
    return validation, [int(m) for m in members if m not in chosen]
