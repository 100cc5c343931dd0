"""Features: the network without its output layer turns each image into a vector."""

import io

import numpy as np
import pandas as pd
import streamlit as st

import tlcore
from ui import access, charts, dataset_map, models, sidebar
from ui.code_panel import code_panel
from ui.file_names import named_apart
from ui.samples import IMAGE_TYPES, sample_images
from ui.share import copy_link

st.title("Feature vectors")
LAYER_HELP = ("Where to read the network: the default is the layer just before its answer, whose numbers describe "
              "the whole picture; earlier layers describe edges, colours and parts.")
copy_link("features")
choice = sidebar.choice()
layers = models.full_layer_names(choice.backbone)
default_layer = tlcore.default_feature_layer(choice.backbone)
st.caption(f"{choice.backbone} with {choice.label} weights, stopped one layer before its answer: the numbers "
           f"that layer (by default `{default_layer}`) gives for a picture describe it, and pictures that look "
           "alike get similar numbers.")

source = dataset_map.source()
if source != dataset_map.IMAGES:  # a dataset as a map: do its classes separate before any training?
    dataset = dataset_map.pick(source)
    images = dataset_map.limit()
    layer = st.selectbox("Feature layer", layers, index=layers.index(default_layer), help=LAYER_HELP)
    extractor = sidebar.load_or_explain(models.extractor, choice, layer)
    dataset_map.show(dataset_map.place(dataset, extractor, choice, layer, images), random_weights=choice.is_random)
    st.stop()

uploads = st.file_uploader("Upload images", type=IMAGE_TYPES, accept_multiple_files=True,
                           help="Several photos to compare: JPEG, PNG, WebP, BMP, GIF or TIFF.")
use_samples = st.checkbox("Use the sample images", value=not uploads,
                          help="Add the photos that come with the app (a cat, a coffee, a rocket).")
layer = st.selectbox("Feature layer", layers, index=layers.index(default_layer), help=LAYER_HELP)

given = [(f.name, f.getvalue()) for f in uploads or []]
if use_samples:
    given += [(f"{name}.jpg", path.read_bytes()) for name, path in sample_images().items()]
images = named_apart(given)
if not images:
    st.info("Upload images or tick *Use the sample images*.")
    st.stop()

extractor = sidebar.load_or_explain(models.extractor, choice, layer)
bar = st.progress(0.0, text="Extracting features...")
try:
    tlcore.check_feature_room(extractor, len(images))  # before any image is read: the vectors stay in memory here
    features = tlcore.extract_features(
        extractor, list(images.values()), backbone=choice.backbone,
        progress=lambda done, total: bar.progress(done / total, text=f"Image {done} of {total}"),
    )
except tlcore.ImageError as exc:
    st.error(f"**One of the files cannot be used.** {access.message(exc)}")
    st.stop()
except tlcore.BudgetError as exc:
    st.error(access.message(exc))
    st.stop()
finally:
    bar.empty()

names = list(images)
if choice.is_random:
    st.warning("Untrained (random) weights: these vectors show the mechanics, not ImageNet features.")
st.subheader(f"{len(names)} vectors of {features.shape[1]:,} values from `{layer}`")
st.dataframe(
    pd.DataFrame({"image": names, "length": features.shape[1], "mean": features.mean(axis=1),
                  "max": features.max(axis=1), "non-zero": (features != 0).sum(axis=1)}),
    hide_index=True, width="stretch",
)
st.altair_chart(charts.feature_lines(features, names), width="stretch")
if features.shape[1] > charts.FEATURE_LINE_POINTS:
    st.caption(f"The lines draw {charts.FEATURE_LINE_POINTS:,} of the {features.shape[1]:,} values, evenly spaced; "
               "the downloads hold them all.")
if len(names) >= 3:
    st.altair_chart(charts.feature_map(tlcore.project_2d(features), names), width="stretch")
    st.caption("The images placed by the two main directions of their vectors (PCA): close means alike.")



def as_csv() -> bytes:
    return pd.DataFrame(features, index=pd.Index(names, name="image")).to_csv().encode()


def as_npy() -> bytes:
    npy = io.BytesIO()
    np.save(npy, features)
    return npy.getvalue()


downloads = st.columns(2)  # made when clicked, not on every rerun
downloads[0].download_button("Download CSV", as_csv, f"features_{layer}.csv", "text/csv", on_click="ignore",
                             help="One row per image, one column per number: opens in a spreadsheet.")
downloads[1].download_button("Download .npy", as_npy, f"features_{layer}.npy", "application/octet-stream",
                             on_click="ignore",
                             help="The same numbers for Python (numpy.load), one row per image, in upload order.")
code_panel("Keras code", tlcore.feature_program(choice.backbone, layer, weights=choice.weights, images=names),
           "features")
