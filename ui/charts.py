"""Altair chart builders: data in, chart out, no Streamlit calls."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

CURVE_NAMES = {"val_accuracy": "accuracy on held-out images", "val_loss": "loss on held-out images",
               "accuracy": "accuracy on training images", "loss": "loss on training images"}
"""History columns in plain words (held-out: the validation images, never trained on)."""
LINE_LEGEND = {"symbolType": "stroke", "symbolStrokeWidth": 3, "symbolSize": 300, "labelLimit": 0}
"""A legend whose samples are short lines, as the lines they name, and whose labels are never cut."""


def top_k_bars(table: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of a top-k table, most probable on top."""
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("label:N", sort=alt.EncodingSortField("probability", order="descending"), title=None,
                    axis=alt.Axis(labelOverlap=False)),
            tooltip=["rank", "label", "class_id", alt.Tooltip("probability:Q", format=".4f")],
        )
        .properties(height=alt.Step(28))  # 28 px a bar, however many classes
    )


FEATURE_LINE_POINTS = 2_048
"""Points a feature vector's line draws at most (evenly spaced over a longer vector): a browser draws an
early layer's 3 million values a line no better, and much slower."""


def feature_lines(features: np.ndarray, names: list[str]) -> alt.Chart:
    """Each image's feature vector as a line over the feature index (``FEATURE_LINE_POINTS`` at most)."""
    index = np.unique(np.linspace(0, features.shape[1] - 1, FEATURE_LINE_POINTS).round().astype(int))
    frame = pd.DataFrame(
        {
            "image": np.repeat(names, len(index)),
            "index": np.tile(index, len(names)),
            "value": features[:, index].reshape(-1),
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


def dataset_map(points: pd.DataFrame, class_names: list[str]) -> alt.Chart:
    """A dataset's images as points (columns x, y, class, name), coloured by class.

    An ``image`` column of ``data:`` URLs shows each image on hover: Vega Tooltip
    draws the field named ``image`` as a picture when the tooltip is a list of fields.
    """
    tooltip = (["image"] if "image" in points else []) + ["class", "name"]
    unitless = alt.Axis(labels=False, ticks=False)  # PCA coordinates have no unit: only nearness counts
    return (
        alt.Chart(points)
        .mark_circle(size=80, opacity=0.85)
        .encode(x=alt.X("x:Q", title="component 1", axis=unitless), y=alt.Y("y:Q", title="component 2", axis=unitless),
                color=alt.Color("class:N", sort=list(class_names), title="class",
                                scale=alt.Scale(scheme="tableau10")),  # distinct hues, not Streamlit's paired shades
                tooltip=tooltip)
        .properties(height=440)
    )


def training_curves(history: pd.DataFrame) -> alt.Chart:
    """Loss and accuracy per epoch, training and validation, side by side."""
    frame = history.reset_index(drop=True).assign(step=lambda h: range(1, len(h) + 1))
    long = frame.melt(id_vars=["step", "phase"], value_vars=["loss", "val_loss", "accuracy", "val_accuracy"],
                      var_name="series", value_name="value").dropna(subset=["value"])
    long["metric"] = long["series"].str.replace("val_", "", regex=False)
    long["split"] = np.where(long["series"].str.startswith("val_"), "validation", "training")
    base = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("split:N", title=None, sort=["validation", "training"], legend=alt.Legend(**LINE_LEGEND)),
        tooltip=["step", "phase", "split", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=320, height=220)
    return alt.hconcat(
        base.transform_filter(alt.datum.metric == "loss").properties(title="loss"),
        base.transform_filter(alt.datum.metric == "accuracy").properties(title="accuracy"),
    )


def compared_curves(histories: dict[str, pd.DataFrame], metric: str) -> alt.Chart:
    """One line per run of a history column, for comparing runs."""
    frames = [h.reset_index(drop=True).assign(step=lambda h: range(1, len(h) + 1), run=name)
              for name, h in histories.items() if metric in h]
    frame = pd.concat(frames) if frames else pd.DataFrame(columns=["step", "run", metric])
    shown = CURVE_NAMES.get(metric, metric)
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("step:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y(f"{metric}:Q", title=shown.split(" on ")[0]),  # "accuracy" or "loss": the radio names the images
        color=alt.Color("run:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical", **LINE_LEGEND)),
        tooltip=["run", "step", alt.Tooltip(f"{metric}:Q", format=".4f", title=shown)],
    ).properties(height=300)


def confusion_heatmap(confusion: np.ndarray, class_names: list[str]) -> alt.Chart:
    """Counts of true (rows) against predicted (columns) classes."""
    n = len(class_names)
    frame = pd.DataFrame({
        "true": np.repeat(class_names, n), "predicted": np.tile(class_names, n),
        "count": np.asarray(confusion).reshape(-1),
    })
    heat = alt.Chart(frame).mark_rect().encode(
        x=alt.X("predicted:N", sort=class_names), y=alt.Y("true:N", sort=class_names),
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")), tooltip=["true", "predicted", "count"],
    )
    text = heat.mark_text().encode(text="count:Q", color=alt.value("black"))
    return (heat + text).properties(width=alt.Step(48), height=alt.Step(32))  # a cell per class pair, whatever the labels


def class_counts(counts: dict[str, int]) -> alt.Chart:
    frame = pd.DataFrame({"class": list(counts), "images": list(counts.values())})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("images:Q"), y=alt.Y("class:N", sort=None, title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=["class", "images"],
    ).properties(height=alt.Step(28))  # 28 px a class name, however many: names never overlap


def transfer_against_scratch(curves: pd.DataFrame) -> alt.Chart:
    """Accuracy and loss per epoch of a model and the same model from scratch (``ScratchComparison.curves``).

    Colour tells the model; a solid line is validation, a dashed one training.
    """
    long = curves.melt(id_vars=["model", "epoch"], value_vars=["loss", "val_loss", "accuracy", "val_accuracy"],
                       var_name="series", value_name="value").dropna(subset=["value"])
    long["metric"] = long["series"].str.replace("val_", "", regex=False)
    long["split"] = np.where(long["series"].str.startswith("val_"), "validation", "training")
    base = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("model:N", title=None, scale=alt.Scale(domain=["transfer", "scratch"],
                                                               range=["#1f77b4", "#d62728"]),
                        legend=alt.Legend(**LINE_LEGEND)),
        strokeDash=alt.StrokeDash("split:N", title=None, sort=["validation", "training"],
                                  legend=alt.Legend(symbolType="stroke", symbolStrokeColor="#444", symbolStrokeWidth=2,
                                                    symbolFillColor="#444")),  # else Vega strokes them transparent
        tooltip=["model", "epoch", "split", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=320, height=220)
    return alt.hconcat(
        base.transform_filter(alt.datum.metric == "accuracy").properties(title="accuracy"),
        base.transform_filter(alt.datum.metric == "loss").properties(title="loss"),
    )
