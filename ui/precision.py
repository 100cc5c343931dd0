"""The sidebar's line about inference precision, and a switch that forces float32 for this session."""

from __future__ import annotations

import streamlit as st

import tlcore

FORCE_FLOAT32 = "force_float32"
"""Session-state key of the switch."""


def render_precision(backbone: str) -> None:
    """Show the precision inference on ``backbone`` uses here; let the person force float32.

    Call it on every run before the page (the sidebar does): it sets the forced
    precision for the rest of this session's script run, and for no other session.
    """
    forced = st.toggle(
        "Force float32", key=FORCE_FLOAT32,
        help="Precision is how many digits each number keeps. Predict and Features may use a shorter "
             "kind (bfloat16) where this machine was measured faster with the same answers; turn this on "
             "for full precision (float32), exactly as plain Keras computes, in your session only.")
    tlcore.force_precision("float32" if forced else None)
    try:
        st.caption(f"Inference precision: {tlcore.describe_backbone(backbone)}")
    except tlcore.ConfigError as exc:  # a TL_PRECISION the server was started with that is not accepted
        st.warning(str(exc))
