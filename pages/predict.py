"""Predict: an image in, the top-5 classes of a pretrained or trained network out."""

import streamlit as st

import tlcore
from ui import access, batch, charts, classifiers, first_screen, grad_cam, sidebar, warm_keras
from ui.code_panel import code_panel
from ui.samples import IMAGE_TYPES, decoded_image, sample_images
from ui.share import copy_link
from ui.state import forget_gone, from_url, to_url

st.title("Classify an image")
copy_link("predict")
about = st.empty()  # what the chosen model is, filled in once it is known
choice = sidebar.choice()
MODELS = classifiers.choices(choice.backbone)
SAMPLES = sample_images()
forget_gone("predict_model", MODELS, "The trained run")  # deleted since it was chosen here
from_url("predict_model", first_screen.default_model(choice.backbone, list(MODELS)), choices=list(MODELS))
from_url("fit", classifiers.resize_mode(st.session_state["predict_model"]), choices=["crop", "squash"])
INPUTS = {"upload": "An image", "camera": "Camera", "batch": "Many images or a zip"}
from_url("predict_input", "upload", choices=list(INPUTS))

left, right = st.columns([2, 3], gap="large")
with left:
    model_id = st.selectbox("Model", list(MODELS), key="predict_model", format_func=MODELS.get,
                            on_change=lambda: st.session_state.update(  # a run fits pictures as it was trained
                                fit=classifiers.resize_mode(st.session_state["predict_model"])),
                            help="Which network answers: the sidebar's network with its 1,000 everyday classes "
                                 "(ImageNet), or a network trained here on your own classes (a run).")
    model_file, class_text = None, ""
    if model_id == classifiers.UPLOADED:
        model_file = st.file_uploader(f"A .keras model built on {choice.backbone} (its preprocessing is used)",
                                      type=["keras"], key="model_file",
                                      help="A model saved by Keras (model.save), made from the sidebar's network: "
                                           "it is checked before it is opened.")
        class_text = st.text_input("Its class names, comma-separated (optional)", key="model_classes",
                                   help="The names of its outputs in order, e.g. cat, dog; without them the "
                                        "answers are shown as class 0, class 1...")
    how = st.segmented_control("Classify", list(INPUTS), key="predict_input", format_func=INPUTS.get,
                               required=True, help="One picture (a file or the camera), or many at once as a "
                                                   "table you can download.")
    if how == "batch":
        uploads = st.file_uploader("Images, or zips of images", type=[*IMAGE_TYPES, "zip"],
                                   accept_multiple_files=True, key="batch_files",
                                   help="Checked like datasets: JPEG, PNG, WebP, BMP, GIF or TIFF; zips inspected whole.")
    elif how == "camera":
        upload = st.camera_input("Take a photo", key="camera_photo",
                                 help="Your browser asks before it uses the camera; the photo stays on this server.")
    else:
        upload = st.file_uploader("Upload an image", type=IMAGE_TYPES,
                                  help="A photo or drawing: JPEG, PNG, WebP, BMP, GIF or TIFF.")
    if how != "batch":
        sample = st.selectbox("...or pick a sample", list(SAMPLES), key="sample", disabled=upload is not None,
                              help="Photos that come with the app, to try it without one of your own.")
    st.radio("Fit to the network's input", ["crop", "squash"], key="fit", horizontal=True,
             format_func={"crop": "centre crop", "squash": "squash"}.get,
             help="The network takes square pictures of one size. Centre crop keeps the middle square; squash "
                  "keeps everything but changes the proportions. A trained run starts on the fit it was trained "
                  "with.")
    to_url("fit", "predict_model", "predict_input")

shown_model = f"{model_id}|{choice}|{getattr(model_file, 'file_id', '')}"  # an uploaded model: which file
if how == "batch":  # a table for many images instead of one image's top-5
    classifier = classifiers.load(model_id, choice, model_file, class_text)
    about.caption(classifier.description)
    with right:
        batch.render_batch(classifier, shown_model, uploads or [], st.session_state["fit"])
    st.stop()

source = upload.getvalue() if upload is not None else SAMPLES[sample].read_bytes()
source_name = (("your photo" if how == "camera" else access.plain(upload.name)) if upload is not None
               else f"the {sample} sample")
try:
    image = decoded_image(source)  # once per distinct content: a rerun does not decode again
except tlcore.ImageError as exc:
    left.error(f"**That file cannot be used.** {access.message(exc)}")
    st.stop()

classifier = classifiers.load(model_id, choice, model_file, class_text)
about.caption(classifier.description)
shown_image = upload.file_id if upload is not None else f"sample {sample}"
try:  # once per model, image and fit in this session: a rerun or a switch back shows the kept table
    table, elapsed_ms = classifiers.top_five(classifier, image, st.session_state["fit"],
                                             context=f"{shown_model}|{shown_image}")
except tlcore.TLError as exc:
    st.error(access.message(exc))
    st.stop()

with left:
    height, width = classifier.input_size()
    st.image(tlcore.fit_image(image, (height, width), mode=st.session_state["fit"]),
             caption=f"What the network sees of {source_name}: {height}x{width}", width=max(width, 128))
with right:
    if model_id == classifiers.IMAGENET and choice.is_random:
        st.warning(classifiers.untrained_note(choice.backbone))
    st.subheader(f"Top {len(table)}")
    shown = table.assign(label=table["label"].map(access.plain))  # st.table reads Markdown: names stay literal
    st.table(shown.style.format({"probability": "{:.2%}"}).hide(axis="index"))
    st.altair_chart(charts.top_k_bars(table), width="stretch")
    runtime = " with its LiteRT copy" if classifier.lite is not None else ""
    st.caption(f"Prediction took {elapsed_ms:.0f} ms (decode, resize and one forward pass{runtime}).",
               help=classifiers.LITE_WORDS if classifier.lite is not None else None)
    warm_keras.import_keras("Loading TensorFlow for the heatmap (once per server start)...")  # a new image need not wait
    grad_cam.where_it_looks(classifier.model, classifier.backbone, image, table, st.session_state["fit"],
                            context=f"{shown_model}|{shown_image}")
code_panel("Keras code", tlcore.prediction_program(
    classifier.backbone, weights=choice.weights, class_names=classifier.labels, mode=st.session_state["fit"],
    model_file={classifiers.IMAGENET: None, classifiers.UPLOADED: getattr(model_file, "name", None)}.get(
        model_id, f"{model_id}.keras"), image=getattr(upload, "name", None) or "my_image.jpg"), "predict")
