"""The server's shared training queue and run store (the dataset picker is in ui/datasets)."""

from __future__ import annotations

import streamlit as st

import tlcore


@st.cache_resource
def job_queue() -> tlcore.JobQueue:
    """One queue per server: ``max_training_jobs`` train at once, the rest wait."""
    settings = tlcore.load_settings()
    return tlcore.JobQueue(settings.max_training_jobs, settings.max_queued_jobs)


@st.cache_resource
def run_store() -> tlcore.RunStore:
    return tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
