"""Drawing one stored run: curves, evaluation, downloads, and where to use it next."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import tlcore
from ui import charts


def render_run(record: tlcore.RunRecord, store: tlcore.RunStore) -> None:
    """Everything a person wants to see about a run, from what is on disk."""
    result = record.result or {}
    spec = record.spec
    frozen = spec.trainable_from or "all frozen"
    st.caption(f"Run `{record.id}` · {record.status} · {spec.backbone} at {spec.input_shape[0]}x"
               f"{spec.input_shape[1]} · trainable from: {frozen} · {len(record.history)} epoch(s)"
               + (f" · {result['seconds']:.1f} s" if "seconds" in result else "")
               + (" · frozen features cached" if result.get("feature_cache") else "")
               + (f" · batch-norm statistics of {result['recalibrated_batchnorm']} layers recomputed on the "
                  "training images" if result.get("recalibrated_batchnorm") else ""))
    if len(record.history):
        st.altair_chart(charts.training_curves(record.history), width="content")
    if not result:
        return
    metrics = st.columns(3)
    metrics[0].metric("Validation accuracy", f"{result['accuracy']:.1%}")
    metrics[1].metric("Validation loss", f"{result['loss']:.3f}")
    metrics[2].metric("Classes", len(result["class_names"]))
    left, right = st.columns(2)
    with left:
        st.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
        st.altair_chart(charts.confusion_heatmap(result["confusion"], result["class_names"]), width="content")
    with right:
        st.markdown("**Per class**")
        st.dataframe(pd.DataFrame({"class": result["class_names"], "precision": result["precision"],
                                   "recall": result["recall"]}),
                     hide_index=True, column_config={
                         "precision": st.column_config.NumberColumn(format="percent"),
                         "recall": st.column_config.NumberColumn(format="percent")})
    wrong = result.get("confidently_wrong", [])
    if wrong:
        st.markdown("**Most confidently wrong** validation images")
        cells = st.columns(min(len(wrong), 8))
        for cell, item in zip(cells, wrong):
            path = record.image_path(int(item["index"]))
            if path is not None:
                cell.image(str(path), width=96)
            cell.caption(f"{item['true']} → **{item['predicted']}** ({item['confidence']:.0%})")
    actions = st.columns(4)
    if record.model_path.is_file():
        actions[0].download_button("Download model (.keras)", store.model_bytes(record.id),
                                   f"{record.id}.keras", key=f"model-{record.id}")
    actions[1].download_button("Download history (CSV)", record.history.to_csv(index=False).encode(),
                               f"{record.id}-history.csv", "text/csv", key=f"history-{record.id}")
    if record.model_path.is_file():
        if actions[2].button("Classify with this model", key=f"predict-{record.id}"):
            st.session_state["predict_model"] = record.id
            st.switch_page("../pages/predict.py")
        if actions[3].button("Reuse its base for a new task", key=f"reuse-{record.id}",
                             help="Develop-a-model: this run's trained base, a new head."):
            st.session_state["base_run"] = record.id
            st.switch_page("../pages/build.py")
