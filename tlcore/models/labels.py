"""ImageNet class names, shipped with the package so they work offline.

``data/imagenet_class_index.json`` is Keras's own file, byte for byte (the one
``keras.applications.imagenet_utils.decode_predictions`` downloads and checks
against ``CLASS_INDEX_MD5``): class id -> [WordNet id, name], names written with
underscores ("great_white_shark"). Copied into the Keras cache, Keras accepts it.
Names are made readable ("great white shark") only for display.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

CLASS_INDEX_PATH = Path(__file__).with_name("imagenet_class_index.json")
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
"""The checksum Keras checks (keras/src/applications/imagenet_utils.py, ``file_hash``)."""


@functools.cache
def _class_index() -> tuple[tuple[str, str], ...]:
    raw = json.loads(CLASS_INDEX_PATH.read_text(encoding="utf-8"))
    return tuple(tuple(raw[str(i)]) for i in range(len(raw)))


def readable(name: str) -> str:
    """A Keras class name as a person reads it: "great_white_shark" -> "great white shark"."""
    return name.replace("_", " ")


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet class names for display ("great white shark"), in class-id order."""
    return [readable(name) for _, name in _class_index()]


def imagenet_class_names() -> list[str]:
    """The 1,000 names exactly as Keras's ``decode_predictions`` gives them ("great_white_shark")."""
    return [name for _, name in _class_index()]


def imagenet_wordnet_ids() -> list[str]:
    """The WordNet ids (e.g. "n01440764" for tench), in class-id order."""
    return [wnid for wnid, _ in _class_index()]
