"""Features' dataset map: choose a dataset (the sample, an upload, a run's data), place its images, draw them.

The computing is ``tlcore.dataset_map``; this module wires it to widgets, keeps a
session's last map (reruns from other widgets do not extract again), adds the
hover thumbnails for the points shown, and explains the numbers. A link may open
the map's view, but only the visitor's click places the images: a pass over a
dataset costs a CPU-minute, and a link is opened by whoever has it, as often.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import tlcore
from ui import access, charts, datasets, training
from ui.models import WeightsChoice
from ui.precision import FORCE_FLOAT32
from ui.state import from_url, to_url

if TYPE_CHECKING:  # only for annotations: the sidebar and Home must not load Keras (issue 18)
    import keras

IMAGES, DATASET, RUN = "images", "dataset", "run"
SOURCES = {IMAGES: "Your images", DATASET: "A dataset", RUN: "A training run's data"}
THUMBNAIL = 64
"""Side of the hover pictures, in pixels (a JPEG of about 2 KB each)."""
_LAST = "dataset_map_last"
"""Session-state key: (what the map was made from, the map with its thumbnails)."""
_HELD = "dataset_map_held"
"""Session-state key: set while the map's view is the link's choice, not yet asked for by a click."""


def source() -> str:
    """What Features looks at: the images given here, a dataset, or a training run's data (in the URL).

    A map's view opened by a link is held: ``place`` waits for a click (choosing the view here is one)."""
    if "features_map" not in st.session_state and st.query_params.get("features_map") in (DATASET, RUN):
        st.session_state[_HELD] = True
    from_url("features_map", IMAGES, choices=list(SOURCES))
    chosen = st.radio("Look at", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="features_map",
                      on_change=_release, help="A dataset is placed as a map: one point per image, coloured by "
                                               "its class.")
    to_url("features_map")
    return chosen


def _release() -> None:
    """The visitor chose what to look at: their choices place the images from now on."""
    st.session_state.pop(_HELD, None)


def pick(chosen: str) -> tlcore.ImageDataset:
    """The dataset to map; explains and stops the page until one is usable."""
    if chosen == RUN:
        return _run_dataset()
    if access.read_only():  # a public demo stores no uploads
        st.caption("This demo maps the built-in sample dataset (uploads are off).")
        return datasets.sample_dataset()
    return datasets.dataset_picker()


def _run_dataset() -> tlcore.ImageDataset:
    store = training.run_store()
    runs = store.list()
    finished = runs[runs["status"].isin(["done", "stopped"])]
    if finished.empty:
        st.info("No finished training run yet. Train one on the Train page, or choose *A dataset*.")
        st.stop()
    names = dict(zip(finished["id"], finished["name"]))
    run_id = st.selectbox("Run", list(names), key="map_run",
                          format_func=lambda r: f"{names[r]} ({r})",
                          help="A training run of this server: its pictures are placed on the map.")
    try:
        return tlcore.run_dataset(store.get(run_id).dataset)
    except KeyError:
        st.warning("That run was deleted a moment ago. Choose another one.")
        st.stop()
    except tlcore.TLError as exc:
        st.error(f"**This run's images cannot be mapped.** {access.message(exc)}")
        st.stop()


def limit() -> int:
    """How many images the map places at most (``TL_MAX_MAP_IMAGES`` is the widget's maximum; in the URL)."""
    cap = tlcore.load_settings().max_map_images
    if cap < 2:
        st.info(f"**Dataset maps are off on this server** (TL_MAX_MAP_IMAGES={cap}; a map needs 2 images).")
        st.stop()
    from_url("map_images", cap, cast=int, bounds=(2, cap))
    chosen = st.number_input("Images on the map, at most", 2, cap, step=50, key="map_images",
                             help="A larger dataset is sampled: each class keeps its share, the same "
                                  f"images every time. This server allows up to {cap:,} (TL_MAX_MAP_IMAGES).")
    to_url("map_images")
    return int(chosen)


def place(dataset: tlcore.ImageDataset, extractor: keras.Model, choice: WeightsChoice, layer: str,
          images: int) -> tlcore.DatasetMap:
    """The map with an ``image`` column of hover thumbnails; computed once per choice in a session.

    While the view is only the link's choice (``_HELD``), the images are placed when the visitor clicks
    *Place the images*; until then the page stops under that button.
    """
    key = (dataset.digest or str(dataset.root), len(dataset), choice.backbone, str(choice.weights), layer,
           id(extractor), images, bool(st.session_state.get(FORCE_FLOAT32)))
    held = st.session_state.get(_LAST)
    if held is not None and held[0] == key:
        return held[1]
    if st.session_state.get(_HELD):  # opened by a link: nothing is computed before the visitor asks
        count = min(images, len(dataset))
        st.caption(f"This link opens the dataset map. Placing its {count:,} images takes a pass through "
                   f"{choice.backbone} for each, so it starts when you ask.")
        if not st.button("Place the images", type="primary", icon=":material/scatter_plot:", key="map-place",
                         help=f"Passes the {count:,} images through {choice.backbone} up to the chosen layer, "
                              "then draws each one as a point of the map."):
            st.stop()
        del st.session_state[_HELD]
    bar = st.progress(0.0, text="Placing the images...")
    try:
        result = tlcore.dataset_map(
            dataset, extractor, backbone=choice.backbone, limit=images,
            progress=lambda done, total: bar.progress(done / total, text=f"Image {done:,} of {total:,}"),
        )
        pictures = [tlcore.thumbnail_url(file, THUMBNAIL) for file in result.points["file"]]
    except tlcore.TLError as exc:
        bar.empty()
        st.error(f"**This dataset cannot be mapped.** {access.message(exc)}")
        st.stop()
    bar.empty()
    result = dataclasses.replace(result, points=result.points.assign(image=pictures))
    st.session_state[_LAST] = (key, result)
    return result


def show(result: tlcore.DatasetMap, *, random_weights: bool) -> None:
    """The map, the separability with what it means, and how the map was drawn."""
    if random_weights:
        st.warning("Untrained (random) weights: the map shows the mechanics, not what ImageNet features see.")
    sampled = "" if result.used == result.total else " (a sample: each class keeps its share)"
    st.subheader(f"{result.used:,} of {result.total:,} images{sampled}")
    left, right = st.columns(2)
    left.metric("Nearest neighbour of the same class", f"{result.separability:.0%}",
                delta=f"{(result.separability - result.chance) * 100:+.0f} points over chance")
    right.metric("Chance", f"{result.chance:.0%}")
    st.caption(
        f"For each image, its nearest other image on the map, measured over all {result.feature_width:,} values "
        "of the vectors (not the two drawn), has the same class this often. Well above chance: these features "
        "already tell the classes apart, and a small head on them should learn quickly. Near chance: they do not."
    )
    points = result.points.assign(name=[f"{c}/{Path(f).name}" for c, f in zip(result.points["class"],
                                                                             result.points["file"])])
    shown = points[["x", "y", "class", "name", *(["image"] if "image" in points else [])]]  # no server paths
    st.altair_chart(charts.dataset_map(shown, list(result.class_names)), width="stretch")
    st.caption("Each point is an image, placed by the two main directions of all the vectors (PCA): close "
               "means alike in those two. Classes apart on the map are apart in the vectors; classes mixed "
               "here may still be apart in directions the map does not draw, which the number above counts. "
               "Hover a point to see its image.")
