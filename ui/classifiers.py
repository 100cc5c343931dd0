"""What the Predict page can classify with: ImageNet, an uploaded .keras model, or a trained run."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

import tlcore
from ui import access, first_screen, models, sidebar, training
from ui.precision import FORCE_FLOAT32
from ui.session_memo import remembered

if TYPE_CHECKING:  # only for annotations: the sidebar and Home must not load Keras (issue 18)
    import keras
    import pandas as pd
    from PIL import Image

IMAGENET, UPLOADED = "imagenet", "uploaded"
LITE_WORDS = ("The same network and weights, kept on this server in TensorFlow Lite's format (LiteRT): it answers "
              "in a fraction of a second while TensorFlow, which the heatmap needs, loads. It gives Keras's "
              "probabilities to five decimal places. Once the network is loaded, Keras answers again.")
TABLES_KEPT = 16
"""Top-5 tables a session keeps (the most recently shown; a few kilobytes each): a rerun or a switch back to
Predict shows the kept table instead of running the network again (issue 18)."""
RECORDS_KEPT = 8
"""Run records a session keeps for Predict (a run's config, result and its dataset's summary: up to a few hundred
kilobytes for a large dataset's file list)."""


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A model ready to predict, with the preprocessing and class names it expects (an upload's
    model is a ``tlcore.UploadedModel``: its passes run in its worker).

    The sidebar's network may have a LiteRT copy (``lite``): it answers the top-5 without TensorFlow,
    and the Keras model is loaded only when something asks for ``model`` (the heatmap, a batch).
    """

    load_model: Callable[[], keras.Model | tlcore.UploadedModel]
    backbone: str
    labels: list[str] | None
    description: str
    precision: str | None = None
    lite: tlcore.LiteClassifier | None = None

    @property
    def model(self) -> keras.Model | tlcore.UploadedModel:
        """The Keras model (loaded on first use where a LiteRT copy answers; shared and cached)."""
        return self.load_model()

    def input_size(self) -> tuple[int, int]:
        """The (height, width) the model takes."""
        return self.lite.input_size if self.lite is not None else tlcore.model_input_size(self.model)


def choices(backbone: str) -> dict[str, str]:
    """Model id -> what to call it: ImageNet, an upload (not in a read-only demo), then every finished run."""
    runs = training.run_store().with_models()
    options = {IMAGENET: f"{backbone}: the 1,000 ImageNet classes"}
    if not access.read_only():
        options[UPLOADED] = "A .keras model file of mine"
    options.update({run_id: f"Trained run: {title}" for run_id, title in tlcore.run_titles(runs, access.owner_label).items()})
    return options


def resize_mode(model_id: str) -> str:
    """How ``model_id``'s model fits a picture to its input: a trained run as it was trained, else a centre crop."""
    if model_id in (IMAGENET, UPLOADED) or not training.run_store().has(model_id):
        return "crop"
    return _finished_run(model_id).config.resize_mode


def _finished_run(run_id: str) -> tlcore.RunRecord:
    """A run Predict lists (finished, with a model), read once per session and model file (``models.model_stamp``):
    nothing Predict reads of it changes while it has that model, and its record (its dataset's file list among
    it) was read twice at every rerun."""
    return remembered("_run_records", (run_id, models.model_stamp(run_id)), lambda: training.run_store().get(run_id),
                      keep=RECORDS_KEPT)


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
        lite = models.lite_classifier(choice)  # written by an earlier load: the top-5 needs no TensorFlow
        load = functools.partial(sidebar.load_or_explain, models.classifier, choice)
        return Classifier(load if lite is not None else _loaded(load()), choice.backbone, None,
                          f"{choice.backbone} with {choice.label} weights, as a classifier of the "
                          "1,000 ImageNet classes.", lite=lite)
    if model_id == UPLOADED:
        if model_file is None:
            st.info("Upload a .keras model to classify with it.")
            st.stop()
        path = str(models.store_upload(model_file.getvalue(), "models", ".keras"))
        labels = [name.strip() for name in class_text.split(",") if name.strip()] or None
        return Classifier(_loaded(sidebar.load_or_explain(models.file_model, path)), choice.backbone, labels,
                          f"Your model {access.plain(model_file.name)}, with {choice.backbone} preprocessing.")
    record = _finished_run(model_id)
    return Classifier(_loaded(sidebar.load_or_explain(models.run_model, model_id)), record.spec.backbone,
                      record.class_names, f"A model trained in run `{model_id}` on "
                      f"{access.plain(record.dataset.get('name'))}: "
                      f"{', '.join(access.plain(name) for name in record.class_names)}.",
                      tlcore.precision_for_run(record.result and record.result.precision_check))


def _loaded(model: keras.Model | tlcore.UploadedModel) -> Callable[[], keras.Model | tlcore.UploadedModel]:
    """A loader of a model already loaded."""
    return lambda: model


def top_five(classifier: Classifier, image: Image.Image, mode: str, *, context: str) -> tuple[pd.DataFrame, float]:
    """``classifier``'s top-5 for ``image`` and the milliseconds its prediction took when it was worked out.

    Worked out once per model, image, class names, fit and precision in this session (``context`` names
    the model and the image; the model object is part of the key too), then kept (``TABLES_KEPT``).

    Raises:
        tlcore.TLError: the model cannot classify this image (not kept: asked again next time).
    """
    def compute() -> tuple[pd.DataFrame, float]:
        started = time.perf_counter()
        if classifier.lite is not None:
            table = classifier.lite.top_k(image, k=5, labels=classifier.labels, mode=mode)
        else:
            table = tlcore.predict_top_k(classifier.model, image, backbone=classifier.backbone, k=5,
                                         labels=classifier.labels, mode=mode, precision=classifier.precision)
        return table, (time.perf_counter() - started) * 1000

    answering = classifier.lite if classifier.lite is not None else classifier.model
    key = (context, id(answering), tuple(classifier.labels or ()), mode, classifier.precision,
           bool(st.session_state.get(FORCE_FLOAT32)))
    return remembered("_top_fives", key, compute, keep=TABLES_KEPT)
