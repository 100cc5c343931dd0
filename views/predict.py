"""Predict: an image in, the network's top-5 ImageNet classes out."""

import time

import streamlit as st

import tlcore
from ui import charts, models, sidebar, training
from ui.samples import IMAGE_TYPES, sample_images
from ui.state import from_url, to_url

st.title("Classify an image")
choice = sidebar.choice()
IMAGENET = "imagenet"
runs = training.run_store().list().query("status in ['done', 'stopped']")
run_names = dict(zip(runs["id"], runs["name"] + " · " + runs["id"].str[-6:]))
if "predict_model" in st.session_state and st.session_state["predict_model"] not in [IMAGENET, *run_names]:
    del st.session_state["predict_model"]
from_url("predict_model", IMAGENET, choices=[IMAGENET, *run_names])

SAMPLES = sample_images()
from_url("fit", "crop", choices=["crop", "squash"])
left, right = st.columns([2, 3], gap="large")

with left:
    model_id = st.selectbox(
        "Model", [IMAGENET, *run_names], key="predict_model",
        format_func=lambda m: f"{choice.backbone}: the 1,000 ImageNet classes" if m == IMAGENET
        else f"Trained run: {run_names[m]}",
    )
    upload = st.file_uploader("Upload an image", type=IMAGE_TYPES,
                              help="JPEG, PNG, WebP, BMP, GIF or TIFF.")
    sample = st.selectbox("...or pick a sample", list(SAMPLES), key="sample",
                          disabled=upload is not None)
    st.radio("Fit to the network's input", ["crop", "squash"], key="fit", horizontal=True,
             format_func={"crop": "centre crop", "squash": "squash"}.get)
    to_url("fit", "predict_model")

source = upload.getvalue() if upload is not None else SAMPLES[sample]
source_name = upload.name if upload is not None else f"the {sample} sample"
try:
    image = tlcore.load_image(source)
except tlcore.ImageError as exc:
    left.error(f"**That file cannot be used.** {exc}")
    st.stop()

if model_id == IMAGENET:
    model, backbone, labels = sidebar.load_or_explain(models.classifier, choice), choice.backbone, None
    st.caption(f"{choice.backbone} with {choice.label} weights, as a classifier of the 1,000 ImageNet classes.")
else:
    record = training.run_store().get(model_id)
    model = sidebar.load_or_explain(models.run_model, model_id)
    backbone, labels = record.spec.backbone, record.class_names
    st.caption(f"A model trained in run `{model_id}` on {record.dataset.get('name')}: "
               f"{', '.join(labels)}.")
started = time.perf_counter()
table = tlcore.predict_top_k(model, image, backbone=backbone, k=5, labels=labels, mode=st.session_state["fit"])
elapsed_ms = (time.perf_counter() - started) * 1000

with left:
    height, width = tlcore.model_input_size(model)
    st.image(tlcore.fit_image(image, (height, width), mode=st.session_state["fit"]),
             caption=f"What the network sees of {source_name}: {height}x{width}", width=max(width, 128))

with right:
    if model_id == IMAGENET and choice.is_random:
        st.warning("These weights are untrained (random): the classes below are what an untrained "
                   "network outputs, **not predictions**. Choose ImageNet weights for real ones.")
    st.subheader(f"Top {len(table)}")
    st.table(table.style.format({"probability": "{:.2%}"}).hide(axis="index"))
    st.altair_chart(charts.top_k_bars(table), width="stretch")
    st.caption(f"Prediction took {elapsed_ms:.0f} ms (decode, resize and one forward pass).")
