"""The develop-a-model demo on Home: one button, the stage and progress live, then the target's
two curves, the gap, and links to the three runs."""

from __future__ import annotations

import streamlit as st

import tlcore
from ui import access, training
from ui.compare_view import render_scratch_comparison
from ui.share import copy_link
from ui.state import link_notice

GROUP = "demo_group"
"""Session-state key: the run-store group of this session's demo (a rerun or a page switch finds it)."""
RECIPE = "demo_recipe"
"""Session-state key: a ``tlcore.DemoRecipe`` to run instead of ``tlcore.DEMO_RECIPE`` (tests use a tiny one)."""
ROLES = {"source": "Source: the sample shapes, whole base trained",
         "transfer": "Target, reusing the source's trained base",
         "scratch": "Target, from scratch"}


@st.cache_resource
def demo_registry() -> tlcore.DemoRegistry:
    """The server's demos by group, while it runs (their runs stay in the run store after)."""
    return tlcore.DemoRegistry()


def _start() -> None:
    if access.read_only():  # the button is disabled too; a read-only demo trains nothing
        return
    mine = demo_registry().get(st.session_state.get(GROUP))
    if mine is not None and not mine.snapshot().finished:  # a second click before the button went off
        return
    try:
        demo = demo_registry().start(training.job_queue(), training.run_store(), owner=access.user(),
                                     recipe=st.session_state.get(RECIPE, tlcore.DEMO_RECIPE))
    except tlcore.TLError as exc:
        st.session_state["demo_refused"] = access.message(exc)
        return
    st.session_state[GROUP] = demo.group
    st.session_state.pop("demo_refused", None)


@st.fragment(run_every=1.0)
def _live(demo: tlcore.DemoRun) -> None:
    snapshot = demo.snapshot()
    if snapshot.finished:
        st.rerun()
    st.info(snapshot.describe(), icon=":material/model_training:")
    current = snapshot.current()
    if current is not None:
        role, job = current
        progress = job.progress
        where = ("waiting in line" + (f", position {job.position}" if job.position else "")
                 if job.state == "queued" else progress.describe() if progress
                 else "starting a worker, preparing the images and the model")
        st.progress(progress.fraction if progress and job.state != "queued" else 0.0,
                    text=f"{ROLES[role]}: {where} · {job.elapsed:.0f} s")
    if access.may_manage(demo.owner):  # its starter or an admin, not whoever has the link
        if st.button("Stop the demo", icon=":material/stop:", key=f"stop-demo-{demo.group}",
                     help="Ends the training now; what was learned so far is kept and shown."):
            demo.stop()
    else:
        st.caption(f"Only who started this demo ({access.plain(access.owner_label(demo.owner))}) or an admin "
                   "(TL_ADMINS) can stop it.")


def _links(runs: dict[str, tlcore.RunRecord]) -> None:
    for role, record in runs.items():  # one a line: the labels are read whole, never cut
        st.page_link("../pages/runs.py", label=ROLES.get(role, role), icon=":material/history:",
                     query_params={"run": record.id},
                     help="Opens this run on Runs: its curves, its mistakes, and downloads.")


def _linked_group() -> str | None:
    """The demo a link names (``?demo=<group>``), if its runs are in the run store; a notice otherwise."""
    linked = st.query_params.get("demo")
    if linked is None:
        return None
    if any(record.role == "source" for record in training.run_store().group_runs(linked)):
        return linked
    link_notice("demo", linked, "the id of a develop-a-model demo run on this server", "no demo")
    del st.query_params["demo"]
    return None


def _button_reason(running: bool) -> str | None:
    """Why the demo's button is disabled, in words shown under it; None when it can be pressed."""
    if access.read_only():
        return ("The button is off because this server is a read-only demo: it trains nothing. "
                "Below is the latest demo that ran here.")
    if running:
        return "The button is off while this demo trains: its progress is below."
    return None


def render_demo() -> None:
    """The demo's button, then this session's demo (or the one the link names, or else the latest finished
    one on this server, so every visitor sees a result): live while it trains, its result after. The
    address names the demo shown, so it can be shared or reopened."""
    if st.session_state.get(GROUP) is None:  # a new session: the link may name a demo
        linked = _linked_group()
        if linked is not None:
            st.session_state[GROUP] = linked
    group = st.session_state.get(GROUP)
    demo = demo_registry().get(group)
    snapshot = demo.snapshot() if demo is not None else None
    running = snapshot is not None and not snapshot.finished
    reason = _button_reason(running)
    st.button("Run the develop-a-model demo", type="primary", icon=":material/play_arrow:", on_click=_start,
              disabled=reason is not None,
              help=reason or "Trains three small networks on this server, one after another (a few minutes), "
                             "and shows whether reusing what the first one learned helps the last.")
    if reason:
        st.caption(reason)
    if "demo_refused" in st.session_state:
        st.error(st.session_state["demo_refused"])
    store = training.run_store()
    title = "This demo"
    if not group:  # nothing of this visitor's: the latest finished demo here, for everyone to see
        group, title = tlcore.latest_demo_group(store), "The latest demo on this server"
        if group is None:
            if access.read_only():
                st.caption("No demo has run on this server yet.")
            return
    owner = demo.owner if demo is not None else next(
        (r.owner for r in store.group_runs(group) if r.role == "source"), "")
    st.markdown(f"**{title}**, started by {access.plain(access.owner_label(owner))}:")
    st.query_params["demo"] = group
    copy_link("demo", "this demo, live or finished")
    if running:
        _live(demo)
        return
    runs = {record.role: record for record in store.group_runs(group)}
    if snapshot is not None and snapshot.stage == "failed":
        st.error(access.message(snapshot.describe()))
    if "transfer" in runs:
        comparison = training.scratch_comparison(store, runs["transfer"].id)
        if comparison is not None:
            render_scratch_comparison(comparison)
    if "source" in runs and runs["source"].result is not None:
        st.caption(f"The source model reached {runs['source'].result.accuracy:.1%} validation accuracy on the "
                   "sample shapes before its base was reused.")
    if runs:
        _links(runs)
    elif snapshot is None:
        st.caption("This demo's runs are no longer in the run store.")
