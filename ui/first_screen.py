"""What a fresh visit starts on, and what to say, once and calmly, when ImageNet weights cannot be had.

A server without internet has no ImageNet weights unless someone put them in its Keras cache. A fresh
visit then starts on what works (``TL_DEFAULT_MODEL``, ``auto`` by default): ImageNet when its weights
are here or can be downloaded, else the newest trained run, else random weights for exploring shapes.
A link's own choice (``?predict_model=``, ``?weights=``) always wins; when it asks for ImageNet and the
weights cannot be had, the page says so in one calm notice and offers what works instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import streamlit as st

import tlcore
from ui import access, training
from ui.state import from_url

IMAGENET, RANDOM = "ImageNet", "Random (untrained)"
"""The sidebar's weights choices (``ui.sidebar`` draws them)."""
PREDICT_IMAGENET = "imagenet"
"""Predict's model id for the sidebar's network with its ImageNet head (``ui.classifiers.IMAGENET``)."""
WEIGHTS_DEFAULTED = "_weights_defaulted"
"""Session-state key: the sidebar's weights are the fresh visit's default, not a choice of the visitor or link."""
_log = logging.getLogger("transfer_lab.first_screen")
REACH_TTL = 300.0
"""Seconds a "cannot be downloaded" answer is believed before asking again."""


@st.cache_resource
def _unreachable() -> dict[str, float]:
    """Backbone -> when its ImageNet download last failed (shared by every session of this server)."""
    return {}


@st.cache_data(ttl=REACH_TTL, show_spinner=False)
def _reachable(backbone: str) -> bool:
    return tlcore.weights_reachable(backbone)


def remember_unreachable(backbone: str) -> None:
    """A download of ``backbone``'s weights just failed: fresh visits start elsewhere for a while."""
    _unreachable()[backbone] = time.monotonic()


def imagenet_available(backbone: str) -> bool:
    """Whether ``backbone``'s ImageNet classifier weights are on this server or can be downloaded now."""
    if tlcore.weights_status(backbone).cached:
        return True
    failed = _unreachable().get(backbone)
    if failed is not None and time.monotonic() - failed < REACH_TTL:
        return False
    return _reachable(backbone)


def newest_run() -> tlcore.RunRecord | None:
    """The newest finished (or stopped) run with a model to classify with, or None."""
    store = training.run_store()
    runs = store.with_models()["id"]
    return store.get(runs.iloc[0]) if len(runs) else None


def _setting() -> str:
    return (tlcore.load_settings().default_model or "auto").strip()


def default_weights(backbone: str) -> str:
    """The sidebar's weights for a fresh visit: ImageNet where it can be had, else random."""
    setting = _setting().lower()
    if setting == "random":
        return RANDOM
    if setting == "imagenet":
        return IMAGENET
    return IMAGENET if imagenet_available(backbone) else RANDOM


def seed_weights(backbone: str, offered: Sequence[str]) -> None:
    """Set the sidebar's weights for a fresh visit (``default_weights``), unless the session chose them or the link
    names one of ``offered`` (the sidebar takes that one); remember that they were not chosen, so Predict may start
    on a trained run instead. A link's value that is not offered counts as none: the same default, with the usual
    link notice naming it."""
    if "weights" in st.session_state or st.query_params.get("weights") in offered:
        return
    st.session_state[WEIGHTS_DEFAULTED] = True
    from_url("weights", default_weights(backbone), choices=list(offered))


def weights_chosen() -> None:
    """The visitor picked weights in the sidebar (the radio's ``on_change``): Predict follows that choice."""
    st.session_state[WEIGHTS_DEFAULTED] = False


def default_model(backbone: str, offered: list[str] | None = None) -> str:
    """Predict's model for a visit that has not chosen one, among the ids ``offered`` (``TL_DEFAULT_MODEL``).

    Weights chosen by the link or in the sidebar mean the sidebar's network (``PREDICT_IMAGENET``);
    only a fresh visit's default weights leave the choice to the setting.
    """
    if not st.session_state.get(WEIGHTS_DEFAULTED):
        return PREDICT_IMAGENET
    if offered is None:  # Predict's offer: the sidebar's network and every finished run
        offered = [PREDICT_IMAGENET, *training.run_store().with_models()["id"]]
    setting = _setting()
    if setting in offered and setting != PREDICT_IMAGENET:  # a run's id
        return setting
    if setting.lower() not in ("auto", "imagenet", "newest-run", "random"):
        _log.warning("TL_DEFAULT_MODEL must be auto, imagenet, newest-run, random or the id of a finished run "
                     "on this server. Received: %r; using the newest trained run", setting)
    if setting.lower() in ("imagenet", "random"):
        return PREDICT_IMAGENET
    if setting.lower() == "auto" and imagenet_available(backbone):
        return PREDICT_IMAGENET
    newest = newest_run()  # newest-run, a run id no longer here, or auto without ImageNet
    return newest.id if newest is not None and newest.id in offered else PREDICT_IMAGENET


def _use_run(run_id: str) -> None:
    st.session_state["predict_model"] = run_id


def _use_random() -> None:
    st.session_state["weights"] = RANDOM


def imagenet_missing(backbone: str, error: tlcore.WeightsError) -> None:
    """Say once, calmly, that ImageNet weights cannot be had here, and offer what works; stops the page.

    Visitors read no file names, folders or network errors; the server's operator (a browser on the
    server's machine, as ``TL_SHOW_SERVER_PATHS`` allows, or an admin) also sees which file to put where.
    """
    remember_unreachable(backbone)
    with st.container(border=True):
        st.markdown(f":material/cloud_off: **{backbone}'s ImageNet weights are not on this server, and it "
                    "cannot download them now.** Nothing is broken: what a network learned on ImageNet is just "
                    "not here. What works:")
        newest = newest_run()
        cells = st.columns(3)
        if newest is not None:
            if cells[0].button("Classify with the newest trained run", icon=":material/model_training:",
                               on_click=_use_run, args=(newest.id,), key="offline-newest", type="primary",
                               help=f"{access.plain(newest.name or newest.id)}: a network trained on this "
                                    f"server ({', '.join(access.plain(n) for n in newest.class_names[:6])})."):
                st.switch_page("../pages/predict.py")  # from another page (on Predict the choice is made already)
        else:
            cells[0].caption("No trained run yet: the demo trains some in a few minutes.")
        cells[1].page_link("../pages/home.py", label="Run the develop-a-model demo", icon=":material/play_arrow:",
                           help="Home's demo trains small networks offline and shows what reusing one gives.")
        cells[2].button("Explore with random weights", icon=":material/shuffle:", on_click=_use_random,
                        key="offline-random",
                        help="The same network, untrained: its shapes, layers and timings are real, its "
                             "answers are not predictions.")
        if access.is_local() or access.is_admin():
            with st.expander("For the server's operator: where the weights go"):
                st.markdown(access.message(error))
    st.stop()
