"""Batch prediction on the Predict page: many images or zips in; a table with thumbnails, top-1 and
top-5, and a CSV out. The checks, budgets and the work are ``tlcore.batch``'s; this draws them.

A session keeps one result, the last: the one before is let go before the next is classified. Its
size is bounded by the inputs' (at most ``TL_MAX_DATASET_IMAGES`` rows, each a 2 KB thumbnail and k
top-k records). A read-only visitor (``TL_READ_ONLY``, a public demo with many sessions) keeps it
only up to ``READ_ONLY_KEPT_MB``: a larger result is shown, and the CSV offered, but not kept, so a
rerun classifies again.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

import tlcore
from ui import access
from ui.precision import FORCE_FLOAT32

RESULT = "batch_result"
"""Session-state key: (what was classified, its BatchResult), so a rerun does not classify again."""
READ_ONLY_KEPT_MB = 16
"""The largest result a read-only visitor's session keeps between reruns (some 5,000 images at about 3 KB each)."""
MB = 2**20


def _kept(result) -> bool:
    """Whether this session may keep ``result`` until the next rerun."""
    return not access.read_only() or result.nbytes() <= READ_ONLY_KEPT_MB * MB


def _key(files: list[tuple[str, bytes]], *parts: object) -> str:
    digest = hashlib.sha256(repr(parts).encode())
    for name, data in files:
        digest.update(name.encode("utf-8", "replace") + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def render_batch(classifier, model_key: str, uploads: list, mode: str) -> None:
    """Classify every uploaded image (zips expanded) with a progress bar; show the table and a CSV download.

    Args:
        classifier: the Predict page's ``ui.classifiers.Classifier``.
        model_key: what identifies the classifier (model choice, backbone, weights, an uploaded file); its
            class names and precision are added here.
        uploads: the uploaded files (images and zips).
        mode: "crop" or "squash".
    """
    if not uploads:
        st.info("Upload images, or zips of images (folders inside are fine), to classify them all at once.")
        return
    files = [(upload.name, upload.getvalue()) for upload in uploads]
    key = _key(files, model_key, tuple(classifier.labels or ()), classifier.precision, mode,
               st.session_state.get(FORCE_FLOAT32))
    cached = st.session_state.get(RESULT)
    if cached is not None and cached[0] == key:
        result = cached[1]
    else:
        st.session_state.pop(RESULT, None)  # one result a session: the last goes before the next is made
        try:
            items = tlcore.batch_inputs(files)
        except tlcore.TLError as exc:
            st.error(f"**Those files cannot be used.** {access.message(exc)}")
            return
        bar = st.progress(0.0, text=f"Classifying {len(items):,} images...")
        try:
            result = tlcore.predict_batch(
                classifier.model, items, backbone=classifier.backbone, labels=classifier.labels, mode=mode,
                precision=classifier.precision,
                progress=lambda done, total: bar.progress(done / total, text=f"Image {done:,} of {total:,}"))
        except tlcore.TLError as exc:
            st.error(access.message(exc))
            return
        finally:
            bar.empty()
        if _kept(result):
            st.session_state[RESULT] = (key, result)
        else:
            st.caption(f"This result ({result.nbytes() / MB:,.0f} MB) is shown but not kept: read-only visitors "
                       f"keep results up to {READ_ONLY_KEPT_MB} MB, so changing anything here classifies again. "
                       "Download the table now to keep it.")
    st.subheader(f"{len(result.table):,} image(s) classified")
    st.dataframe(
        result.table.assign(image=list(result.thumbnails))[["image", "file", "top-1", "probability", "top-5"]],
        hide_index=True, width="stretch", row_height=56,
        column_config={"image": st.column_config.ImageColumn("image", width="small"),
                       "probability": st.column_config.NumberColumn("probability", format="percent"),
                       "top-5": st.column_config.TextColumn("top-5", width="large")},
    )
    if result.skipped:
        with st.expander(f"{len(result.skipped):,} file(s) skipped"):
            st.dataframe(pd.DataFrame([s.split(": ", 1) for s in result.skipped], columns=["file", "reason"]),
                         hide_index=True, width="stretch")
    st.download_button("Download the table (CSV)", result.csv(), "predictions.csv", "text/csv",
                       on_click="ignore", icon=":material/download:", key="batch_csv",
                       help="The table above as a spreadsheet file: one row per picture.")
