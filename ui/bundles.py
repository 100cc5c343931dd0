"""The Runs page's "Move runs between servers" section: bundles out and in, and TensorBoard's command."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import streamlit as st

import tlcore
from ui import access
from ui.run_view import READ_ONLY_EXPORTS, _read_export


def _bundle_bytes(store: tlcore.RunStore, run_ids: list[str]) -> bytes:
    return _read_export(tlcore.export_bundle, store, run_ids)


def _download(record: tlcore.RunRecord, store: tlcore.RunStore) -> None:
    group = [r.id for r in store.group_runs(record.group)] if record.group else []
    choices = {"This run": [record.id]}
    if len(group) > 1:
        choices[f"This run and the {len(group) - 1} other run(s) of its group (a pair or a demo)"] = group
    if record.result is None or not record.model_path.is_file():
        st.caption("A run can be bundled once it has finished (the bundle carries its model).")
        return
    which = st.radio("Bundle", list(choices), horizontal=True, key=f"bundle-which-{record.id}") \
        if len(choices) > 1 else "This run"
    ids = choices[which]
    name = tlcore.bundle_file_name(ids)
    if access.read_only():
        st.button("Download bundle (.zip)", key=f"bundle-{record.id}", disabled=True, help=READ_ONLY_EXPORTS,
                  icon=":material/download:")
        return
    st.download_button("Download bundle (.zip)", functools.partial(_bundle_bytes, store, ids), name,
                       "application/zip", key=f"bundle-{record.id}-{which}", on_click="ignore",
                       icon=":material/download:",
                       help="Config, dataset digest, history, evaluation, model (no optimizer state) and model "
                            "card of each run: Import it on another Transfer Lab server, or with "
                            "`transfer-lab runs import`. Made on the first click, then kept.")


def render_import(store: tlcore.RunStore) -> None:
    """Import a bundle's runs (refused in words when it breaks a rule); the first one opens on this page."""
    if access.read_only():
        st.caption("Importing runs is off on this read-only demo (TL_READ_ONLY).")
        return
    upload = st.file_uploader("A run bundle (.zip) from another Transfer Lab server", type=["zip"],
                              key="bundle_upload")
    if upload is None or not st.button("Import the bundle's runs", icon=":material/upload:"):
        return
    earlier = st.session_state.get("bundle_imported_from")
    if earlier and earlier[0] == upload.file_id:  # a second click on this upload: it is in already
        imported = earlier[1]
    else:
        with tempfile.TemporaryDirectory(prefix=".bundle-upload-", dir=store.root) as folder:
            path = Path(folder) / "bundle.zip"
            path.write_bytes(upload.getvalue())
            try:
                with st.spinner("Checking the bundle and its models"):
                    imported = tlcore.import_run(path, store)
                    # kept before the next Streamlit call, where a second click's rerun interrupts this run
                    st.session_state["bundle_imported_from"] = (upload.file_id, imported)
            except tlcore.TLError as exc:
                st.error(access.message(exc))
                return
    st.session_state["bundle_imported"] = imported
    st.query_params["run"] = imported[0]
    st.rerun()


def render_bundles(record: tlcore.RunRecord, store: tlcore.RunStore) -> None:
    """Download the opened run (or its group) as a bundle, import a bundle, and open the logs in TensorBoard."""
    with st.expander("Move runs between servers, and TensorBoard", icon=":material/move_up:"):
        _download(record, store)
        imported = st.session_state.get("bundle_imported")
        if imported:
            st.success(f"Imported {len(imported)} run(s) with their names, owners and histories: "
                       f"{', '.join(imported)}.")
            if st.button("Classify with the imported model", key="predict-imported"):
                st.session_state["predict_model"] = imported[0]
                st.switch_page("../pages/predict.py")
        render_import(store)
        st.markdown("Every run writes TensorBoard logs as it trains (curves, learning rate, graph, confusion "
                    "matrix, and the validation images in the embedding projector). On the server, open them with:")
        st.code(f"tensorboard --logdir {access.shown(store.root)} --host 127.0.0.1", language="bash")
