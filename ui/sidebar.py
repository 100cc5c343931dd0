"""The sidebar on every page: backbone, weights, and the weights' status."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import tlcore
from ui import access, first_screen
from ui.models import WeightsChoice, keep_upload, weights_file_kind
from ui.precision import render_precision
from ui.state import from_url, to_url

IMAGENET, RANDOM, FILE = first_screen.IMAGENET, first_screen.RANDOM, "My weights file"


def render(page: str = "") -> None:
    """Draw the backbone and weights pickers; called by app.py before each page (``page``: its url path)."""
    sources = [IMAGENET, RANDOM] if access.read_only() else [IMAGENET, RANDOM, FILE]  # read-only: no uploads
    if st.session_state.get("weights") not in (None, *sources):
        del st.session_state["weights"]
    from_url("backbone", "VGG16", choices=list(tlcore.BACKBONES))
    first_screen.seed_weights(st.session_state["backbone"], sources)  # no usable value in the link: what works here
    from_url("weights", IMAGENET, choices=sources)  # a link's value among the sources
    with st.sidebar:
        st.selectbox("Backbone", list(tlcore.BACKBONES), key="backbone",
                     help="The network every page starts from: eight well-known image networks, from the small "
                          "MobileNetV2 (fast) to the large VGG16 (the classic).")
        st.radio("Weights", sources, key="weights", on_change=first_screen.weights_chosen,
                 help="What the network knows. ImageNet: what it learned from 1.2 million labelled photos. "
                      "Random: the same network knowing nothing, to explore its shapes and layers. "
                      "My weights file: weights saved from Keras (.weights.h5 or .h5).")
        to_url("backbone", "weights")
        backbone = st.session_state["backbone"]
        if st.session_state["weights"] == IMAGENET:
            _imagenet_status(backbone)
        elif st.session_state["weights"] == FILE:
            _weights_upload(backbone)
        elif not _predict_uses_its_own_model(page):
            st.caption("Untrained weights: where a page uses them, its answers are not predictions.")
        render_precision(backbone)
        access.name_box()


def _predict_uses_its_own_model(page: str) -> bool:
    """Whether the page is Predict classifying with a trained run or an uploaded model (not the sidebar's)."""
    if page != "predict":
        return False
    chosen = (st.session_state.get("predict_model") or st.query_params.get("predict_model")
              or first_screen.default_model(st.session_state["backbone"]))  # what Predict is about to start on
    return chosen != first_screen.PREDICT_IMAGENET


def _base_input_shape(backbone: str) -> tuple[int, int, int] | None:
    """The input the Build and Train pages build ``backbone``'s base at (None: its default).

    Keras picks the no-top ImageNet file by input size where it has several
    (MobileNetV2: 96, 128, 160, 192, 224), so the status names that size's file.
    The Build page's size widgets come first (the sidebar draws before the page,
    and they already hold a new choice), then the model the Train page uses.
    """
    state = st.session_state
    if state.get("preset") is not None and state.get("base_run", "pretrained") == "pretrained":
        try:
            size = int(state.get("custom_size") if state["preset"] == "custom" else state["preset"])
        except (TypeError, ValueError):
            return None
        return (size, size, 3)
    spec = state.get("transfer_spec")
    if spec is not None and spec.backbone == backbone and not spec.base_model:
        return tuple(spec.input_shape)
    return None


def _imagenet_status(backbone: str) -> None:
    """One line for visitors; the files and the folder only for the server's operator (TL_SHOW_SERVER_PATHS)."""
    operator = access.is_local() or access.is_admin()
    if not tlcore.weights_status(backbone).cached and not first_screen.imagenet_available(backbone):
        st.caption(":material/cloud_off: ImageNet weights: none here, and no download possible now. "
                   "Trained runs, the demo and random weights work.")
        if not operator:
            return
    shape = _base_input_shape(backbone)
    for include_top, what in ((True, "Classifier"), (False, "Base without top")):
        status = tlcore.weights_status(backbone, include_top=include_top,
                                       input_shape=None if include_top else shape)
        if not include_top and status.file != tlcore.weights_status(backbone, include_top=False).file:
            what += f" at {shape[0]}x{shape[1]}"  # a file of its own for this size
        if status.cached:
            st.caption(f":material/check_circle: {what}: ImageNet weights on this server.")
        elif not operator:
            st.caption(f":material/download: {what}: ImageNet weights downloaded on first use "
                       f"(about {status.file.approx_mb} MB, once for everyone).")
        else:  # the file and the folder: for someone on the server's own machine, or an admin
            where = f"`{status.path.parent}`" if access.is_local() else tlcore.KERAS_CACHE_WORDS
            other = f", or choose *{FILE}*" if not access.read_only() else ""
            st.caption(
                f":material/download: {what}: not on this machine; downloaded on first use "
                f"(about {status.file.approx_mb} MB). Offline, put `{status.file.file_name}` "
                f"in {where}{other}."
            )


WEIGHTS_BOX_ROUND = "weights_box_round"
"""Session-state key: bumped to give the weights upload box a new, empty widget (its file was deleted here)."""


def forget_weights_upload(upload_id: str) -> None:
    """After this session deleted the upload ``upload_id``: if it is the file in this session's upload box,
    empty the box, so the next run does not store the file again (and the room freed stays free)."""
    if Path(st.session_state.get("weights_path") or "").name == upload_id:
        st.session_state.pop("weights_path", None)
        st.session_state[WEIGHTS_BOX_ROUND] = st.session_state.get(WEIGHTS_BOX_ROUND, 0) + 1


def _weights_upload(backbone: str) -> None:
    upload = st.file_uploader(
        f"Weights for {backbone} (.weights.h5 or .h5), with or without the top", type=["h5"],
        key="weights_file" + (f"-{st.session_state[WEIGHTS_BOX_ROUND]}" if WEIGHTS_BOX_ROUND in st.session_state else ""),
        help="The full network's file works everywhere. A file without the top (like Keras's "
             "_notop files) works for Build, Train and Features at a convolutional layer; "
             "Predict needs the full network's file.")
    if upload is not None:
        stored = keep_upload(upload.getvalue(), upload.name)
        if stored is None:  # refused (shown): the pages use random weights, and say so
            st.session_state.pop("weights_path", None)
            return
        path = str(stored)
        st.session_state["weights_path"] = path
        try:
            kind = weights_file_kind(backbone, path)
        except tlcore.WeightsError as exc:
            st.warning(access.shown(exc))
            return
        if kind == "no top":
            st.caption(f"Using {access.plain(upload.name)}: {backbone} without its top. It works for Build, Train "
                       "and Features at a convolutional layer; Predict needs the full network's file.")
        else:
            st.caption(f"Using {access.plain(upload.name)}: the full {backbone}, with its ImageNet top.")


def choice() -> WeightsChoice:
    """The backbone and weights chosen in the sidebar."""
    backbone = st.session_state.get("backbone", "VGG16")
    source = st.session_state.get("weights", IMAGENET)
    if source == FILE and access.read_only():
        source = RANDOM
    if source == IMAGENET:
        return WeightsChoice(backbone, "imagenet", "ImageNet")
    if source == FILE and st.session_state.get("weights_path"):
        return WeightsChoice(backbone, st.session_state["weights_path"], "your weights file")
    return WeightsChoice(backbone, None, "random (untrained)")


def load_or_explain(loader, *args):
    """Call a model loader; on a TLError show it plainly and stop the page."""
    try:
        return loader(*args)
    except tlcore.NoTopWeightsError as exc:
        st.error(f"**This weights file has no top.** {access.shown(exc)}")
        st.info(f"Choose *{IMAGENET}* in the sidebar, or upload the full network's file.")
        st.stop()
    except tlcore.WeightsError as exc:
        wanted = args[0] if args else None  # a WeightsChoice, or a TransferSpec (Train)
        if getattr(wanted, "weights", None) == "imagenet" and not isinstance(exc, tlcore.NoTopWeightsError):
            first_screen.imagenet_missing(wanted.backbone, exc)  # offline, not cached: said calmly
        st.error(f"**These weights cannot be used.** {access.message(exc)}")
        st.info(f"To try this page without them, choose *{RANDOM}* in the sidebar.")
        st.stop()
    except tlcore.TLError as exc:
        st.error(access.shown(exc))
        st.stop()
