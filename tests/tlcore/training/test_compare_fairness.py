"""A transfer run and its twin from scratch: said to compare only when both trained every planned epoch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

import tlcore

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(48, 48, 3), weights=None, trainable_from=None)
CONFIG = tlcore.TrainConfig(epochs=5)


def _history(accuracies: list[float]) -> pd.DataFrame:
    n = len(accuracies)
    return pd.DataFrame({"phase": ["train"] * n, "loss": [1.0] * n, "accuracy": [0.5] * n,
                         "val_loss": [1.0] * n, "val_accuracy": accuracies})


def _run(role: str, accuracies: list[float], *, status: str = "done", final: float | None = None,
         stopped: bool = False, config: tlcore.TrainConfig = CONFIG) -> tlcore.RunRecord:
    result = None
    if status in ("done", "stopped"):
        result = tlcore.RunResult(("a", "b"), final if final is not None else accuracies[-1], 0.5,
                                  ((1, 0), (0, 1)), (1.0, 1.0), (1.0, 1.0), stopped=stopped, seconds=3.0)
    return tlcore.RunRecord(f"20261204-211500-{role[:6]:0>6}", Path("/nonexistent"), SPEC, config,
                            {"name": "shapes", "classes": ["a", "b"]}, _history(accuracies), result, status,
                            group="g", role=role)


def test_two_runs_that_trained_every_epoch_compare_by_their_final_accuracies():
    pair = tlcore.ScratchComparison(_run("transfer", [0.5, 0.6, 0.7, 0.8, 0.9]),
                                    _run("scratch", [0.25, 0.3, 0.3, 0.35, 0.4]))
    fairness = pair.fairness
    assert fairness.comparable and fairness.notes == () and fairness.words() == ""
    assert (fairness.transfer_epochs, fairness.scratch_epochs, fairness.planned_epochs) == (5, 5, 5)
    assert pair.gap == pytest.approx(0.5)
    assert pair.summary().startswith("Transfer: 90.0% validation accuracy in 3.0 s. From scratch: 40.0%")


def test_a_twin_stopped_at_epoch_2_of_5_is_said_so_and_compared_at_epoch_2():
    pair = tlcore.ScratchComparison(_run("transfer", [0.30, 0.35, 0.38, 0.40, 0.423]),
                                    _run("scratch", [0.20, 0.25], status="stopped", stopped=True))
    fairness = pair.fairness
    assert not fairness.comparable
    assert fairness.notes == ("The run from scratch stopped early: Stop was pressed after epoch 2 of 5.",)
    assert fairness.common_epoch == 2
    assert (fairness.transfer_at, fairness.scratch_at) == (0.35, 0.25)
    assert fairness.gap_at_common_epoch == pytest.approx(0.10)
    summary = pair.summary()
    assert "not a fair comparison" in summary and "epoch 2, the last both reached" in summary
    assert "transfer 35.0%, from scratch 25.0%" in summary and "+10.0 points" in summary
    assert "42.3%" not in summary  # the final accuracy of a longer run is not set beside a shorter one


def test_a_twin_stopped_in_its_third_epoch_is_compared_at_the_second_it_completed():
    stopped = _run("scratch", [0.20, 0.25, 0.27], status="stopped", stopped=True)
    stopped.history["complete"] = [True, True, False]  # Stop pressed mid-epoch 3: its part of an epoch is recorded
    pair = tlcore.ScratchComparison(_run("transfer", [0.30, 0.35, 0.38, 0.40, 0.423]), stopped)
    fairness = pair.fairness
    assert fairness.notes == ("The run from scratch stopped early: Stop was pressed after epoch 2 of 5.",)
    assert fairness.common_epoch == 2 and (fairness.transfer_at, fairness.scratch_at) == (0.35, 0.25)


def test_early_stopping_is_named_with_its_patience():
    config = dataclasses.replace(CONFIG, early_stopping=2)
    pair = tlcore.ScratchComparison(_run("transfer", [0.5, 0.6, 0.6], config=config),
                                    _run("scratch", [0.2, 0.3, 0.3, 0.3, 0.3], config=config))
    assert pair.fairness.notes == ("The transfer run stopped early: early stopping ended it after epoch 3 of 5, "
                                   "when the validation loss had not improved for 2 epochs.",)
    assert pair.fairness.common_epoch == 3 and pair.fairness.scratch_at == 0.3


def test_a_failed_twin_with_no_epoch_is_plainly_not_comparable():
    pair = tlcore.ScratchComparison(_run("transfer", [0.5, 0.6, 0.7, 0.8, 0.9]),
                                    _run("scratch", [], status="failed"))
    fairness = pair.fairness
    assert not fairness.comparable and fairness.common_epoch is None and fairness.gap_at_common_epoch is None
    assert fairness.notes == ("The run from scratch failed before its first epoch (of 5).",)
    assert "not comparable" in pair.summary()
    assert pair.gap is None


def test_a_failed_twin_after_some_epochs_compares_at_the_last_both_reached():
    pair = tlcore.ScratchComparison(_run("transfer", [0.5, 0.6, 0.7, 0.8, 0.9]),
                                    _run("scratch", [0.2, 0.22, 0.3], status="failed"))
    assert pair.fairness.notes == ("The run from scratch failed after epoch 3 of 5.",)
    assert (pair.fairness.common_epoch, pair.fairness.transfer_at, pair.fairness.scratch_at) == (3, 0.7, 0.3)


def test_while_a_run_trains_the_comparison_waits():
    pair = tlcore.ScratchComparison(_run("transfer", [0.5, 0.6, 0.7, 0.8, 0.9]),
                                    _run("scratch", [0.2], status="running"))
    assert pair.training
    assert pair.summary() == "The comparison is ready when both runs have finished."


def _listing(rows):
    return pd.DataFrame(rows, columns=["id", "run_group", "role", "dataset"])


def test_the_default_overlay_is_a_pair_or_runs_on_one_dataset_never_unrelated_runs():
    pair = _listing([("s", "g1", "scratch", "d"), ("t", "g1", "transfer", "d"), ("x", "", "", "d")])
    assert tlcore.default_comparison(pair) == ["s", "t"]
    same_data = _listing([("x", "", "", "cats.zip"), ("y", "", "", "shapes"), ("z", "", "", "cats.zip")])
    assert tlcore.default_comparison(same_data) == ["x", "z"]
    unrelated = _listing([("x", "", "", "cats.zip"), ("y", "", "", "shapes")])
    assert tlcore.default_comparison(unrelated) == ["x"]  # alone rather than beside an unrelated run
    assert tlcore.default_comparison(_listing([])) == []


def test_the_run_opened_first_is_the_newest_or_for_a_pair_its_transfer_run():
    pair = _listing([("s", "g1", "scratch", "d"), ("t", "g1", "transfer", "d"), ("x", "", "", "d")])
    assert tlcore.default_run(pair) == "t"
    alone = _listing([("x", "", "", "d"), ("s", "g1", "scratch", "d"), ("t", "g1", "transfer", "d")])
    assert tlcore.default_run(alone) == "x"
    orphan = _listing([("s", "g2", "scratch", "d"), ("t", "g1", "transfer", "d")])
    assert tlcore.default_run(orphan) == "s"  # its partner was deleted: the newest itself
    assert tlcore.default_run(_listing([])) is None


def test_a_twin_cut_off_by_a_server_that_stopped_is_not_awaited_for_ever(tmp_path):
    """A run still recorded as "running" that no job trains (the server restarted) is called cut off."""
    store = tlcore.RunStore(tmp_path)
    spec = dataclasses.replace(SPEC, num_classes=2)
    summary = {"name": "shapes", "classes": ["a", "b"]}
    transfer = store.create(spec, CONFIG, summary, group="pair", role="transfer")
    scratch = store.create(spec, CONFIG, summary, group="pair", role="scratch")
    store.record_result(transfer, _history([0.5, 0.6, 0.7, 0.8, 0.9]), _run("transfer", [0.9]).result)
    store.record_history(scratch, _history([0.25, 0.3]))  # two epochs, then the server stopped

    waiting = tlcore.scratch_comparison(store, transfer, live=[scratch])  # its job still trains
    assert waiting.training and waiting.summary() == "The comparison is ready when both runs have finished."
    assert tlcore.scratch_comparison(store, transfer).training  # without live runs nothing is assumed

    cut_off = tlcore.scratch_comparison(store, transfer, live=[])
    assert not cut_off.training and cut_off.scratch.status == tlcore.INTERRUPTED
    fairness = cut_off.fairness
    assert fairness.notes == ("The run from scratch was cut off after epoch 2 of 5: the server stopped while it "
                              "trained.",)
    assert fairness.common_epoch == 2 and (fairness.transfer_at, fairness.scratch_at) == (0.6, 0.3)
    assert "epoch 2, the last both reached" in cut_off.summary()
