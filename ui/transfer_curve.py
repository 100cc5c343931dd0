"""Build's "where to cut" section: the transfer curve of the chosen base on the chosen images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

import tlcore
from ui import access, datasets, models, sidebar
from ui.clicks import click_request, handled
from ui.code_panel import code_panel
from ui.state import link_notice

URL_KEY = "curve"
FROZEN, FROM_LAYER = "All frozen", "Train from a layer"  # Build's "Which layers train" choices
CURVE_TASK, SWEEP_TASK = "transfer curve", "head sweep"
"""The kinds of task on the board: curves and sweeps share it and its ids, so a link's id counts with its kind only."""


@st.cache_resource
def task_board() -> tlcore.TaskBoard:
    """The server's curves and sweeps, running or just finished (kept when pages change or tabs close)."""
    return tlcore.TaskBoard()


def linked_task(key: str, kind: str, stored: Callable[[str], Any], what: str) -> tuple[tlcore.Task | None, Any]:
    """The task of ``kind`` this session started or the link's ``?key=`` names, else the result kept under the
    link's key (``stored``, which finds nothing for a value that is not a key), as ``(task, kept)``.

    A link's value that names neither (not a key; a key or id this server does not have, or no longer has; the
    id of a task of the other kind) gets the usual link notice and leaves the address: the page opens as it
    does without it.
    """
    own, linked = st.session_state.get(key), st.query_params.get(key)
    named = (task_board().get(own), task_board().get(linked))
    task = next((found for found in named if found is not None and found.kind == kind), None)
    kept = stored(linked) if task is None and linked else None
    if linked and task is None and kept is None:
        if linked != own:  # this session's own task, gone from the board since: nothing the link said wrong
            link_notice(key, linked, f"the key of a {what} kept on this server (32 hexadecimal characters, 0-9 "
                        f"and a-f), or the id of a {what} running or just finished here (12 of those characters)",
                        f"no {what}")
        del st.query_params[key]
    return task, kept


def curve_chart(curve: tlcore.TransferCurve) -> alt.Chart:
    """Validation accuracy against depth, one point per tap, with chance as a dashed rule."""
    table = curve.table()
    line = alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("depth:O", title="depth (block end)", axis=alt.Axis(labelExpr="datum.value")),
        y=alt.Y("accuracy:Q", title="probe's validation accuracy", scale=alt.Scale(domain=[0, 1])),
        tooltip=["tap", "features", alt.Tooltip("accuracy:Q", format=".1%"),
                 alt.Tooltip("train_accuracy:Q", format=".1%", title="training accuracy")],
    )
    chance = alt.Chart(pd.DataFrame({"chance": [curve.chance]})).mark_rule(strokeDash=[4, 4], color="grey").encode(
        y="chance:Q", tooltip=[alt.Tooltip("chance:Q", format=".1%")])
    return (line + chance).properties(height=260)


def _open_cut(train_from: str | None) -> None:
    """Button callback (runs before Build's widgets exist): set Build's freezing to the recommended cut."""
    st.session_state["training"] = FROM_LAYER if train_from else FROZEN
    if train_from:
        st.session_state["trainable_from"] = train_from
        st.query_params["trainable_from"] = train_from
    st.query_params["training"] = st.session_state["training"]


def _show(curve: tlcore.TransferCurve, spec: tlcore.TransferSpec) -> None:
    st.altair_chart(curve_chart(curve), width="stretch")
    words = curve.recommendation()
    (st.success if curve.clear else st.warning)(words[0].upper() + words[1:] + ".")
    st.caption(f"{curve.backbone} at {curve.input_size}x{curve.input_size} on {access.plain(curve.dataset)} "
               f"({curve.images:,} images): one pass over the images in {curve.extract_seconds:.0f} s, "
               f"{len(curve.points)} probes in {curve.probe_seconds:.0f} s. Dashed: chance "
               f"({curve.chance:.0%}, the largest class's share).")
    label = (f"Open Build with this cut: train from {curve.train_from}" if curve.train_from
             else "Open Build with the whole base frozen")
    other_base = curve.backbone != spec.backbone  # its layers' names are not this base's
    if other_base:
        st.warning(f"This curve was measured on {curve.backbone}; Build now starts from {spec.backbone}, whose "
                   f"layers differ. Choose {curve.backbone} in the sidebar to use its cut, or measure again.")
    st.button(label, icon=":material/content_cut:", on_click=_open_cut, args=(curve.train_from,),
              key="curve-open-cut", disabled=other_base)
    code_panel("Keras code of the probes", tlcore.probe_program(curve), "transfer_curve")


@st.fragment(run_every=1.0)
def _progress(task: tlcore.Task) -> None:
    if task.state != "running":
        st.rerun()
    stage = task.progress
    if stage and stage[0] == "extracting":
        text, fraction = f"One pass over the images: {stage[1]:,} of {stage[2]:,}", stage[1] / stage[2]
    elif stage:
        text, fraction = f"Linear probes in Ray tasks: {stage[1]} of {stage[2]} done", stage[1] / stage[2]
    else:
        text, fraction = "Loading the base and preparing the taps", 0.0
    st.progress(fraction, text=f"{text} · {task.elapsed:.0f} s")


def section(spec: tlcore.TransferSpec) -> None:
    """The transfer curve of ``spec``'s base: start one, follow it, read it, and open Build at its cut."""
    st.subheader("Where to cut: the transfer curve")
    st.caption("A linear probe (logistic regression on each block's globally averaged output) measures how well "
               "every depth of the base already separates your classes. Early blocks hold general features "
               "(edges, colours), late ones the source task's; the peak says where to start training.")
    if access.read_only():  # TL_READ_ONLY: a public demo measures nothing
        st.info("Measuring curves is off on this public demo.", icon=":material/lock:")
        return
    task, stored = linked_task(URL_KEY, CURVE_TASK, tlcore.stored_curve, "transfer curve")
    with st.expander("Images to measure on", expanded=task is None and stored is None):
        dataset = datasets.dataset_picker()
    if st.button("Measure the transfer curve", icon=":material/query_stats:", key="curve-start"):
        sidebar.load_or_explain(models.ensure_spec_weights, spec)
        try:
            task = task_board().start(CURVE_TASK, tlcore.transfer_curve, dict(
                backbone=spec.backbone, dataset=dataset, weights=spec.weights, input_size=spec.input_shape[0],
                base_model=spec.base_model, use_ray=True), progress="on_progress", owner=access.user(),
                request=click_request("curve"))
        except tlcore.TLError as exc:
            st.error(access.message(exc))
            return
        st.session_state[URL_KEY] = task.id
        st.query_params[URL_KEY] = task.id
        handled("curve")
    if task is not None and task.state == "running":
        _progress(task)
        return
    if task is not None and task.state == "failed":
        st.error(f"**The curve could not be measured.** {access.message(task.error)}")
        return
    curve = task.result if task is not None else stored
    if curve is not None:
        st.query_params[URL_KEY] = curve.key  # the link now opens the kept curve, on any server process
        _show(curve, spec)
