"""Predict: an image in, the network's top-5 ImageNet classes out."""

import time

import streamlit as st

import tlcore
from ui import charts, models, sidebar
from ui.samples import IMAGE_TYPES, sample_images
from ui.state import from_url, to_url

st.title("Classify an image")
choice = sidebar.choice()
st.caption(f"{choice.backbone} with {choice.label} weights, as a classifier of the 1,000 ImageNet classes.")

SAMPLES = sample_images()
from_url("fit", "crop", choices=["crop", "squash"])
left, right = st.columns([2, 3], gap="large")

with left:
    upload = st.file_uploader("Upload an image", type=IMAGE_TYPES,
                              help="JPEG, PNG, WebP, BMP, GIF or TIFF.")
    sample = st.selectbox("...or pick a sample", list(SAMPLES), key="sample",
                          disabled=upload is not None)
    st.radio("Fit to the network's input", ["crop", "squash"], key="fit", horizontal=True,
             format_func={"crop": "centre crop", "squash": "squash"}.get)
    to_url("fit")

source = upload.getvalue() if upload is not None else SAMPLES[sample]
source_name = upload.name if upload is not None else f"the {sample} sample"
try:
    image = tlcore.load_image(source)
except tlcore.ImageError as exc:
    left.error(f"**That file cannot be used.** {exc}")
    st.stop()

model = sidebar.load_or_explain(models.classifier, choice)
started = time.perf_counter()
table = tlcore.predict_top_k(model, image, backbone=choice.backbone, k=5, mode=st.session_state["fit"])
elapsed_ms = (time.perf_counter() - started) * 1000

with left:
    size = tlcore.get_backbone(choice.backbone).default_size
    st.image(tlcore.fit_image(image, (size, size), mode=st.session_state["fit"]),
             caption=f"What the network sees of {source_name}: {size}x{size}", width=size)

with right:
    if choice.is_random:
        st.warning("These weights are untrained (random): the classes below are what an untrained "
                   "network outputs, **not predictions**. Choose ImageNet weights for real ones.")
    st.subheader("Top 5")
    st.table(table.style.format({"probability": "{:.2%}"}).hide(axis="index"))
    st.altair_chart(charts.top_k_bars(table), width="stretch")
    st.caption(f"Prediction took {elapsed_ms:.0f} ms (decode, resize and one forward pass).")
