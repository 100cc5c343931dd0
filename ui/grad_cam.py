"""Grad-CAM on the pages: where the network looks on Predict, and on a run's most confidently wrong images."""

from __future__ import annotations

import hashlib
import math

import pandas as pd
import streamlit as st
from PIL import Image

import tlcore
from ui import access, models, training
from ui.session_memo import remembered

SHOWN_SIDE = 256
"""Pictures smaller than this (a 32-pixel model's input) are enlarged to it, so the heat can be read."""
HEATMAPS_KEPT = 16
"""Heatmaps a session keeps (the most recently shown): each is one float32 map at the model's input
size (0.2 MB at 224 px), so a session keeps at most about 3 MB of them, and a rerun, a page switch
and back, or a class chosen again shows a kept one without computing it again (issue 18)."""
_HEATMAPS = "_grad_cam_heatmaps"
"""Session-state key of the kept heatmaps: (model, image, class, layer, fit) -> map, oldest first."""


def _enlarged(picture: Image.Image, side: int = SHOWN_SIDE) -> Image.Image:
    scale = max(1, math.ceil(side / max(picture.size)))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.BICUBIC)


def _how_to_read(label: str, layer: str, size: tuple[int, int], map_size: tuple[int, int], heat) -> str:
    """The one line under the heatmap: what it shows, or plainly why it cannot point anywhere."""
    where = f"layer `{layer}`, a {map_size[0]}x{map_size[1]} map stretched over the {size[0]}x{size[1]} input"
    if map_size == (1, 1):
        return (f"At this input size {where}: a 1x1 map cannot point anywhere, so the heat is the same over "
                "the whole image. A larger input gives a finer map.")
    if float(heat.max()) <= 0.0:
        return f"Nothing in this image raised the score of **{label}** at {where}: the map is empty (all blue)."
    return (f"Grad-CAM: red marks where the evidence for **{label}** is strongest, blue where there is none "
            f"(read at {where}).")


def heatmap_key(table: pd.DataFrame, context: str = "") -> str:
    """The "Heatmap for" choice's widget key, named by this top-5 as its options show it (classes, ranks,
    probabilities to 0.1%) and ``context`` (which model and which image).

    A new image or model makes a new widget, which starts at the top-1: the choice never keeps a
    class, rank or label of a previous image or model (a kept key would let the browser show the
    old option's label over the new list), even when two images happen to give the same table.
    The same table from another engine keeps the choice: the first top-5 after a start comes from the
    LiteRT copy and the next from Keras, whose probabilities differ in the sixth decimal.
    """
    rows = ",".join(f"{int(r.class_id)}:{int(r.rank)}:{float(r.probability):.1%}:{r.label}" for r in table.itertuples())
    return "cam_class-" + hashlib.sha256(f"{context}|{rows}".encode()).hexdigest()[:16]


def session_heatmap(model, backbone: str, image: Image.Image, class_id: int, *, layer: str, mode: str,
                    context: str):
    """``tlcore.grad_cam``'s map, computed once per model, image, class, layer and fit in this session.

    ``context`` names the model and the image (as for ``heatmap_key``); the model object itself is part
    of the key too, so a model reloaded under the same name is never answered with another's map. The
    session keeps the ``HEATMAPS_KEPT`` most recently used maps (``ui.session_memo``).
    """
    def compute():
        with st.spinner("Working out where the network looks..."):
            return tlcore.grad_cam(model, image, class_id, backbone=backbone, layer=layer, mode=mode)

    return remembered(_HEATMAPS, (context, id(model), int(class_id), layer, mode), compute, keep=HEATMAPS_KEPT)


def where_it_looks(model, backbone: str, image: Image.Image, table: pd.DataFrame, mode: str,
                   context: str = "") -> None:
    """Under the top-5: pick one of its classes (top-1 first) and see its Grad-CAM heatmap over the image.

    ``context`` names the model and the image (a new one starts the choice at its top-1 again)."""
    st.subheader("Where the network looks")
    options = [int(c) for c in table["class_id"]]
    names = {int(row.class_id): (int(row.rank), str(row.label), float(row.probability)) for row in table.itertuples()}
    class_id = st.selectbox("Heatmap for", options, key=heatmap_key(table, context),
                            format_func=lambda c: f"{names[c][0]}. {names[c][1]} ({names[c][2]:.1%})",
                            help="One of the five classes above: the heat shows which parts of the image raised "
                                 "that class's score.")
    try:
        layer = tlcore.last_conv_layer(model, backbone)
        heat = session_heatmap(model, backbone, image, class_id, layer=layer, mode=mode, context=context)
        map_size = tlcore.cam_map_size(model, layer)
    except tlcore.TLError as exc:
        st.info(f"**No heatmap for this model.** {access.message(exc)}")
        return
    size = tlcore.model_input_size(model)
    label = access.plain(names[class_id][1])
    shown = _enlarged(tlcore.fit_image(image, size, mode=mode))
    st.image(tlcore.heat_overlay(shown, heat), width=min(shown.width, 384),
             caption=f"Heat for {label} over what the network sees")
    st.caption(_how_to_read(label, layer, size, map_size, heat))


@st.cache_data(max_entries=8, show_spinner="Computing the heatmaps of the wrong images...")
def _wrong_overlays(run_id: str, stamp: tuple[int, int] | None) -> tuple[str, tuple[int, int],
                                                                       list[Image.Image | None]]:
    """(layer, map size, one overlay per confidently wrong image or None where its file is gone), once per run and
    model file (``models.model_stamp``)."""
    record = training.run_store().get(run_id)
    model = models.run_model(run_id)
    layer = tlcore.last_conv_layer(model, record.spec.backbone)
    size = tlcore.model_input_size(model)
    pictures = []
    for item in tlcore.wrong_predictions(record):
        if item.path is None:
            pictures.append(None)
            continue
        heat = tlcore.grad_cam(model, item.path, item.predicted_class, backbone=record.spec.backbone,
                               layer=layer, mode=record.config.resize_mode)
        fitted = tlcore.fit_image(tlcore.load_image(item.path), size, mode=record.config.resize_mode)
        pictures.append(tlcore.heat_overlay(_enlarged(fitted, 96), heat))
    return layer, tlcore.cam_map_size(model, layer), pictures


def wrong_heatmaps(record: tlcore.RunRecord, columns: int) -> None:
    """On demand, under the most confidently wrong images: each one's heatmap for the class it was taken for."""
    if not record.model_path.is_file() or not st.toggle(
            "Where the network looked (Grad-CAM)", key=f"cam-{record.id}",
            help="The heat marks what, in each image, raised the score of the wrong class. "
                 "Computed once per run, then kept."):
        return
    try:
        layer, map_size, pictures = _wrong_overlays(record.id, models.model_stamp(record.id))
    except tlcore.TLError as exc:
        st.info(f"**No heatmaps for this run.** {access.message(exc)}")
        return
    for cell, picture in zip(st.columns(columns), pictures):
        if picture is not None:
            cell.image(picture, width=96)
    flat = " A 1x1 map cannot point anywhere: the heat is the same over each image." if map_size == (1, 1) else ""
    st.caption(f"Red marks the evidence for the wrongly predicted class (read at layer `{layer}`, a "
               f"{map_size[0]}x{map_size[1]} map).{flat}")
