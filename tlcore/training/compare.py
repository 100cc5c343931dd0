"""Transfer against scratch: the same model trained without what it reuses, and the gap between them.

A pair is two runs of one group in the run store (roles "transfer" and "scratch"),
trained on the same split for the same number of epochs. ``JobQueue.submit_with_scratch``
starts one; ``scratch_comparison`` reads it back as plain data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import pandas as pd

from tlcore.core.errors import ConfigError
from tlcore.models.spec import ALL_LAYERS, TransferSpec
from tlcore.training.config import HISTORY_COLUMNS, TrainConfig
from tlcore.training.runs import INTERRUPTED, RUNNING, RunRecord, RunStore

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


ROLE_WORDS = {TRANSFER: "The transfer run", SCRATCH: "The run from scratch"}


@dataclasses.dataclass(frozen=True)
class Fairness:
    """Whether a transfer run and its twin from scratch can be compared as they stand.

    They can when both finished every epoch they planned. When one stopped early (Stop
    pressed, early stopping, a server that went down) or failed, their final accuracies
    come from different amounts of training: ``common_epoch`` is then the last epoch both
    reached, and ``transfer_at``/``scratch_at`` their validation accuracies there (from the
    histories), a like-with-like comparison at fewer epochs.

    Attributes:
        comparable: both finished all their planned epochs; the final accuracies compare.
        notes: one plain sentence per run that did not, e.g. "The run from scratch stopped
            early: Stop was pressed after epoch 2 of 5."; empty when comparable.
        transfer_epochs, scratch_epochs: epochs each run completed.
        planned_epochs: epochs each run planned (the same for a pair: ``scratch_config``).
        common_epoch: the last epoch both completed; None when comparable, or when one
            completed none (then nothing compares).
        transfer_at, scratch_at: validation accuracy at ``common_epoch``; None without one.
    """

    comparable: bool
    notes: tuple[str, ...]
    transfer_epochs: int
    scratch_epochs: int
    planned_epochs: int
    common_epoch: int | None = None
    transfer_at: float | None = None
    scratch_at: float | None = None

    @property
    def gap_at_common_epoch(self) -> float | None:
        """Transfer minus scratch at ``common_epoch`` (0.25 is 25 points); None without one."""
        if self.transfer_at is None or self.scratch_at is None:
            return None
        return self.transfer_at - self.scratch_at

    def words(self) -> str:
        """The fairness in plain words ("" when comparable)."""
        if self.comparable:
            return ""
        notes = " ".join(self.notes)
        if self.common_epoch is None:
            return f"{notes} The two runs are not comparable: one of them has no finished epoch to set beside the other."
        if self.gap_at_common_epoch is None:
            return (f"{notes} Their final accuracies are not a fair comparison; epoch {self.common_epoch} is "
                    "the last both reached, but one of them has no validation accuracy recorded there.")
        return (f"{notes} Their final accuracies are not a fair comparison, so they are compared at epoch "
                f"{self.common_epoch}, the last both reached: transfer {self.transfer_at:.1%}, from scratch "
                f"{self.scratch_at:.1%} validation accuracy ({self.gap_at_common_epoch * 100:+.1f} points).")


def _epochs_done(record: RunRecord) -> int:
    """Epochs the run completed: a run stopped mid-epoch also records that part of an epoch, last, with
    ``complete`` False (histories of earlier releases have no such column: every row was an epoch)."""
    history = record.history
    if "complete" not in history:
        return len(history)
    return int(history["complete"].isin([True, "True"]).sum())


def _why_short(role: str, record: RunRecord, planned: int) -> str | None:
    """Why a run of a pair did not complete its planned epochs, in one sentence; None if it did."""
    who, done = ROLE_WORDS[role], _epochs_done(record)
    where = f"after epoch {done} of {planned}" if done else f"before its first epoch (of {planned})"
    if record.status == "failed":
        return f"{who} failed {where}."
    if record.status == INTERRUPTED:
        return f"{who} was cut off {where}: the server stopped while it trained."
    if record.result is None:
        return f"{who} has not finished: it stopped or is still training, {where}."
    if done >= planned:
        return None
    if record.result.stopped:
        return f"{who} stopped early: Stop was pressed {where}."
    if record.config.early_stopping:
        return (f"{who} stopped early: early stopping ended it {where}, when the validation loss had not "
                f"improved for {record.config.early_stopping} epochs.")
    return f"{who} stopped early, {where}."


def _accuracy_at(record: RunRecord, epoch: int) -> float | None:
    if "val_accuracy" not in record.history or len(record.history) < epoch:
        return None
    value = record.history["val_accuracy"].iloc[epoch - 1]
    return None if pd.isna(value) else float(value)


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
    def training(self) -> bool:
        """Either run is still recorded as training (queued, training, or cut off by a server that stopped)."""
        return RUNNING in (self.transfer.status, self.scratch.status)

    @property
    def fairness(self) -> Fairness:
        """Whether the two final accuracies compare, and if not, the last epoch both reached."""
        planned = max(self.transfer.config.total_epochs, self.scratch.config.total_epochs)
        done = {TRANSFER: _epochs_done(self.transfer), SCRATCH: _epochs_done(self.scratch)}
        notes = tuple(note for role, record in ((TRANSFER, self.transfer), (SCRATCH, self.scratch))
                      if (note := _why_short(role, record, planned)) is not None)
        if not notes:
            return Fairness(True, (), done[TRANSFER], done[SCRATCH], planned)
        common = min(done.values())
        if common == 0:
            return Fairness(False, notes, done[TRANSFER], done[SCRATCH], planned)
        return Fairness(False, notes, done[TRANSFER], done[SCRATCH], planned, common,
                        _accuracy_at(self.transfer, common), _accuracy_at(self.scratch, common))

    @property
    def gap(self) -> float | None:
        """Transfer's final accuracy minus scratch's (0.25 is 25 points ahead); None until both finished.

        Fair only when ``fairness.comparable``; otherwise see ``fairness.gap_at_common_epoch``.
        """
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
        Transfer is 62.5 points ahead." When either run stopped early or failed, says so and compares
        at the last epoch both reached, or says plainly that they do not compare (``Fairness.words``)."""
        if self.training:
            return "The comparison is ready when both runs have finished."
        fairness = self.fairness
        if not fairness.comparable:
            return fairness.words()
        times = {role: f" in {seconds:.1f} s" if seconds is not None else ""
                 for role, seconds in ((TRANSFER, self.transfer_seconds), (SCRATCH, self.scratch_seconds))}
        points = abs(self.gap) * 100
        verdict = ("Both reach the same accuracy." if points < 0.05 else
                   f"Transfer is {points:.1f} points {'ahead' if self.gap > 0 else 'behind'}.")
        return (f"Transfer: {self.transfer_accuracy:.1%} validation accuracy{times[TRANSFER]}. "
                f"From scratch: {self.scratch_accuracy:.1%}{times[SCRATCH]}. {verdict}")


def scratch_comparison(store: RunStore, run_id: str, *, live: Collection[str] | None = None
                       ) -> ScratchComparison | None:
    """The pair a run belongs to, or None for a run trained alone (or whose partner was deleted).

    Args:
        live: the ids of runs a job is queued or training for (``JobQueue.live_runs``). When
            given, a run recorded as "running" that is not among them is taken as interrupted
            (its server stopped while it trained): the pair is then not waiting for it, and its
            ``fairness`` says so.

    Raises:
        KeyError: no run with that id.
    """
    record = store.get(run_id)
    cut_off = set(store.interrupted(live)) if live is not None else set()
    by_role = {run.role: dataclasses.replace(run, status=INTERRUPTED) if run.id in cut_off else run
               for run in store.group_runs(record.group)}
    if TRANSFER not in by_role or SCRATCH not in by_role:
        return None
    return ScratchComparison(by_role[TRANSFER], by_role[SCRATCH])


def default_comparison(runs: pd.DataFrame, *, count: int = 2) -> list[str]:
    """The runs to compare first: runs that belong together, never unrelated ones.

    The newest run's transfer-and-scratch pair when it has one; otherwise the newest run
    and the newest others trained on the same dataset (``count`` in all); otherwise the
    newest run alone.

    Args:
        runs: ``RunStore.list()`` (newest first).

    Returns:
        Run ids, in ``runs``' order.
    """
    if runs.empty:
        return []
    newest = runs.iloc[0]
    group = newest["run_group"]
    pair = runs[(runs["run_group"] == group) & runs["role"].isin([TRANSFER, SCRATCH])] if group else runs.iloc[:0]
    if len(pair) == 2:
        return pair["id"].tolist()
    same_data = runs[runs["dataset"] == newest["dataset"]] if newest["dataset"] else runs.iloc[:1]
    return same_data["id"].iloc[:max(count, 1)].tolist()


def default_run(runs: pd.DataFrame) -> str | None:
    """The run to open first: the newest, except that the newest pair opens on its transfer run
    (whose page shows both), not on its twin from scratch.

    Args:
        runs: ``RunStore.list()`` (newest first).
    """
    if runs.empty:
        return None
    newest = runs.iloc[0]
    if newest["role"] == SCRATCH and newest["run_group"]:
        partner = runs[(runs["run_group"] == newest["run_group"]) & (runs["role"] == TRANSFER)]
        if len(partner):
            return partner["id"].iloc[0]
    return newest["id"]
