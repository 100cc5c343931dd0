"""The develop-a-model demo, offline: train a source model, then reuse its trained base for a target.

The seed article's develop-a-model approach, end to end on generated data, with no
download: a source model learns the built-in sample shapes (circle, square,
triangle, stripes) with its whole base trainable; its trained base is then reused
for a related target task, shapes the source never saw, with few images per class,
and the same target is trained from scratch beside it. Both curves and the gap
say whether what the source learned carried over.

Everything here is plain data and plain functions: ``DemoRecipe`` holds the
datasets' sizes, the specs and the configs; ``train_demo`` runs the recipe in
this process with ``tlcore.train``; ``start_demo`` runs it through a training
queue (Ray workers), as the app does, and ``DemoRun.snapshot`` reports it.
This module does not import Ray: the queue it is given does.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import threading
import traceback
import uuid
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tlcore.core.errors import ConfigError, TLError
from tlcore.core.storage import SAMPLE_PREFIX
from tlcore.data.datasets import ImageDataset
from tlcore.data.samples import canvas, generated_dataset, sample_dataset
from tlcore.models.spec import ALL_LAYERS, TransferSpec
from tlcore.training.compare import SCRATCH, TRANSFER, scratch_config, scratch_spec
from tlcore.training.config import TrainConfig, TrainResult
from tlcore.training.runs import RunStore

if TYPE_CHECKING:  # the queue a demo is given brings them: Home lists demos without TensorFlow or Ray
    from tlcore.training.jobs import JobQueue, JobSnapshot, TrainingJob

SOURCE = "source"
"""The role of the demo's first run in its group (the target pair are "transfer" and "scratch")."""
TARGET_CLASSES = ("ring", "frame", "hollow triangle", "star")
"""The target task's classes: none of them is a sample class (``SAMPLE_CLASSES``)."""
TARGET_NAME = "develop-a-model target shapes"
MAX_PER_CLASS = 500
SIZES = (32, 256)
"""Smallest and largest side of the generated images."""


def _polygon(cx: float, cy: float, radius: float, corners: int, *, turn: float = -math.pi / 2,
             inner: float | None = None) -> list[tuple[float, float]]:
    """Corners of a regular polygon around (cx, cy), or of a star when ``inner`` gives its inner radius;
    the first points up."""
    steps = corners * (2 if inner else 1)
    points = []
    for step in range(steps):
        r = inner if inner and step % 2 else radius
        angle = turn + 2 * math.pi * step / steps
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _draw_target(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One target image, drawn as ``datasets.draw_sample`` draws the sample shapes: a light
    noisy background and one dark shape, filled or outlined, of random colour, size and place."""
    c = canvas(size, rng)
    image, draw, colour, x, y, extent = c.image, c.draw, c.colour, c.x, c.y, c.extent
    if kind == "ring":
        draw.ellipse([x, y, x + extent, y + extent], outline=colour, width=max(2, int(extent / 6)))
    elif kind == "frame":
        draw.rectangle([x, y, x + extent, y + extent], outline=colour, width=max(2, int(extent / 6)))
    elif kind == "hollow triangle":
        draw.polygon([(x, y + extent), (x + extent, y + extent), (x + extent / 2, y)], outline=colour,
                     width=max(2, int(extent / 6)))
    elif kind == "star":
        radius = extent / 2
        draw.polygon(_polygon(x + radius, y + radius, radius, 5, inner=radius * 0.4), fill=colour)
    else:
        raise ConfigError(f"A target shape must be one of {TARGET_CLASSES}. Received: kind={kind!r}")
    return image


def _check_generated(per_class: int, size: int) -> None:
    if not 2 <= per_class <= MAX_PER_CLASS:
        raise ConfigError(f"Images per class must be from 2 to {MAX_PER_CLASS}. Received: per_class={per_class}")
    if not SIZES[0] <= size <= SIZES[1]:
        raise ConfigError(f"Image size must be from {SIZES[0]} to {SIZES[1]} pixels. Received: size={size}")


def demo_target_dataset(*, per_class: int = 32, size: int = 48, seed: int = 0) -> ImageDataset:
    """The demo's target task: rings, frames, hollow triangles and stars, classes the source never saw.

    Drawn as the sample shapes are, deterministically (no download), and stored once per
    (per_class, size, seed) in the data folder with its digest, as a built-in dataset
    (listed, never deleted, rebuilt on demand).

    Raises:
        ConfigError: ``per_class`` outside 2 to 500 or ``size`` outside 32 to 256.
    """
    _check_generated(per_class, size)
    return generated_dataset(f"{SAMPLE_PREFIX}target-{per_class}-{size}-{seed}", TARGET_CLASSES, TARGET_NAME,
                             per_class, lambda kind, rng: _draw_target(kind, size, rng),
                             np.random.default_rng([seed, 1]))  # not the sample's stream for the same seed


@dataclasses.dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo trains, as plain values.

    Attributes:
        seed: for both datasets and every run's split, initial weights and shuffling.
        size: side of the generated images and of the model input.
        source_per_class: sample-shape images per class for the source task.
        target_per_class: target images per class; ``target_config.validation_fraction``
            of them are held out to measure, the rest (few) are trained on.
        source_spec: the source model; its whole base trains (``trainable_from="all"``).
        source_config: how the source trains.
        target_spec: the target model without its base file (``target_spec_for`` adds it).
        target_config: how the target trains; the run from scratch gets the same epochs
            in one phase (``compare.scratch_config``).
    """

    seed: int = 0
    size: int = 48
    source_per_class: int = 192
    target_per_class: int = 32
    source_spec: TransferSpec = TransferSpec(backbone="MobileNetV2", input_shape=(48, 48, 3), weights=None,
                                             trainable_from=ALL_LAYERS, hidden_units=0, dropout=0.2)
    source_config: TrainConfig = TrainConfig(epochs=6, batch_size=32, learning_rate=3e-3,
                                             validation_fraction=0.2)
    target_spec: TransferSpec = TransferSpec(backbone="MobileNetV2", input_shape=(48, 48, 3), weights=None,
                                             trainable_from=None, hidden_units=0, dropout=0.2)
    target_config: TrainConfig = TrainConfig(epochs=15, batch_size=8, learning_rate=1e-3,
                                             validation_fraction=0.625)

    def __post_init__(self) -> None:
        _check_generated(self.source_per_class, self.size)
        _check_generated(self.target_per_class, self.size)
        for spec in (self.source_spec, self.target_spec):
            if tuple(spec.input_shape[:2]) != (self.size, self.size):
                raise ConfigError(f"The demo's models take its images' size, {self.size}x{self.size}. "
                                  f"Received: input_shape={spec.input_shape}")
        if self.source_spec.backbone != self.target_spec.backbone:
            raise ConfigError("A reused base keeps its architecture: the target's backbone must be the source's. "
                              f"Received: {self.source_spec.backbone} and {self.target_spec.backbone}")

    def source_dataset(self) -> ImageDataset:
        return sample_dataset(per_class=self.source_per_class, size=self.size, seed=self.seed)

    def target_dataset(self) -> ImageDataset:
        return demo_target_dataset(per_class=self.target_per_class, size=self.size, seed=self.seed)

    def seeded(self, config: TrainConfig) -> TrainConfig:
        return dataclasses.replace(config, seed=self.seed)

    def target_spec_for(self, base_model: str) -> TransferSpec:
        """The target model on the source run's saved model (``model.keras``)."""
        return dataclasses.replace(self.target_spec, base_model=str(base_model))


DEMO_RECIPE = DemoRecipe()
"""The recipe the app runs: MobileNetV2 at 48x48 from random weights.

The source learns 192 sample shapes a class (6 epochs, Adam at 3e-3, batch 32); the target
keeps its base frozen and trains a new softmax head on 12 images a class (15 epochs, Adam at
1e-3, batch 8), and 20 a class are held out to measure. Measured in one process with
``train_demo`` (2 shared cores, load 2 to 6), validation accuracy:

====  ======  ============  =============  ==========================================
seed  source  target, base  target, from   gap (points); best scratch of three tries
              reused        scratch        (15 epochs at 1e-3 or 3e-3, 45 at 1e-3)
====  ======  ============  =============  ==========================================
0     94.1%   71.2%         27.5%          +43.8; scratch at best 32.5%
1     93.4%   62.5%         31.2%          +31.2; scratch at best 37.5%
2     85.5%   76.2%         25.0%          +51.2; scratch at best 36.2%
====  ======  ============  =============  ==========================================

About 80 s a seed in all (source 45 s, target 4 s, scratch 30 s). Through the app (Home's button,
the three runs one after another in Ray workers) seed 0 took 144 s from the click to the gap on
screen, the source finishing at 78 s, with the same three accuracies. Fine-tuning the reused
base as well (5 more epochs, every layer at 1e-4) gave 76.2%, 72.5% and 73.8%, at about
10 s more; the frozen base keeps the demo quickest, and its margin is clear.
"""


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """The three runs of ``train_demo``: the source, and the target reusing it and from scratch."""

    source: TrainResult
    transfer: TrainResult
    scratch: TrainResult

    @property
    def gap(self) -> float:
        """Target accuracy reusing the source's base minus from scratch (0.25 is 25 points)."""
        return self.transfer.evaluation.accuracy - self.scratch.evaluation.accuracy

    def summary(self) -> str:
        return (f"source {self.source.evaluation.accuracy:.1%} in {self.source.seconds:.0f} s; target reusing its "
                f"base {self.transfer.evaluation.accuracy:.1%} in {self.transfer.seconds:.0f} s, from scratch "
                f"{self.scratch.evaluation.accuracy:.1%} in {self.scratch.seconds:.0f} s; "
                f"gap {self.gap * 100:+.1f} points")


def train_demo(recipe: DemoRecipe = DEMO_RECIPE, *, trainer=None) -> DemoResult:
    """The whole demo in this process (a notebook, a test): source, then the target pair.

    The source model is saved to a temporary file for the target to load its base
    from, as the app does with the source run's ``model.keras``. ``trainer`` trains one
    run (``tlcore.train`` unless given).
    """
    if trainer is None:
        from tlcore.training.train import train as trainer  # TensorFlow, only when the demo trains here
    source = trainer(recipe.source_spec, recipe.source_dataset(), recipe.seeded(recipe.source_config))
    target = recipe.target_dataset()
    config = recipe.seeded(recipe.target_config)
    with tempfile.TemporaryDirectory(prefix="tl-demo-") as folder:
        path = f"{folder}/source.keras"
        source.model.save(path)
        spec = recipe.target_spec_for(path)
        transfer = trainer(spec, target, config)
    scratch = trainer(scratch_spec(spec), target, scratch_config(config))
    return DemoResult(source, transfer, scratch)


STAGES = ("source", "target", "done", "failed")


@dataclasses.dataclass(frozen=True)
class DemoSnapshot:
    """Where a demo is, copied at one moment, as plain data.

    Attributes:
        group: the run-store group of its three runs.
        stage: "source" (training the source), "target" (the pair), "done" or "failed".
        source, transfer, scratch: each run's job snapshot; None before it is queued.
        error: why the demo failed, in words; None otherwise.
    """

    group: str
    stage: str
    source: JobSnapshot | None
    transfer: JobSnapshot | None
    scratch: JobSnapshot | None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.stage in ("done", "failed")

    @property
    def run_ids(self) -> dict[str, str]:
        """Role ("source", "transfer", "scratch") -> run id, for the runs queued so far."""
        jobs = {SOURCE: self.source, TRANSFER: self.transfer, SCRATCH: self.scratch}
        return {role: job.run_id for role, job in jobs.items() if job is not None}

    def current(self) -> tuple[str, JobSnapshot] | None:
        """The role and snapshot of the run that is training or next in line, if any."""
        for role, job in ((SOURCE, self.source), (TRANSFER, self.transfer), (SCRATCH, self.scratch)):
            if job is not None and not job.finished:
                return role, job
        return None

    def describe(self) -> str:
        """The stage in words."""
        return {
            "source": "Step 1 of 2: training the source model on the sample shapes, its whole base learning.",
            "target": "Step 2 of 2: the target shapes, reusing the source's trained base, and from scratch.",
            "done": "Done: the target trained on the source's base and from scratch.",
            "failed": f"The demo stopped: {self.error}",
        }[self.stage]


class DemoRun:
    """One demo going through a training queue: the source run, then the target pair.

    A thread waits for the source job, then queues the target reusing the source
    run's ``model.keras`` and the same target from scratch (``submit_with_scratch``).
    All three runs share ``group`` in the run store.
    """

    def __init__(self, queue: JobQueue, store: RunStore, recipe: DemoRecipe, owner: str, group: str):
        self.queue, self.store, self.recipe, self.owner, self.group = queue, store, recipe, owner, group
        self._lock = threading.Lock()
        self._stage = "source"
        self._error: str | None = None
        self._source: TrainingJob | None = None
        self._pair: tuple[TrainingJob, TrainingJob] | None = None
        self._thread = threading.Thread(target=self._run, name=f"demo-{group}", daemon=True)

    def _start(self) -> None:
        self._source = self.queue.submit(
            self.recipe.source_spec, self.recipe.source_dataset(), self.recipe.seeded(self.recipe.source_config),
            self.store, owner=self.owner, group=self.group, role=SOURCE,
            name="Develop-a-model demo: source on the sample shapes")
        self._thread.start()

    def _run(self) -> None:
        try:
            source = self._source.wait()
            if source.state != "done":
                why = source.error if source.state == "failed" else "it was stopped before it finished"
                self._fail(f"the source run did not finish ({why}), so there is no trained base to reuse.")
                return
            base = self.store.get(source.run_id).model_path
            pair = self.queue.submit_with_scratch(
                self.recipe.target_spec_for(str(base)), self.recipe.target_dataset(),
                self.recipe.seeded(self.recipe.target_config), self.store, owner=self.owner, group=self.group)
            with self._lock:
                self._pair, self._stage = pair, "target"
            finished = [job.wait() for job in pair]
            failed = [f"the {role} run failed ({snap.error})"
                      for role, snap in zip((TRANSFER, SCRATCH), finished) if snap.state == "failed"]
            if failed:
                self._fail("; ".join(failed) + ".")
                return
            with self._lock:
                self._stage = "done"
        except TLError as exc:
            self._fail(f"{exc}")
        except Exception as exc:  # a bug or the machine: log it, tell the user plainly
            traceback.print_exc()
            self._fail(f"it failed unexpectedly ({type(exc).__name__}); the details are in the server log.")

    def _fail(self, message: str) -> None:
        with self._lock:
            self._stage, self._error = "failed", message

    def wait(self, timeout: float | None = None) -> DemoSnapshot:
        self._thread.join(timeout)
        return self.snapshot()

    def stop(self) -> None:
        """Stop every run of the demo at its next batch (or take it out of the line)."""
        with self._lock:
            jobs = [self._source, *(self._pair or ())]
        for job in jobs:
            if job is not None:
                job.stop()

    def snapshot(self) -> DemoSnapshot:
        with self._lock:
            stage, error, source, pair = self._stage, self._error, self._source, self._pair
        transfer, scratch = pair or (None, None)
        return DemoSnapshot(self.group, stage, source and source.snapshot(), transfer and transfer.snapshot(),
                            scratch and scratch.snapshot(), error)


def start_demo(queue: JobQueue, store: RunStore, *, owner: str = "", recipe: DemoRecipe = DEMO_RECIPE) -> DemoRun:
    """Queue the demo's source run now; its target pair follows when the source has finished.

    Args:
        queue: the training queue (its jobs train in Ray workers).
        store: where the three runs are recorded, under one new group.
        owner: who starts it (recorded with each run).
        recipe: what to train.

    Raises:
        ConfigError, ShapeError, BudgetError: the source run is refused by the queue (a full
            line, a spec or config that cannot work, a job over the memory budget).
    """
    run = DemoRun(queue, store, recipe, owner, f"demo-{uuid.uuid4().hex[:12]}")
    run._start()
    return run


def latest_demo_group(store: RunStore) -> str | None:
    """The group of the newest demo on this server whose three runs have all ended with a model
    (done, or stopped keeping what was learned), so its result can be shown to anyone; None for none."""
    runs = store.list()
    demos = runs[(runs["run_group"] != "") & (runs["role"] == "transfer")]
    for group in demos["run_group"]:
        members = runs[runs["run_group"] == group]
        roles = set(members["role"])
        if {"source", "transfer", "scratch"} <= roles and members["status"].isin(["done", "stopped"]).all():
            return str(group)
    return None



class DemoRegistry:
    """The demos a server has started, by group, while it runs (their runs stay in the run store after).

    One is shared by every session of the app, so it is safe to use from many threads.
    When a demo starts, finished demos beyond ``keep_finished`` are let go, oldest first;
    their runs are read back from the run store by group (``RunStore.group_runs``).
    """

    def __init__(self, keep_finished: int = 16):
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._demos: dict[str, DemoRun] = {}

    def start(self, queue: JobQueue, store: RunStore, *, owner: str = "",
              recipe: DemoRecipe = DEMO_RECIPE) -> DemoRun:
        """``start_demo``, and keep the demo by its group.

        Raises:
            ConfigError, ShapeError, BudgetError: as ``start_demo``; nothing is kept then.
        """
        demo = start_demo(queue, store, owner=owner, recipe=recipe)
        with self._lock:
            finished = [group for group, old in self._demos.items() if old.snapshot().finished]
            for group in finished[: max(0, len(finished) - self.keep_finished)]:
                del self._demos[group]
            self._demos[demo.group] = demo
        return demo

    def get(self, group: str | None) -> DemoRun | None:
        """The demo of ``group`` while this server holds it; None for another group, or None."""
        with self._lock:
            return self._demos.get(group) if group else None

    def groups(self) -> list[str]:
        """The groups held, oldest first."""
        with self._lock:
            return list(self._demos)
