"""Top-k tables: the k most probable classes of one image, named (no Keras, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tlcore.core.errors import ConfigError
from tlcore.models.labels import imagenet_labels

TOP_K_COLUMNS = ["rank", "label", "class_id", "probability"]


def class_names(classes: int, labels: Sequence[str] | None = None) -> list[str]:
    """The names of a model's ``classes`` outputs: ``labels``, or ImageNet's for 1,000 outputs, or
    "class 0", "class 1"...

    Raises:
        ConfigError: ``labels`` that do not name each output.
    """
    if labels is None:
        return imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    if len(labels) != classes:
        raise ConfigError(
            f"Labels must name each of the model's {classes} outputs. Received: {len(labels)} labels"
        )
    return list(labels)


def top_k_table(probabilities: np.ndarray, labels: Sequence[str], k: int) -> pd.DataFrame:
    """The k most probable classes as sorted records (k clamped to 1..classes).

    Ties are broken by class id, lowest first, so equal probabilities always
    come out in the same order.
    """
    k = max(1, min(int(k), len(probabilities)))
    order = np.lexsort((np.arange(len(probabilities)), -np.asarray(probabilities)))[:k]
    return pd.DataFrame(
        {
            "rank": np.arange(1, k + 1),
            "label": [labels[i] for i in order],
            "class_id": order.astype(int),
            "probability": probabilities[order].astype(float),
        },
        columns=TOP_K_COLUMNS,
    )
