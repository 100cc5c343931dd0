"""The server's shared training queue and run store (the dataset picker is in ui/datasets)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import tlcore
from ui.datasets import data_folder


@st.cache_resource
def job_queue() -> tlcore.JobQueue:
    """One queue per server: ``max_training_jobs`` train at once, the rest wait, at most
    ``max_jobs_per_person`` of them one person's."""
    settings = tlcore.load_settings()
    return tlcore.JobQueue(settings.max_training_jobs, settings.max_queued_jobs, settings.max_jobs_per_person)


def scratch_comparison(store: tlcore.RunStore, run_id: str) -> tlcore.ScratchComparison | None:
    """The pair a run belongs to, a run cut off by a server that stopped counted as such (not as training)."""
    return tlcore.scratch_comparison(store, run_id, live=job_queue().live_runs())


def show_capacity() -> None:
    """One line: where a job will train (this machine, or the cluster's machines) and why it would wait."""
    st.caption(str(tlcore.capacity(job_queue())))


def run_store() -> tlcore.RunStore:
    """The server's run store, in the data folder (TL_DATA_DIR): one per folder, shared by every session."""
    return _run_store(data_folder())


@st.cache_resource
def _run_store(data_dir: str) -> tlcore.RunStore:
    return tlcore.RunStore(Path(data_dir) / "runs")


def scratch_pairs(store: tlcore.RunStore, run_ids: list[str]) -> list[tlcore.ScratchComparison]:
    """The transfer-against-scratch pairs whose two runs are both among ``run_ids``, once each."""
    pairs = {}
    for run_id in run_ids:
        comparison = scratch_comparison(store, run_id)
        if comparison is not None and {comparison.transfer.id, comparison.scratch.id} <= set(run_ids):
            pairs[comparison.transfer.id] = comparison
    return list(pairs.values())
