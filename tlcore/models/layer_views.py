"""A backbone with and without its ImageNet top, described layer by layer (the Layers page), with shapes only.

Built inside ``scopes.shapes_only``: the tables and counts are those of the real networks, and no weight is
allocated (VGG16 with its top is 138 million numbers: built for real for a table, the page took 2.6 s and
1.9 GB; with shapes only 0.2 s).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from tlcore.models.backbone import load_backbone
from tlcore.models.scopes import shapes_only
from tlcore.models.summary import ParameterCounts, compare_layers, layer_table, parameter_counts


@dataclasses.dataclass(frozen=True)
class LayerViews:
    """A backbone with and without its ImageNet top, described."""

    full: pd.DataFrame
    full_counts: ParameterCounts
    cut: pd.DataFrame
    cut_counts: ParameterCounts
    comparison: pd.DataFrame


def layer_views(backbone: str, input_size: int, pooling: str | None) -> LayerViews:
    """Layer tables of ``backbone`` as ImageNet's classifier and without its top at ``input_size`` with
    ``pooling`` (None, "avg" or "max"), their parameter counts, and what changed between them.

    Raises:
        ShapeError: an input size the base cannot take (``check_input_shape``'s words).
    """
    with shapes_only():
        full = load_backbone(backbone, weights=None)
        cut = load_backbone(backbone, weights=None, include_top=False, input_shape=(input_size, input_size, 3),
                            pooling=pooling)
        return LayerViews(layer_table(full), parameter_counts(full), layer_table(cut), parameter_counts(cut),
                          compare_layers(full, cut))
