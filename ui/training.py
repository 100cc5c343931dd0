"""The server's shared training queue and run store, and cached datasets."""

from __future__ import annotations

import hashlib

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


@st.cache_resource(max_entries=4, show_spinner="Drawing the sample dataset...")
def sample_dataset() -> tlcore.ImageDataset:
    return tlcore.sample_dataset(per_class=64, size=64)


@st.cache_resource(max_entries=8, show_spinner="Checking and storing the images...")
def _dataset(digest: str, _source) -> tlcore.ImageDataset:
    return tlcore.load_dataset(_source)


def dataset_from_archive(data: bytes) -> tlcore.ImageDataset:
    """Each distinct archive is checked and stored once per server."""
    return _dataset(hashlib.sha256(data).hexdigest(), data)


def dataset_from_groups(groups: dict[str, list[bytes]]) -> tlcore.ImageDataset:
    digest = hashlib.sha256()
    for name, files in groups.items():
        digest.update(name.encode() + b"\0")
        for data in files:
            digest.update(hashlib.sha256(data).digest())
    return _dataset(digest.hexdigest(), groups)


def dataset_from_folder(path: str) -> tlcore.ImageDataset:
    return _dataset(f"folder:{path}", path)
