"""Train's head sweep: Ray Tune trials over head settings on the frozen features, and "keep the best"."""

from __future__ import annotations

import dataclasses
import math

import altair as alt
import pandas as pd
import streamlit as st

import tlcore
from ui import access, models, sidebar, training
from ui.clicks import click_request, handled, render_request
from ui.code_panel import code_panel
from ui.transfer_curve import SWEEP_TASK, linked_task, task_board

URL_KEY = "sweep"
AXES = ["hidden_units", "dropout", "log10_learning_rate", "epochs", "score"]


def parallel_coordinates(table: pd.DataFrame) -> alt.Chart:
    """One line per trial across its settings and score, each axis scaled to its own range."""
    frame = table.assign(log10_learning_rate=lambda t: t["learning_rate"].map(math.log10))
    long = frame.melt(id_vars=["number", "optimizer", "state"], value_vars=AXES, var_name="axis", value_name="value")
    spread = long.groupby("axis")["value"].agg(["min", "max"])
    long = long.join(spread, on="axis")
    long["scaled"] = (long["value"] - long["min"]) / (long["max"] - long["min"]).where(lambda d: d > 0, 1)
    return alt.Chart(long).mark_line(point=True, opacity=0.7).encode(
        x=alt.X("axis:N", sort=AXES, title=None),
        y=alt.Y("scaled:Q", title="low → high (per axis)", axis=alt.Axis(labels=False)),
        color=alt.Color("optimizer:N"), detail="number:N",
        tooltip=["number", "axis", alt.Tooltip("value:Q", format=".4g"), "state"],
    ).properties(height=260)


def _table(trials: list[tlcore.SweepTrial]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(trial) for trial in trials])


@st.fragment(run_every=1.0)
def _progress(task: tlcore.Task, budget: tlcore.SweepBudget) -> None:
    if task.state != "running":
        st.rerun()
    trials = task.progress or []
    finished = sum(trial.state in ("done", "stopped by ASHA") for trial in trials)
    st.progress(finished / budget.trials if trials else 0.0,
                text=(f"{finished} of {budget.trials} trials finished · {task.elapsed:.0f} s" if trials else
                      f"Computing the frozen base's features once · {task.elapsed:.0f} s"))
    if trials:
        st.dataframe(_table(trials), hide_index=True, width="stretch")


def _keep_best(result: tlcore.SweepResult, dataset: tlcore.ImageDataset, request: str) -> None:
    spec, config = result.best_run()
    try:
        job = training.job_queue().submit(spec, dataset, config, training.run_store(), owner=access.user(),
                                          name=f"best of sweep {result.key[:6]}", role=tlcore.SWEEP_BEST,
                                          request=request)
    except tlcore.TLError as exc:
        st.error(access.message(exc))
        return
    st.session_state["job_id"], st.session_state["scratch_job_id"] = job.id, None


def section(spec: tlcore.TransferSpec, dataset: tlcore.ImageDataset, config: tlcore.TrainConfig) -> None:
    """Sweep the head of ``spec`` on ``dataset`` (Ray Tune, ASHA), follow it, and keep the best as a run."""
    st.subheader("Sweep the head")
    st.caption("Tries head settings (hidden units, dropout, learning rate, optimizer; up to the epochs set here, "
               "with early stopping) on the frozen base's features, computed once and shared by every trial, as "
               "Ray Tune trials in parallel under ASHA, which stops trials that lag. The current head is trial 0.")
    try:
        tlcore.check_sweep_spec(spec, config)
    except tlcore.TLError as exc:
        st.info(access.message(exc))
        return
    cols = st.columns(3)
    trials = cols[0].number_input("Trials", 2, 64, 12, key="sweep_trials")
    concurrency = cols[1].number_input("At once", 1, 8, 2, key="sweep_concurrency")
    patience = cols[2].number_input("Early stopping patience", 1, 20, 3, key="sweep_patience")
    budget = tlcore.SweepBudget(trials=int(trials), concurrency=int(concurrency), max_epochs=config.epochs,
                                patience=min(int(patience), config.epochs))
    task, stored = linked_task(URL_KEY, SWEEP_TASK, tlcore.stored_sweep, "head sweep")
    if st.button("Sweep", icon=":material/tune:", key="sweep-start"):
        sidebar.load_or_explain(models.ensure_spec_weights, spec)
        try:
            budget.check()
            task = task_board().start(SWEEP_TASK, tlcore.head_sweep, dict(
                spec=spec, dataset=dataset, config=config, budget=budget, use_ray=True),
                progress="on_trial", owner=access.user(), request=click_request("sweep"))
        except tlcore.TLError as exc:
            st.error(access.message(exc))
            return
        st.session_state[URL_KEY] = task.id
        st.query_params[URL_KEY] = task.id
        handled("sweep")
    if task is not None and task.state == "running":
        _progress(task, budget)
        return
    if task is not None and task.state == "failed":
        st.error(f"**The sweep did not finish.** {access.message(task.error)}")
        return
    result = task.result if task is not None else stored
    if result is None:
        return
    st.query_params[URL_KEY] = result.key
    best, default = result.best, result.default
    st.success(f"Best: trial {best.number} ({best.hidden_units} hidden units, dropout {best.dropout:g}, "
               f"{best.optimizer} at {best.learning_rate:.2g}) at {best.score:.1%} validation accuracy; "
               f"the current head (trial 0) {default.score:.1%}.")
    st.altair_chart(parallel_coordinates(result.table()), width="stretch")
    st.dataframe(result.table(), hide_index=True, width="stretch")
    elsewhere = not result.measured_on(dataset)  # a link to a sweep on images this page has not chosen
    if elsewhere:
        st.warning(f"This sweep was measured on {access.plain(result.dataset.get('name', 'other images'))}; Train now "
                   f"uses {access.plain(dataset.name)}. Choose those images on Train to keep its best head, or sweep again.")
    st.button("Keep the best: train it as a run", icon=":material/check_circle:", key="sweep-keep",
              on_click=_keep_best, args=(result, dataset, render_request()), disabled=elsewhere)
    code_panel("Keras code of the best head", tlcore.transfer_program(*result.best_run()), "best_head")

