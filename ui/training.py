"""The server's shared training queue and run store, and cached datasets."""

from __future__ import annotations

import hashlib

import streamlit as st

import tlcore
from ui.samples import IMAGE_TYPES


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


SAMPLE, ZIP, GROUPS, FOLDER = "Built-in sample (shapes)", "Zip of class folders", "Images per class", "Folder on the server"


def dataset_picker() -> tlcore.ImageDataset:
    """Widgets to choose a dataset; explains and stops the page until one is usable."""
    source = st.radio("Dataset", [SAMPLE, ZIP, GROUPS, FOLDER], horizontal=True, key="dataset_source")
    try:
        if source == SAMPLE:
            return sample_dataset()
        if source == ZIP:
            upload = st.file_uploader("A .zip with one folder per class (cats/1.jpg, dogs/2.png, ...)",
                                      type=["zip"])
            if upload is None:
                st.stop()
            return dataset_from_archive(upload.getvalue())
        if source == GROUPS:
            text = st.text_input("Class names, separated by commas", "class a, class b")
            names = [name.strip() for name in text.split(",") if name.strip()]
            groups = {name: st.file_uploader(f"Images of {name}", type=IMAGE_TYPES, accept_multiple_files=True,
                                             key=f"group-{name}") for name in names}
            if len(groups) < 2 or not all(groups.values()):
                st.info("Name at least two classes and upload at least two images for each.")
                st.stop()
            return dataset_from_groups({n: [f.getvalue() for f in files] for n, files in groups.items()})
        folder = st.text_input("Folder path on the server (one subfolder per class)")
        if not folder:
            st.stop()
        return dataset_from_folder(folder)
    except tlcore.DatasetError as exc:
        st.error(f"**That dataset cannot be used.** {exc}")
        st.stop()
