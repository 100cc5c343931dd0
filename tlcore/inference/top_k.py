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


LOGIT_MARGIN = 0.01
"""How far outside 0..1 an output may lie and still be read as a probability (bfloat16's next value above 1.0
is 1.0078: a softmax computed in bfloat16 may give it)."""


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Outputs as probabilities, one row an image (or one image's vector): as they are when every value lies in
    0..1, else read as logits (a model that ends without its softmax, trained with ``from_logits=True``) and put
    through a softmax, row by row: shown as they came, logits read as "746.6%" and negative probabilities.

    Decided for all the rows given at once, so a batch is read one way (``predict_batch`` gives its batches
    whole); a logits model whose every output for an image happens to lie in 0..1 is shown as it came."""
    scores = np.asarray(scores)
    if scores.size and (scores.min() < -LOGIT_MARGIN or scores.max() > 1 + LOGIT_MARGIN):
        shifted = np.exp(scores.astype(np.float64) - scores.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(scores.dtype)
    return scores


def top_k_table(probabilities: np.ndarray, labels: Sequence[str], k: int) -> pd.DataFrame:
    """The k most probable classes as sorted records (k clamped to 1..classes).

    Outputs outside 0..1 are logits, shown as their softmax (``as_probabilities``). Ties are broken by
    class id, lowest first, so equal probabilities always come out in the same order.
    """
    probabilities = as_probabilities(probabilities)
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
