"""Predict: an image in, the network's top-5 ImageNet classes out."""

import time

import streamlit as st

import tlcore
from ui import charts, models, sidebar, training
from ui.samples import IMAGE_TYPES, sample_images
from ui.state import from_url, to_url

st.title("Classify an image")
choice = sidebar.choice()
IMAGENET, UPLOADED = "imagenet", "uploaded"
runs = training.run_store().list().query("status in ['done', 'stopped']")
run_names = dict(zip(runs["id"], runs["name"] + " · " + runs["id"].str[-6:]))
MODELS = [IMAGENET, UPLOADED, *run_names]
if st.session_state.get("predict_model", IMAGENET) not in MODELS:
    del st.session_state["predict_model"]
from_url("predict_model", IMAGENET, choices=MODELS)

SAMPLES = sample_images()
from_url("fit", "crop", choices=["crop", "squash"])
left, right = st.columns([2, 3], gap="large")

with left:
    model_id = st.selectbox(
        "Model", MODELS, key="predict_model",
        format_func=lambda m: {IMAGENET: f"{choice.backbone}: the 1,000 ImageNet classes",
                               UPLOADED: "A .keras model file of mine"}.get(m, f"Trained run: {run_names.get(m)}"),
    )
    if model_id == UPLOADED:
        model_file = st.file_uploader(f"A .keras model built on {choice.backbone} (its preprocessing is used)",
                                      type=["keras"], key="model_file")
        class_text = st.text_input("Its class names, comma-separated (optional)", key="model_classes")
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
elif model_id == UPLOADED:
    if model_file is None:
        st.info("Upload a .keras model to classify with it.")
        st.stop()
    model = sidebar.load_or_explain(
        models.file_model, str(models.store_upload(model_file.getvalue(), "models", ".keras")))
    backbone = choice.backbone
    labels = [name.strip() for name in class_text.split(",") if name.strip()] or None
    st.caption(f"Your model {model_file.name}, with {choice.backbone} preprocessing.")
else:
    record = training.run_store().get(model_id)
    model = sidebar.load_or_explain(models.run_model, model_id)
    backbone, labels = record.spec.backbone, record.class_names
    st.caption(f"A model trained in run `{model_id}` on {record.dataset.get('name')}: "
               f"{', '.join(labels)}.")
started = time.perf_counter()
try:
    table = tlcore.predict_top_k(model, image, backbone=backbone, k=5, labels=labels, mode=st.session_state["fit"])
except tlcore.TLError as exc:
    st.error(str(exc))
    st.stop()
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
