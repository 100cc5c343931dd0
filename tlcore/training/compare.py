"""Transfer against scratch: the same model trained without what it reuses, and the gap between them.

A pair is two runs of one group in the run store (roles "transfer" and "scratch"),
trained on the same split for the same number of epochs. ``JobQueue.submit_with_scratch``
starts one; ``scratch_comparison`` reads it back as plain data.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from tlcore.core.errors import ConfigError
from tlcore.models.spec import ALL_LAYERS, TransferSpec
from tlcore.training.config import HISTORY_COLUMNS, TrainConfig
from tlcore.training.runs import RunRecord, RunStore

TRANSFER, SCRATCH = "transfer", "scratch"


def scratch_spec(spec: TransferSpec) -> TransferSpec:
    """The same architecture with nothing reused: random weights, every layer trainable.

    Raises:
        ConfigError: ``spec`` already reuses nothing, so the two runs would be the same.
    """
    if spec.reuses_nothing:
        raise ConfigError(
            "Comparing against scratch needs a model that reuses something: pretrained weights, "
            "a weights file or a trained base, or a frozen part. Received: weights=None, base_model=None, "
            "trainable_from='all', which is already a model trained from scratch"
        )
    return dataclasses.replace(spec, weights=None, base_model=None, trainable_from=ALL_LAYERS)


def scratch_config(config: TrainConfig) -> TrainConfig:
    """The same training in one phase: every epoch of ``config`` (fine-tuning included) at its first rate.

    Everything trains from the first epoch, so a fine-tuning phase (which unfreezes) has
    nothing left to do; its epochs are added to the first phase instead.
    """
    return dataclasses.replace(config, epochs=config.total_epochs, fine_tune_from=None, fine_tune_epochs=0)


@dataclasses.dataclass(frozen=True)
class ScratchComparison:
    """A model that reuses something, beside the same model trained from scratch.

    Accuracies are the final evaluation on the held-out images (the same split for
    both), None while a run has not finished.
    """

    transfer: RunRecord
    scratch: RunRecord

    @property
    def transfer_accuracy(self) -> float | None:
        return None if self.transfer.result is None else self.transfer.result.accuracy

    @property
    def scratch_accuracy(self) -> float | None:
        return None if self.scratch.result is None else self.scratch.result.accuracy

    @property
    def transfer_seconds(self) -> float | None:
        return None if self.transfer.result is None else self.transfer.result.seconds

    @property
    def scratch_seconds(self) -> float | None:
        return None if self.scratch.result is None else self.scratch.result.seconds

    @property
    def finished(self) -> bool:
        return self.transfer.result is not None and self.scratch.result is not None

    @property
    def gap(self) -> float | None:
        """Transfer's accuracy minus scratch's (0.25 is 25 points ahead); None until both finished."""
        if not self.finished:
            return None
        return self.transfer_accuracy - self.scratch_accuracy

    def curves(self) -> pd.DataFrame:
        """Both histories in one table, with a ``model`` column ("transfer", "scratch") and ``epoch``
        counted from 1 across phases."""
        frames = [record.history.reset_index(drop=True).assign(epoch=lambda h: range(1, len(h) + 1), model=role)
                  for role, record in ((TRANSFER, self.transfer), (SCRATCH, self.scratch))]
        columns = ["model", *HISTORY_COLUMNS]
        return pd.concat([frame.reindex(columns=columns) for frame in frames], ignore_index=True)

    def summary(self) -> str:
        """The gap in words, e.g. "Transfer: 87.5% validation accuracy in 12.3 s. From scratch: 25.0% in 40.1 s.
        Transfer is 62.5 points ahead." """
        if not self.finished:
            return "The comparison is ready when both runs have finished."
        times = {role: f" in {seconds:.1f} s" if seconds is not None else ""
                 for role, seconds in ((TRANSFER, self.transfer_seconds), (SCRATCH, self.scratch_seconds))}
        points = abs(self.gap) * 100
        verdict = ("Both reach the same accuracy." if points < 0.05 else
                   f"Transfer is {points:.1f} points {'ahead' if self.gap > 0 else 'behind'}.")
        return (f"Transfer: {self.transfer_accuracy:.1%} validation accuracy{times[TRANSFER]}. "
                f"From scratch: {self.scratch_accuracy:.1%}{times[SCRATCH]}. {verdict}")


def scratch_comparison(store: RunStore, run_id: str) -> ScratchComparison | None:
    """The pair a run belongs to, or None for a run trained alone (or whose partner was deleted).

    Raises:
        KeyError: no run with that id.
    """
    record = store.get(run_id)
    by_role = {run.role: run for run in store.group_runs(record.group)}
    if TRANSFER not in by_role or SCRATCH not in by_role:
        return None
    return ScratchComparison(by_role[TRANSFER], by_role[SCRATCH])


def default_comparison(runs: pd.DataFrame, *, count: int = 2) -> list[str]:
    """The runs to compare first: the newest run's transfer-and-scratch pair when it has one,
    otherwise the ``count`` newest runs.

    Args:
        runs: ``RunStore.list()`` (newest first).

    Returns:
        Run ids, in ``runs``' order.
    """
    if runs.empty:
        return []
    group = runs.iloc[0]["run_group"]
    pair = runs[(runs["run_group"] == group) & runs["role"].isin([TRANSFER, SCRATCH])] if group else runs.iloc[:0]
    if len(pair) == 2:
        return pair["id"].tolist()
    return runs["id"].iloc[:count].tolist()
