"""Drawing a model beside the same model trained from scratch: both curves, and the gap."""

from __future__ import annotations

import streamlit as st

import tlcore
from ui import charts


def render_scratch_comparison(comparison: tlcore.ScratchComparison) -> None:
    """The two runs' curves overlaid, then their accuracies, the gap and the time each took."""
    st.markdown("**Transfer against scratch**: the same model, once reusing what it reuses and once "
                "from random weights with every layer training, on the same images, split and epochs.")
    curves = comparison.curves()
    if len(curves):
        st.altair_chart(charts.transfer_against_scratch(curves), width="content")
    if not comparison.finished:
        st.caption("The numbers appear when both runs have finished.")
        return
    cells = st.columns(3)
    cells[0].metric("Transfer", f"{comparison.transfer_accuracy:.1%}",
                    help=f"Validation accuracy; trained in {comparison.transfer_seconds:.1f} s")
    cells[1].metric("From scratch", f"{comparison.scratch_accuracy:.1%}",
                    help=f"Validation accuracy; trained in {comparison.scratch_seconds:.1f} s")
    cells[2].metric("Gap", f"{comparison.gap * 100:+.1f} points", help="Transfer's accuracy minus scratch's")
    st.caption(comparison.summary())
