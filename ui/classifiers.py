"""What the Predict page can classify with: ImageNet, an uploaded .keras model, or a trained run."""

from __future__ import annotations

import dataclasses

import keras
import streamlit as st

import tlcore
from ui import access, first_screen, models, sidebar, training

IMAGENET, UPLOADED = "imagenet", "uploaded"


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A model ready to predict, with the preprocessing and class names it expects (an upload's
    model is a ``tlcore.UploadedModel``: its passes run in its worker)."""

    model: keras.Model | tlcore.UploadedModel
    backbone: str
    labels: list[str] | None
    description: str
    precision: str | None = None


def choices(backbone: str) -> dict[str, str]:
    """Model id -> what to call it: ImageNet, an upload (not in a read-only demo), then every finished run."""
    runs = training.run_store().list().query("status in ['done', 'stopped']")
    options = {IMAGENET: f"{backbone}: the 1,000 ImageNet classes"}
    if not access.read_only():
        options[UPLOADED] = "A .keras model file of mine"
    options.update({run_id: f"Trained run: {title}" for run_id, title in tlcore.run_titles(runs, access.owner_label).items()})
    return options


def untrained_note(backbone: str) -> str:
    """What the random network's top-5 is, and where real answers are to be had on this server."""
    note = ("These weights are untrained (random): the classes below are what a network that learned nothing "
            "outputs, **not predictions**.")
    if first_screen.imagenet_available(backbone):
        return note + " Choose *ImageNet* weights in the sidebar for real ones."
    if first_screen.newest_run() is not None:
        return note + " For real answers, choose a trained run under *Model*."
    return note + " For real answers, run the develop-a-model demo on Home: it trains a network here in minutes."


def load(model_id: str, choice: models.WeightsChoice, model_file, class_text: str) -> Classifier:
    """The chosen classifier; explains and stops the page when it cannot be had."""
    if model_id == IMAGENET:
        return Classifier(sidebar.load_or_explain(models.classifier, choice), choice.backbone, None,
                          f"{choice.backbone} with {choice.label} weights, as a classifier of the "
                          "1,000 ImageNet classes.")
    if model_id == UPLOADED:
        if model_file is None:
            st.info("Upload a .keras model to classify with it.")
            st.stop()
        path = str(models.store_upload(model_file.getvalue(), "models", ".keras"))
        labels = [name.strip() for name in class_text.split(",") if name.strip()] or None
        return Classifier(sidebar.load_or_explain(models.file_model, path), choice.backbone, labels,
                          f"Your model {access.plain(model_file.name)}, with {choice.backbone} preprocessing.")
    record = training.run_store().get(model_id)
    return Classifier(sidebar.load_or_explain(models.run_model, model_id), record.spec.backbone,
                      record.class_names, f"A model trained in run `{model_id}` on "
                      f"{access.plain(record.dataset.get('name'))}: "
                      f"{', '.join(access.plain(name) for name in record.class_names)}.",
                      tlcore.precision_for_run(record.result and record.result.precision_check))
