"""The data folder against TL_MAX_DATA_GB: the stored datasets and the uploaded models and weights,
each with a confirmed delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import tlcore
from ui import access, datasets, sidebar, training


def _usage() -> tlcore.DataUsage:
    return _usage_of(datasets.data_folder())


def _datasets() -> pd.DataFrame:
    return _datasets_in(datasets.data_folder())


@st.cache_data(ttl=30, show_spinner=False)
def _usage_of(data_dir: str) -> tlcore.DataUsage:
    """The data folder's usage (``data_dir`` keys the cache: the folder it was measured in)."""
    return tlcore.data_usage()


@st.cache_data(ttl=30, show_spinner=False)
def _datasets_in(data_dir: str) -> pd.DataFrame:
    return tlcore.list_datasets()


def render_data_usage() -> None:
    """Usage against the cap; tables of stored datasets and of uploads, each with a delete (confirmed first)."""
    if done := st.session_state.pop("dataset_deleted", None):
        st.success(access.message(done))
    usage = _usage()
    st.progress(usage.fraction, text=f"Data folder: {usage} (TL_MAX_DATA_GB); stored datasets take "
                                     f"{tlcore.format_size(usage.datasets)}, uploaded models and weights "
                                     f"{tlcore.format_size(usage.uploads)}.")
    _render_datasets()
    _render_uploads()


def _render_datasets() -> None:
    table = _datasets()
    if table.empty:
        st.caption("No stored datasets yet: they appear here once the Train page has stored one.")
        return
    st.dataframe(
        table.assign(size=table["bytes"].map(tlcore.format_size))[
            ["name", "images", "classes", "size", "created", "builtin", "id"]],
        hide_index=True, width="stretch",
        column_config={"created": st.column_config.DatetimeColumn("stored", format="YYYY-MM-DD HH:mm"),
                       "builtin": st.column_config.CheckboxColumn("built-in"),
                       "size": st.column_config.TextColumn("size on disk")},
    )
    deletable = table[~table["builtin"]]
    if deletable.empty or access.read_only():  # read-only: a public demo deletes nothing
        return
    if access.enabled() and not access.is_admin():  # datasets are shared by everyone who uploaded them
        st.caption("Only an admin (TL_ADMINS) can delete stored datasets.")
        return
    labels = {row.id: f"{row.name} · {row.images} images · {tlcore.format_size(row.bytes)} · {row.id[:8]}"
              for row in deletable.itertuples()}
    with st.expander("Delete a dataset to make room"):
        chosen = st.selectbox("Dataset", list(labels), format_func=labels.get, key="dataset_to_delete")
        st.caption("Runs trained on it keep their records and models; training on it again needs a new upload.")
        confirmed = st.checkbox("Yes, delete this dataset's stored images", key=f"confirm-dataset-{chosen}")
        if st.button("Delete dataset", type="primary", disabled=not confirmed, key="delete_dataset"):
            try:
                freed = tlcore.delete_dataset(chosen, in_use=training.job_queue().datasets_in_use())
            except tlcore.TLError as exc:
                st.error(access.message(exc))
                return
            datasets.forget_stored()
            _usage_of.clear()
            _datasets_in.clear()
            st.session_state["dataset_deleted"] = f"Deleted {labels[chosen]}: {tlcore.format_size(freed)} freed."
            st.rerun()


def _render_uploads() -> None:
    """The uploaded model and weights files; their uploader (or an admin) may delete them, confirmed first."""
    st.subheader("Uploaded models and weights")
    if done := st.session_state.pop("upload_deleted", None):
        st.success(access.message(done))
    table = tlcore.list_uploads()  # one folder listing: not cached, so a new upload shows at once
    if table.empty:
        st.caption("No uploaded models or weights: files given on Predict or in the sidebar are kept here.")
        return
    st.dataframe(
        table.assign(size=table["bytes"].map(tlcore.format_size), name=table["name"].map(access.shown),
                     owner=table["owner"].map(access.owner_label))[
            ["name", "kind", "size", "created", "owner", "id"]],
        hide_index=True, width="stretch",
        column_config={"created": st.column_config.DatetimeColumn("uploaded", format="YYYY-MM-DD HH:mm"),
                       "owner": st.column_config.TextColumn("uploaded by"),
                       "size": st.column_config.TextColumn("size on disk")},
    )
    if access.read_only():  # a public demo deletes nothing
        return
    deletable = table[[access.may_manage(owner) for owner in table["owner"]]]
    if deletable.empty:
        st.caption("Only who uploaded a file, or an admin (TL_ADMINS), can delete it.")
        return
    labels = {row.id: f"{row.name} · {row.kind} · {tlcore.format_size(row.bytes)} · {row.id[:8]}"
              for row in deletable.itertuples()}
    with st.expander("Delete an upload to make room"):
        chosen = st.selectbox("Upload", list(labels), format_func=lambda key: access.shown(labels[key]),
                              key="upload_to_delete")
        st.caption("Runs trained from it keep their records and models; using it again needs a new upload.")
        confirmed = st.checkbox("Yes, delete this uploaded file", key=f"confirm-upload-{chosen}")
        if st.button("Delete upload", type="primary", disabled=not confirmed, key="delete_upload"):
            queue = training.job_queue()
            in_use = [weights for job in list(queue.jobs.values()) if not job.finished
                      for weights in (job.spec.weights, job.spec.base_model)]
            try:
                freed = tlcore.delete_upload(chosen, in_use=in_use)
            except tlcore.TLError as exc:
                st.error(access.message(exc))
                return
            _usage_of.clear()
            sidebar.forget_weights_upload(chosen)  # this session's upload box would store it again at once
            st.session_state["upload_deleted"] = f"Deleted {labels[chosen]}: {tlcore.format_size(freed)} freed."
            st.rerun()
