"""Runs: every training run, compared, reopened, shared, downloaded, deleted."""

import streamlit as st

import tlcore
from ui import access, charts, run_view, training
from ui.bundles import render_bundles, render_import
from ui.run_view import render_run
from ui.share import copy_link
from ui.state import gone_notice, link_notice
from ui.storage import render_data_usage

st.title("Runs")
copy_link("runs", "this page, with the run opened here")
store = training.run_store()
runs = store.list(live=training.job_queue().live_runs())  # a run whose server stopped shows "interrupted"
if runs.empty:
    st.info("No runs yet: train a model on the Train page.")
    st.page_link("../pages/train.py", label="Go to Train", icon=":material/model_training:")
    render_import(store)  # or bring runs from another server
    st.subheader("Stored datasets")  # room can be made before any run exists
    render_data_usage()
    st.stop()

runs["started by"] = runs["owner"].map(access.owner_label)
st.dataframe(
    run_view.runs_table(runs)[["created", "name", "role", "status", "accuracy", "epochs", "seconds", "backbone",
                               "input_size", "trainable_from", *(["started by"] if access.enabled() else [])]],
    hide_index=True, width="stretch", column_config=run_view.RUN_COLUMNS,
)

labels = tlcore.run_titles(runs, access.owner_label)  # what, its part, when, who: one title everywhere
st.subheader("Compare")
chosen = st.multiselect("Runs to overlay", list(labels), default=tlcore.default_comparison(runs),
                        format_func=labels.get, help=run_view.OVERLAY_HELP)
if chosen:
    histories = {labels[i]: store.get(i).history for i in chosen}
    metric = st.radio("Curve", list(charts.CURVE_NAMES), horizontal=True, format_func=charts.CURVE_NAMES.get,
                      help=run_view.CURVE_HELP)
    st.altair_chart(charts.compared_curves(histories, metric), width="stretch")
    for comparison in training.scratch_pairs(store, chosen):
        st.markdown(f"**{access.plain(comparison.transfer.title(access.owner_label))}** against the same model "
                    f"from scratch: {comparison.summary()}")

st.subheader("Open a run")
linked = st.query_params.get("run")
options = list(labels)
newest = tlcore.default_run(runs)  # the newest run; a new pair opens on its transfer run
if linked is not None and linked not in options:
    if linked == st.session_state.get("opened_run"):  # the run open here, deleted since (this page wrote the link)
        gone_notice("The run")
    else:
        link_notice("run", linked, "the id of a run on this server", newest)
opened = st.selectbox("Run", options, index=options.index(linked if linked in options else newest),
                      format_func=labels.get, key="opened_run",
                      help="The newest run is opened first. Its curves, results and downloads show below.")
st.query_params["run"] = opened
st.caption("This page's address opens this run directly: copy it to share.")
record = store.get(opened)
job = training.job_queue().for_run(opened)
if job is not None and not job.finished and not access.read_only() and access.may_manage(record):
    if st.button("Stop this run", icon=":material/stop:", key=f"stop-{opened}"):
        job.stop()  # at the next batch; what was learned is kept
render_run(record, store)
render_bundles(record, store)
if access.read_only():  # a public demo: nothing is stopped or deleted
    st.caption("This is a read-only demo: runs cannot be stopped or deleted here.")
elif not access.may_manage(record):
    st.caption(f"Only who started this run ({access.plain(access.owner_label(record.owner))}) or an admin "
               "(TL_ADMINS) can stop or delete it.")
else:
    with st.expander("Delete this run"):
        if st.checkbox("Yes, delete it and its model", key=f"confirm-{opened}") and st.button("Delete", type="primary"):
            training.job_queue().delete_run(opened, store)  # a job still training for it is ended first
            st.query_params.pop("run", None)
            st.rerun()
st.subheader("Stored datasets")
render_data_usage()
