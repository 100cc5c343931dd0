"""Drawing one stored run: curves, evaluation, downloads, and where to use it next."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pandas as pd
import streamlit as st

import tlcore
from ui import access, charts, grad_cam, training
from ui.compare_view import render_scratch_comparison

_log = logging.getLogger("transfer_lab.exports")

RUN_COLUMNS = {
    "created": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm", help="When the run started"),
    "name": st.column_config.TextColumn("run", help="The network and the images it trained on"),
    "backbone": st.column_config.TextColumn("network", help="The pretrained network the model is built on"),
    "input_size": st.column_config.NumberColumn("image size (px)", help="Images are resized to this many pixels "
                                                "a side before the network sees them"),
    "trainable_from": st.column_config.TextColumn(
        "layers trained", help="\"frozen\": only the new head learned; a layer name: that layer and the ones after "
                               "it learned too; \"all\": every layer learned"),
    "role": st.column_config.TextColumn(
        "part", help="transfer: reuses a trained network; scratch: the same model from random weights, to "
                     "compare; source: the develop-a-model demo's first run"),
    "status": st.column_config.TextColumn("status", help="done, stopped (early), failed, running, or "
                                                        "interrupted (the server stopped while it trained)"),
    "accuracy": st.column_config.NumberColumn(
        "accuracy", format="percent", width=110,
        help="The share of held-out images (never trained on) that the kept model classifies right; while a run "
             "trains, its best epoch so far"),
    "epochs": st.column_config.NumberColumn("epochs done", help="Passes over the training images completed"),
    "seconds": st.column_config.NumberColumn("time (s)", format="%.1f", help="How long training took"),
}
"""Plain names and one-line help for the columns of ``RunStore.list()`` shown on Runs."""


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``RunStore.list()``'s rows as the Runs page shows them: the kept model's accuracy, or the best epoch's so
    far where there is none yet."""
    return runs.assign(accuracy=runs["accuracy"].fillna(runs["best_val_accuracy"]))
OVERLAY_HELP = ("Draws the chosen runs' curves on one chart. First chosen: the newest run and its twin from "
                "scratch, or the newest runs on the same images.")
CURVE_HELP = ("Accuracy: the share of images classified right. Loss: how wrong the model is on average "
              "(lower is better). \"Held-out\" images are the validation share, never trained on.")


def _read_export(build, *args) -> bytes:
    """The bytes of an export, built on first click (in the download's own thread) and kept on disk.

    Runs when the person clicks, never on a page render: the page does not read the
    model file. A failure is logged; Streamlit tells the browser the file could not be made.
    """
    try:
        return Path(build(*args)).read_bytes()
    except Exception:
        _log.exception("Building a download failed (%s)", getattr(build, "__name__", build))
        raise


def _read_kept(path: Path) -> bytes:
    """The bytes of an export already built (read-only mode builds none)."""
    try:
        return path.read_bytes()
    except OSError:
        _log.exception("Reading a kept download failed (%s)", path.name)
        raise


READ_ONLY_EXPORTS = ("Building downloads is off on this read-only demo (TL_READ_ONLY): only files already "
                     "made here can be downloaded.")


def _size(path: Path) -> str:
    return f" ({tlcore.format_size(path.stat().st_size)})" if path.is_file() else ""


def _download_model(record: tlcore.RunRecord) -> None:
    """The model as .keras without optimizer state, made only when the button is clicked."""
    bare = tlcore.exports_folder(record) / "model.keras"
    if access.read_only():  # a public demo: a file already made, or words
        if bare.is_file():
            st.download_button(f"Download model (.keras){_size(bare)}", functools.partial(_read_kept, bare),
                               f"{record.id}.keras", "application/octet-stream", key=f"model-{record.id}",
                               on_click="ignore", icon=":material/download:")
        else:
            st.button("Download model (.keras)", key=f"model-{record.id}", disabled=True, help=READ_ONLY_EXPORTS,
                      icon=":material/download:")
        return
    st.download_button(f"Download model (.keras){_size(bare)}",
                       functools.partial(_read_export, tlcore.run_keras_file, record), f"{record.id}.keras",
                       "application/octet-stream", key=f"model-{record.id}", on_click="ignore",
                       icon=":material/download:",
                       help="Architecture and weights without the optimizer's state: what Predict's "
                            "\"A .keras model file of mine\" takes. Made on the first click, then kept.")


def _exports(record: tlcore.RunRecord) -> None:
    """The deployable exports, each made only when its button is clicked."""
    with st.expander("Export for deployment (TFLite, SavedModel, Keras)", icon=":material/deployed_code:"):
        st.caption("Each is a zip with the model, labels.txt, a model card (classes, input, preprocessing, "
                   "metrics, training settings, dates) and predict.py, a short example that needs no Transfer "
                   "Lab. TFLite and SavedModel take raw RGB pixels (0..255): the preprocessing is inside. The "
                   "first click makes the file (a few seconds to a minute); later clicks send the kept one.")
        if access.read_only():
            st.caption(READ_ONLY_EXPORTS)
        row = st.container(horizontal=True)  # buttons as wide as their words, wrapping: no label is cut
        for form in tlcore.EXPORT_FORMATS.values():
            path = tlcore.export_path(record, form.key)
            if access.read_only():
                if path.is_file():
                    row.download_button(f"{form.title}{_size(path)}", functools.partial(_read_kept, path),
                                         f"{record.id}-{form.key}.zip", "application/zip",
                                         key=f"export-{form.key}-{record.id}", on_click="ignore",
                                         icon=":material/download:", width="content",
                                         help=f"For {form.runtime}")
                else:
                    row.button(form.title, key=f"export-{form.key}-{record.id}", disabled=True,
                                help=READ_ONLY_EXPORTS, icon=":material/download:", width="content")
                continue
            row.download_button(f"{form.title}{_size(path)}",
                                 functools.partial(_read_export, tlcore.export_run, record, form.key),
                                 f"{record.id}-{form.key}.zip", "application/zip", key=f"export-{form.key}-{record.id}",
                                 on_click="ignore", icon=":material/download:", width="content",
                                 help=f"For {form.runtime}. Made on the first click, then kept.")


def render_run(record: tlcore.RunRecord, store: tlcore.RunStore) -> None:
    """Everything a person wants to see about a run, from what is on disk."""
    result = record.result
    spec = record.spec
    frozen = spec.trainable_from or "all frozen"
    started = f" · started by {access.plain(access.owner_label(record.owner))}" if access.enabled() else ""
    st.caption(f"Run `{record.id}` · {record.status}{started} · {spec.describe()}, "
               f"{spec.num_classes} outputs · trainable from: {frozen} · {len(record.history)} epoch(s)"
               + (f" · {result.seconds:.1f} s" if result and result.seconds is not None else "")
               + (" · frozen features cached" if result and result.feature_cache else "")
               + (f" · batch-norm statistics of {result.recalibrated_batchnorm} layers recomputed on the "
                  "training images" if result and result.recalibrated_batchnorm else "")
               + (f" · trained across {len(result.worker_steps)} workers ({', '.join(map(str, result.worker_steps))} "
                  "steps)" if result and result.worker_steps else ""))
    if record.status == "failed":  # what failed, in words (tlcore's message; details are in the server log)
        note = record.folder / "error.txt"
        reason = note.read_text(encoding="utf-8") if note.is_file() else "The details are in the server log."
        st.error(f"**This run failed.** {access.message(reason)}")
    if len(record.history):
        st.altair_chart(charts.training_curves(record.history), width="content")
    comparison = training.scratch_comparison(store, record.id)
    if comparison is not None:
        render_scratch_comparison(comparison)
    if result is None:
        return
    metrics = st.columns(3)
    if record.config.validation_fraction > 0:
        metrics[0].metric("Validation accuracy", f"{result.accuracy:.1%}",
                          help="The share of held-out images (the validation share, never trained on) it got right")
        metrics[1].metric("Validation loss", f"{result.loss:.3f}",
                          help="How wrong it is on average on the held-out images; lower is better")
    else:  # nothing was held out: the final numbers are on the images it learned from
        metrics[0].metric("Training accuracy", f"{result.accuracy:.1%}",
                          help="No images were held out (validation share 0): the share of the images it trained on "
                               "that it got right, which says little about new images")
        metrics[1].metric("Training loss", f"{result.loss:.3f}",
                          help="How wrong it is on average on the images it trained on; lower is better")
    metrics[2].metric("Classes", len(result.class_names), help="How many kinds of thing the model tells apart")
    if record.role == tlcore.SWEEP_BEST:
        st.caption("This head won a sweep by its score on these same validation images, so its accuracy here is "
                   "a little optimistic (the best of several tries): expect somewhat less on new images.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
        st.altair_chart(charts.confusion_heatmap(result.confusion, list(result.class_names)), width="content")
    with right:
        st.markdown("**Per class**")
        st.dataframe(result.per_class(),
                     hide_index=True, column_config={
                         "precision": st.column_config.NumberColumn(
                             format="percent", help="Of the images it called this class, the share that were"),
                         "recall": st.column_config.NumberColumn(
                             format="percent", help="Of the images of this class, the share it found")})
    wrong = tlcore.wrong_predictions(record)
    if wrong:
        st.markdown("**Most confidently wrong** validation images")
        for cell, item in zip(st.columns(len(wrong)), wrong):
            if item.path is not None:
                cell.image(str(item.path), width=96)
            row = item.prediction
            cell.caption(f"{access.plain(row.true)} → **{access.plain(row.predicted)}** ({row.confidence:.0%})")
        grad_cam.wrong_heatmaps(record, len(wrong))  # on demand: each one's heat for the wrong class
    actions = st.container(horizontal=True)  # as wide as their words, wrapping: no label is cut
    if record.model_path.is_file():
        with actions:
            _download_model(record)
    actions.download_button("Download history (CSV)", record.history.to_csv(index=False).encode(),
                               f"{record.id}-history.csv", "text/csv", key=f"history-{record.id}")
    if record.model_path.is_file():
        if actions.button("Classify with this model", key=f"predict-{record.id}"):
            st.session_state["predict_model"] = record.id
            st.switch_page("../pages/predict.py")
        if actions.button("Reuse its base for a new task", key=f"reuse-{record.id}",
                             help="Develop-a-model: this run's trained base, a new head."):
            st.session_state["base_run"] = record.id
            st.switch_page("../pages/build.py")
        _exports(record)
