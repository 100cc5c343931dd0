"""Cached, never-mutated models and cached architecture descriptions.

Models that only predict are shared by every session through
``st.cache_resource``; switching pages does not reload them. Building and
training always work on fresh models, never on these.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import tlcore
from ui import access, training

if TYPE_CHECKING:  # only for annotations: the sidebar and Home must not load Keras (issue 18)
    import keras

log = logging.getLogger(__name__)
_LITE_WRITES: set[tlcore.LiteKey] = set()
"""LiteRT copies this process has started writing (each once)."""
_LITE_LOCK = threading.Lock()
_KERAS_HELD: set[tuple[str, str | None]] = set()
"""(backbone, weights) of the classifiers this process has loaded in Keras (for a heatmap, say): Keras answers
their top-5 from then on, and their LiteRT copies are let go (VGG16's holds 1.1 GB: its file mapped and
XNNPACK's packed weights, besides the Keras model's 0.55 GB)."""


@dataclasses.dataclass(frozen=True)
class WeightsChoice:
    """The sidebar's choice of backbone and weights.

    Attributes:
        backbone: a ``BACKBONES`` name.
        weights: "imagenet", None (random) or a weights-file path.
        label: what to call these weights on screen.
    """

    backbone: str
    weights: str | None
    label: str

    @property
    def is_random(self) -> bool:
        return self.weights is None


def ensure_imagenet_weights(
    backbone: str, include_top: bool = True, input_shape: tuple[int, int, int] | None = None
) -> None:
    """Download ImageNet weights with a progress bar if they are not cached yet.

    Args:
        backbone: a ``BACKBONES`` name.
        include_top: the full network's file, or the one without the top.
        input_shape: the input the network is built for: Keras picks the file
            by size where it has several (MobileNetV2: 96 to 224).

    Raises:
        tlcore.WeightsError: offline and not cached (the message says what to do).
    """
    if tlcore.weights_status(backbone, include_top=include_top, input_shape=input_shape).cached:
        return
    text = f"Downloading {backbone} ImageNet weights"
    bar = st.progress(0.0, text=text)

    def report(done: int, total: int | None) -> None:
        shown = f"{text}: {done / 1e6:.0f} MB" + (f" of {total / 1e6:.0f} MB" if total else "")
        bar.progress(min(done / total, 1.0) if total else 0.0, text=shown)

    try:
        tlcore.download_weights(backbone, include_top=include_top, input_shape=input_shape, progress=report)
    finally:
        bar.empty()


def ensure_spec_weights(spec: tlcore.TransferSpec) -> None:
    """Download the ImageNet weights file building ``spec`` reads, if it reads one (``tlcore.reads_imagenet_weights``).

    Raises:
        tlcore.WeightsError: offline and not cached (the message says what to do).
    """
    if tlcore.reads_imagenet_weights(spec):
        ensure_imagenet_weights(spec.backbone, include_top=False, input_shape=spec.input_shape)


@st.cache_resource(max_entries=3, show_spinner="Loading the network...")
def _classifier(backbone: str, weights: str | None) -> keras.Model:
    model = tlcore.load_backbone(backbone, weights=weights, seed=tlcore.UNTRAINED_SEED)  # random: the same each start
    _KERAS_HELD.add((backbone, weights))
    _lite.clear()  # Keras answers now: the copies' memory goes (a network not loaded in Keras opens its own again)
    key = _lite_key(backbone, weights)
    if key is not None and key.path.is_file():
        return model  # the page's first answer came from the copy: the pass is traced when a top-5 asks for it
    tlcore.compiled_forward(model)  # trace and warm once, so timings shown are steady
    _write_lite_copy_soon(key, backbone, weights)
    return model


def _lite_key(backbone: str, weights: str | None) -> tlcore.LiteKey | None:
    """The key of the sidebar network's LiteRT copy; None where Keras must answer (``TL_LITE_ANSWERS=0``,
    ``TL_PRECISION=bfloat16``) or its weights file is not here."""
    settings = tlcore.load_settings()
    if not settings.lite_answers or settings.precision == "bfloat16":
        return None
    return tlcore.lite_key(backbone, weights, seed=tlcore.UNTRAINED_SEED)


def _write_lite_copy_soon(key: tlcore.LiteKey | None, backbone: str, weights: str | None) -> None:
    """Once per process and key, write the LiteRT copy the next server start answers with, in a process of its
    own at a lower priority (``transfer-lab lite-copy --background``): TensorFlow's converter (MobileNetV2
    about 3 s, VGG16 about 25 s on 2 cores, and 2 GB for VGG16) run in a thread here held the server's
    GIL and delayed the first launch's answer by 2 to 3 s."""
    if key is None or key.path.is_file():
        return
    with _LITE_LOCK:
        if key in _LITE_WRITES:
            return
        _LITE_WRITES.add(key)
    command = [sys.executable, "-m", "tlcore_cli", "lite-copy", "--background", "--backbone", backbone,
               "--weights", "random" if weights is None else str(weights)]
    threading.Thread(target=_write_lite_copy, args=(command, key), name="lite-copy", daemon=True).start()


def _write_lite_copy(command: list[str], key: tlcore.LiteKey) -> None:
    """Run ``command`` and say in the server's log when it did not write the copy (Keras keeps answering)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=3600,
                              start_new_session=True)  # a server stopped meanwhile does not stop it half-way
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s's LiteRT copy was not written: %s", key.backbone, exc)
        return
    if done.returncode != 0:
        log.warning("%s's LiteRT copy was not written: %s", key.backbone, done.stderr.strip()[-500:])


@st.cache_resource(max_entries=3, show_spinner=False)
def _lite(key: tlcore.LiteKey) -> tlcore.LiteClassifier | None:
    return tlcore.open_lite(key)


def lite_classifier(choice: WeightsChoice) -> tlcore.LiteClassifier | None:
    """The sidebar network's LiteRT copy, when an earlier Keras load wrote one and this process has not loaded
    the network in Keras yet: its top-5 needs no TensorFlow (``tlcore.open_lite``). None: Keras answers."""
    if (choice.backbone, choice.weights) in _KERAS_HELD:
        return None
    key = _lite_key(choice.backbone, choice.weights)
    return None if key is None else _lite(key)


@st.cache_resource(max_entries=3, show_spinner="Loading the network...")
def _extractor(backbone: str, weights: str | None, layer: str | None) -> keras.Model:
    model = tlcore.feature_extractor(backbone, weights=weights, layer=layer, seed=tlcore.UNTRAINED_SEED)
    tlcore.compiled_forward(model)
    return model


def classifier(choice: WeightsChoice) -> keras.Model:
    """The full pretrained network (with its ImageNet head), cached and shared."""
    if choice.weights == "imagenet":
        ensure_imagenet_weights(choice.backbone)
    return _classifier(choice.backbone, choice.weights)


def extractor(choice: WeightsChoice, layer: str | None) -> keras.Model:
    """The network cut at ``layer`` (default: its penultimate layer), cached and shared."""
    if choice.weights == "imagenet":
        ensure_imagenet_weights(choice.backbone)
    return _extractor(choice.backbone, choice.weights, layer)


@st.cache_data(max_entries=32, show_spinner="Reading the architecture...")
def layer_views(backbone: str, input_size: int, pooling: str | None) -> tlcore.LayerViews:
    """Layer tables of the full network and of the one without its top, and what changed (``tlcore.layer_views``)."""
    return tlcore.layer_views(backbone, input_size, pooling)


@st.cache_data(max_entries=32, show_spinner="Building the model...")
def transfer_plan(spec: tlcore.TransferSpec) -> tlcore.TransferPlan:
    return tlcore.plan_transfer_model(spec)


@st.cache_data(max_entries=16, show_spinner=False)
def layer_names(backbone: str) -> list[str]:
    """Names of the base's layers with weights: where training can start.

    The same in every build and process, so a choice in a URL or a run record
    stays valid (``tlcore.trainable_from_choices``).
    """
    return tlcore.trainable_from_choices(backbone)


@st.cache_data(max_entries=16, show_spinner=False)
def full_layer_names(backbone: str) -> list[str]:
    """Names of every layer of the full network after its input, for choosing a feature layer."""
    return tlcore.layer_names(backbone, include_top=True)


@st.cache_data(max_entries=16, show_spinner=False)
def weights_file_kind(backbone: str, path: str) -> str:
    """Whether a weights file of ``backbone`` is "full" or "no top" (read from metadata only).

    Raises:
        tlcore.WeightsError: a file of another architecture or size.
    """
    return tlcore.weights_file_kind(backbone, path)


def keep_upload(data: bytes, filename: str) -> Path | None:
    """Store an uploaded model or weights file as this visitor's, within the data folder's quota.

    Args:
        data: the file's bytes.
        filename: the name it was uploaded as (its ending decides how it is read).

    Returns:
        The stored file's path (``tlcore.store_model_upload``), or None after showing why it
        was refused (no room under TL_MAX_DATA_GB, an empty file, another ending).
    """
    try:
        return tlcore.store_model_upload(data, filename, owner=access.user())
    except tlcore.TLError as exc:
        st.error(f"**The file was not kept.** {access.message(exc)}")
        return None


def store_upload(data: bytes, folder: str, suffix: str) -> Path:
    """Keep an uploaded file (``keep_upload``, named "uploaded<suffix>"); a refusal stops the page.

    Args:
        data: the file's bytes.
        folder: unused: every upload is kept in ``<data_dir>/uploads`` (older versions: ``folder``).
        suffix: ".keras", ".weights.h5" or ".h5".
    """
    path = keep_upload(data, f"uploaded{suffix}")
    if path is None:
        st.stop()
    return path


@st.cache_resource(max_entries=2, show_spinner="Checking and loading the model file...")
def file_model(path: str) -> tlcore.UploadedModel:
    """An uploaded ``.keras`` model: checked here (allow-list and budgets, shapes only), loaded and run in a
    worker of its own (``tlcore.UploadedModel``), so a stranger's model cannot stall the server. Dropped from
    this cache, its worker ends."""
    return tlcore.UploadedModel(path)


def model_stamp(run_id: str) -> tuple[int, int] | None:
    """Which model file a run has now ((inode, modification time), None without one): what is cached of a run
    is kept per stamp, so a run deleted and imported again under its id (a bundle keeps run ids) is read anew."""
    try:
        stat = training.run_store().model_path(run_id).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def run_model(run_id: str) -> keras.Model:
    """A stored run's model (loaded in safe mode), cached and shared per model file (``model_stamp``)."""
    return _run_model(run_id, model_stamp(run_id))


@st.cache_resource(max_entries=4, show_spinner="Loading the trained model...")
def _run_model(run_id: str, stamp: tuple[int, int] | None) -> keras.Model:
    model = training.run_store().load_model(run_id)
    tlcore.compiled_forward(model)
    return model
