"""ImageNet class names, shipped with the package so they work offline.

``data/imagenet_class_index.json`` holds the standard 1,000-class index in the
order Keras's ``decode_predictions`` uses: class id -> [WordNet id, name].
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

_INDEX = Path(__file__).with_name("data") / "imagenet_class_index.json"


@functools.cache
def _class_index() -> tuple[tuple[str, str], ...]:
    raw = json.loads(_INDEX.read_text(encoding="utf-8"))
    return tuple(tuple(raw[str(i)]) for i in range(len(raw)))


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet class names, in class-id order."""
    return [name for _, name in _class_index()]


def imagenet_wordnet_ids() -> list[str]:
    """The WordNet ids (e.g. "n01440764" for tench), in class-id order."""
    return [wnid for wnid, _ in _class_index()]
