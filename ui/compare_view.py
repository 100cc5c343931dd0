"""Drawing a model beside the same model trained from scratch: both curves, and the gap, fairly."""

from __future__ import annotations

import streamlit as st

import tlcore
from ui import charts


def _fair_metrics(comparison: tlcore.ScratchComparison) -> None:
    """Both final accuracies and the gap: the two runs trained every epoch they planned."""
    cells = st.columns(3)
    cells[0].metric("Transfer", f"{comparison.transfer_accuracy:.1%}",
                    help=f"Accuracy on the held-out (validation) images; trained in {comparison.transfer_seconds:.1f} s")
    cells[1].metric("From scratch", f"{comparison.scratch_accuracy:.1%}",
                    help=f"Accuracy on the held-out (validation) images; trained in {comparison.scratch_seconds:.1f} s")
    cells[2].metric("Gap", f"{comparison.gap * 100:+.1f} points", help="Transfer's accuracy minus scratch's")


def _metrics_at_common_epoch(fairness: tlcore.Fairness) -> None:
    """Both accuracies at the last epoch both runs reached, labelled as such."""
    at = f"at epoch {fairness.common_epoch}"
    cells = st.columns(3)
    cells[0].metric(f"Transfer {at}", f"{fairness.transfer_at:.1%}",
                    help=f"Validation accuracy after epoch {fairness.common_epoch}, the last epoch both runs reached")
    cells[1].metric(f"From scratch {at}", f"{fairness.scratch_at:.1%}",
                    help=f"Validation accuracy after epoch {fairness.common_epoch}, the last epoch both runs reached")
    cells[2].metric(f"Gap {at}", f"{fairness.gap_at_common_epoch * 100:+.1f} points",
                    help="Transfer's accuracy minus scratch's, after the same number of epochs")


def render_scratch_comparison(comparison: tlcore.ScratchComparison) -> None:
    """The two runs' curves overlaid, then their accuracies and the gap: the final ones when both
    trained every planned epoch, else a plain warning and the last epoch both reached."""
    curves = comparison.curves()
    if comparison.training:
        st.markdown("**Transfer against scratch**: the same model, once reusing what it reuses and once "
                    "from random weights with every layer training, on the same images and split.")
        if len(curves):
            st.altair_chart(charts.transfer_against_scratch(curves), width="content")
        st.caption("The numbers appear when both runs have finished.")
        return
    fairness = comparison.fairness
    if fairness.comparable:
        st.markdown("**Transfer against scratch**: the same model, once reusing what it reuses and once "
                    "from random weights with every layer training, on the same images, split and "
                    f"number of epochs ({fairness.planned_epochs}).")
    else:
        st.markdown("**Transfer against scratch**: the same model, once reusing what it reuses and once "
                    "from random weights with every layer training, on the same images and split, "
                    "**but not for the same number of epochs**.")
        st.warning(fairness.words(), icon=":material/balance:")
    if len(curves):
        st.altair_chart(charts.transfer_against_scratch(curves), width="content")
    if fairness.comparable:
        _fair_metrics(comparison)
        st.caption(comparison.summary())
    elif fairness.gap_at_common_epoch is not None:
        _metrics_at_common_epoch(fairness)
