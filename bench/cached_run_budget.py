"""The time budget of a cached run: where a first and a reused ``tlcore.train`` spend their time.

Run: .venv/bin/python bench/cached_run_budget.py [images] [epochs]   (default 1,000 images, 10 epochs)

Every figure is ``time.perf_counter`` around the real calls ``tlcore.train`` makes (the
functions are wrapped in their modules for the run, nothing is re-implemented); a phase
is timed exclusive of the phases nested in it, and "other" is what no wrapper covered.
MobileNetV2 frozen at 224 px with ``weights=None`` (ImageNet weights cannot be downloaded
here; the arithmetic is the same), the built-in sample images (``tlcore.sample_dataset``),
float32, batch 32. "first": the feature cache is empty; "reuse": another head (128 hidden
units, another learning rate) on the features the first run wrote. "writing" is
``save_run_model`` after the run, as the job queue's worker does.

The machine and its load are printed with the table; README's Benchmarks section has the figures.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_DATA_DIR", "/tmp/tl-bench-budget")
os.environ["TL_PRECISION"] = "float32"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses  # noqa: E402

import keras  # noqa: E402
from machine_line import this_machine  # noqa: E402

import tlcore  # noqa: E402
from tlcore.training import feature_cache, runs, train  # noqa: E402

PHASES = [  # (module or class, attribute, phase)
    (train, "check_transfer_spec", "checks (shapes only)"),
    (train, "check_job_memory", "checks (shapes only)"),
    (train, "_assemble", "build"),
    (train, "frozen_split", "split (prefix and rest)"),
    (feature_cache, "choose_precision", "precision choice"),
    (feature_cache, "weights_digest", "digest"),
    (feature_cache, "cache_key", "digest"),
    (feature_cache.FeatureCache, "_make_room", "extraction"),
    (feature_cache.FeatureCache, "_extract", "extraction"),
    (feature_cache.FeatureCache, "load", "open features"),
    (feature_cache, "atomic_write_text", "extraction"),
    (train, "head_rows", "open features"),
    (train, "_memory_room", "memory room (the built model measured)"),
    (keras.Model, "compile", "head epochs"),
    (keras.Model, "fit", "head epochs"),
    (train, "recalibrate_batchnorm", "batch-norm statistics pass"),
    (train, "evaluate", "evaluation"),
    (train, "evaluate_images", "evaluation"),
    (train, "_precision_check", "precision check"),
    (train, "_write_logs", "writing"),
    (runs, "save_run_model", "writing"),
]


class Budget:
    """Exclusive seconds per phase of the wrapped calls."""

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.stack: list[float] = []  # time spent in nested phases, per open call

    def wrap(self, function, phase):
        def timed(*args, **kwargs):
            self.stack.append(0.0)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                nested = self.stack.pop()
                self.seconds[phase] += spent - nested
                if self.stack:
                    self.stack[-1] += spent
        return timed

    @contextlib.contextmanager
    def installed(self):
        originals = []
        for owner, name, phase in PHASES:
            if hasattr(owner, name):  # keras.Model's fit and compile are inherited: restored by deleting
                originals.append((owner, name, vars(owner).get(name)))
                setattr(owner, name, self.wrap(getattr(owner, name), phase))
        try:
            yield self
        finally:
            for owner, name, original in reversed(originals):
                if original is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)


HEAD_FIRST = "head: compile, first epoch (Keras traces its steps)"
HEAD_LATER = "head: the other epochs"


def measured(spec, dataset, config, folder: Path) -> tuple[dict[str, float], float, tlcore.TrainResult]:
    budget = Budget()
    with budget.installed():
        started = time.perf_counter()
        result = tlcore.train(spec, dataset, config)
        runs.save_run_model(folder, result.model)
        total = time.perf_counter() - started
    seconds = dict(budget.seconds)
    seconds["other"] = total - sum(seconds.values())
    later = float(result.history["seconds"].iloc[1:].sum())  # the epochs after the first, by the run's own clock
    head = seconds.pop("head epochs", 0.0)
    seconds[HEAD_FIRST], seconds[HEAD_LATER] = head - later, later
    return seconds, total, result


def table(first: tuple[dict, float], reuse: tuple[dict, float]) -> str:
    phases = [phase for _, _, phase in PHASES]
    at = phases.index("head epochs")
    order = list(dict.fromkeys(phases[:at] + [HEAD_FIRST, HEAD_LATER] + phases[at + 1:] + ["other"]))
    lines = ["| phase | first run (s) | reuse (s) |", "|---|---:|---:|"]
    for phase in order:
        a, b = first[0].get(phase, 0.0), reuse[0].get(phase, 0.0)
        if a >= 0.005 or b >= 0.005:
            lines.append(f"| {phase} | {a:.2f} | {b:.2f} |")
    lines.append(f"| **total** | **{first[1]:.2f}** | **{reuse[1]:.2f}** |")
    return "\n".join(lines)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[:3].__str__()


def main(images: int = 1000, epochs: int = 10) -> None:
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(224, 224, 3), weights=None)
    dataset = tlcore.sample_dataset(per_class=images // 4, size=224, seed=7)
    config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
    shutil.rmtree(tlcore.load_settings().data_dir / "features", ignore_errors=True)
    warm = tlcore.sample_dataset(per_class=8, size=224, seed=8)
    with tempfile.TemporaryDirectory() as scratch:  # warm-up: TensorFlow's first traces in this process
        tlcore.train(spec, warm, dataclasses.replace(config, epochs=1), cache=feature_cache.FeatureCache(scratch))
    shutil.rmtree(tlcore.load_settings().data_dir / "features", ignore_errors=True)
    with tempfile.TemporaryDirectory() as folder:
        print(f"loadavg before: {loadavg()}", flush=True)
        *first, first_result = measured(spec, dataset, config, Path(folder) / "first")
        print(f"loadavg after first: {loadavg()}", flush=True)
        other_head = dataclasses.replace(spec, hidden_units=128)
        *reuse, reuse_result = measured(other_head, dataset, dataclasses.replace(config, learning_rate=3e-4),
                                        Path(folder) / "reuse")
        print(f"loadavg after reuse: {loadavg()}", flush=True)
    assert first_result.feature_cache and reuse_result.feature_cache
    print(f"\nMobileNetV2 frozen, 224 px, {len(dataset):,} images, {epochs} epochs, batch 32, float32; "
          f"{this_machine()}\n")
    print(table(first, reuse))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
