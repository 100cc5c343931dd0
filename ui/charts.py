"""Altair chart builders: data in, chart out, no Streamlit calls."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


def top_k_bars(table: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of a top-k table, most probable on top."""
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("label:N", sort=alt.EncodingSortField("probability", order="descending"), title=None),
            tooltip=["rank", "label", "class_id", alt.Tooltip("probability:Q", format=".4f")],
        )
        .properties(height=30 * len(table) + 20)
    )


def feature_lines(features: np.ndarray, names: list[str]) -> alt.Chart:
    """Each image's feature vector as a line over the feature index."""
    frame = pd.DataFrame(
        {
            "image": np.repeat(names, features.shape[1]),
            "index": np.tile(np.arange(features.shape[1]), len(names)),
            "value": features.reshape(-1),
        }
    )
    return (
        alt.Chart(frame)
        .mark_line(strokeWidth=1)
        .encode(x=alt.X("index:Q", title="feature"), y=alt.Y("value:Q"), color="image:N")
        .properties(height=220)
    )


def feature_map(points: np.ndarray, names: list[str], groups: list[str] | None = None) -> alt.Chart:
    """A 2-D scatter of projected feature vectors."""
    frame = pd.DataFrame({"x": points[:, 0], "y": points[:, 1], "image": names,
                          "group": groups or names})
    return (
        alt.Chart(frame)
        .mark_circle(size=120)
        .encode(x=alt.X("x:Q", title="component 1"), y=alt.Y("y:Q", title="component 2"),
                color="group:N", tooltip=["image", "group"])
        .properties(height=320)
    )
