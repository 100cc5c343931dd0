"""A 12-trial head sweep on cached features against one ordinary run of the default head.

Run: .venv/bin/python bench/head_sweep.py [images] [size] [--in-order] [--in-order-only] [--no-niced]
     [--as-the-app]

VGG16 (random weights: ImageNet files cannot be downloaded here) at 128 px with Build's
default head (256 hidden units, dropout 0.2, Adam at 1e-3), 512 built-in sample images, up to
20 epochs with early stopping (patience 3). The base's features are computed once, off the
clock, by a first run; then, side by side in this one process:

- "one run": ``tlcore.train`` of the default head, reading the cached features (building the
  model, training, evaluating);
- "sweep": ``tlcore.head_sweep`` with 12 trials, 2 at a time, as Ray Tune trials under ASHA
  (Ray already started, as in the app), the default head among them;
- the breakdown of the sweep, from its live progress (``on_trial``): how long until the first
  trial starts (Tune starting, the trial processes starting and importing TensorFlow), each
  trial's setup (from its start to its first epoch's report: the head built and compiled, its
  train and test steps traced, one epoch), the epochs after that, and ``import keras`` timed
  alone in a fresh process at the Ray workers' priority;
- with ``--as-the-app``, the pair as the Train page starts them: the run as a queued job (a fresh Ray worker,
  which imports TensorFlow, reads the cached features, trains, evaluates and hands its model back to be
  stored; from submit to the run in the store), and the sweep as the Sweep button's server task calls it
  (``use_ray=True``, the data folder's feature cache, which that job's worker filled): both pay Ray's
  processes, where the first pair's run pays none;
- then the same pair again with this process at the Ray workers' priority (``nice 15``, Ray's
  default ``worker_niceness``): in the app the run button's run also trains in a Ray worker, so on a
  busy machine the first pair favours the run (``--no-niced`` skips it; ``--in-order`` adds the 12
  trials one after another in this process, without Ray).

Target: the sweep within 3x the one run, on 2 cores. Figures (the machine and
its load are printed with them) are in
README's "Where to cut and what head to put there".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_DATA_DIR", "/tmp/tl-bench")
os.environ["TL_PRECISION"] = "float32"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlcore  # noqa: E402
from tlcore.training.feature_cache import FeatureCache  # noqa: E402

RAY_WORKER_NICENESS = 15
"""Ray 2.60's default ``worker_niceness``: every Ray worker (a job's, a trial's) runs at this priority."""


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Timeline:
    """When each trial started, reported its first epoch and ended, from a sweep's ``on_trial``."""

    def __init__(self):
        self.started, self.trials = time.perf_counter(), {}

    def __call__(self, trials) -> None:
        now = time.perf_counter() - self.started
        for trial in trials:
            seen = self.trials.setdefault(trial.number, {})
            if trial.state != "pending":
                seen.setdefault("start", now)
            if trial.epochs >= 1:
                seen.setdefault("first", now)
            if trial.state in ("done", "stopped by ASHA"):
                seen.setdefault("end", now)
                seen["epochs"] = trial.epochs

    def breakdown(self, total: float) -> str:
        done = [t for t in self.trials.values() if {"start", "first", "end"} <= t.keys()]
        setups = [t["first"] - t["start"] for t in done]
        later = [(t["end"] - t["first"]) / (t["epochs"] - 1) for t in done if t["epochs"] > 1]
        first = min(t["start"] for t in done)
        return (f"  until the first trial started: {first:.1f} s; setup of a trial (start to first epoch: "
                f"head, compile, tracing, one epoch) mean {sum(setups) / len(setups):.2f} s "
                f"(min {min(setups):.2f}, max {max(setups):.2f}, {sum(setups):.1f} s in all); "
                f"an epoch after the first {sum(later) / max(len(later), 1):.3f} s; "
                f"from the first start to the end {total - first:.1f} s")


def keras_import_seconds(niceness: int) -> float:
    """``import keras`` (and TensorFlow) in a fresh process at ``niceness``, as a trial's process pays it."""
    code = f"import os,time;os.nice({niceness});t=time.perf_counter();import keras;print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return float(out.stdout.split()[-1])


def timed_sweep(spec, dataset, config, label: str, **where) -> float:
    """The 12-trial sweep (2 at a time; ASHA with ``use_ray``), printed with its breakdown: its seconds."""
    timeline = Timeline()
    started = time.perf_counter()
    sweep = tlcore.head_sweep(spec, dataset, config, budget=tlcore.SweepBudget(trials=12, concurrency=2),
                              on_trial=timeline, **where)
    swept = time.perf_counter() - started
    print(f"[{label}] 12-trial sweep: {swept:.1f} s ({sweep.seconds:.1f} s of trials), "
          f"{sum(t.epochs for t in sweep.trials)} epochs in all ({load()})")
    print(timeline.breakdown(sweep.seconds))
    print(sweep.table().to_string())
    print(f"best: trial {sweep.best.number}, {sweep.best.score:.1%}; the default head's trial: {sweep.default.score:.1%}",
          flush=True)
    return swept


def pair(spec, dataset, config, cache, folder: Path, label: str) -> float:
    """One run of the default head, then the 12-trial sweep in Ray Tune; prints both and returns the ratio."""
    started = time.perf_counter()
    run = tlcore.train(spec, dataset, config, cache=cache)
    one = time.perf_counter() - started
    print(f"[{label}] one run of the default head: {one:.1f} s, {len(run.history)} epochs, "
          f"validation accuracy {run.evaluation.accuracy:.1%} ({load()})", flush=True)
    swept = timed_sweep(spec, dataset, config, label, use_ray=True, cache=cache, folder=folder)
    print(f"[{label}] sweep / one run: {swept / one:.1f}x (target <= 3x)", flush=True)
    return swept / one


def as_the_app(spec, dataset, config, root: Path) -> float:
    """The run as a queued job (submit to stored), then the sweep as the Sweep button's task calls it."""
    queue, store = tlcore.JobQueue(max_running=1), tlcore.RunStore(root / "runs")
    first = queue.submit(spec, dataset, config, store)
    assert first.wait(3600).state == "done", first.snapshot().error  # the data folder's features, off the clock
    started = time.perf_counter()
    job = queue.submit(spec, dataset, config, store)
    snapshot = job.wait(600)
    one = time.perf_counter() - started
    record = store.get(job.run_id)
    assert snapshot.state == "done" and record.result.feature_cache, snapshot.error
    print(f"[as the app] one run of the default head as a queued job (a fresh worker; submit to stored): "
          f"{one:.1f} s, {len(record.history)} epochs, validation accuracy {record.result.accuracy:.1%} ({load()})",
          flush=True)
    swept = timed_sweep(spec, dataset, config, "as the app", use_ray=True, folder=root / "sweeps-app")
    print(f"[as the app] sweep / one run: {swept / one:.1f}x (target <= 3x)", flush=True)
    return swept / one


def main(images: int = 512, size: int = 128) -> None:
    dataset = tlcore.sample_dataset(per_class=images // 4, size=size, seed=0)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(size, size, 3), weights=None)
    config = tlcore.TrainConfig(epochs=20, early_stopping=3)
    root = Path(os.environ["TL_DATA_DIR"]) / "bench-sweep"
    shutil.rmtree(root, ignore_errors=True)
    cache = FeatureCache(root / "features")
    run = tlcore.train(spec, dataset, config, cache=cache)  # the features, once, off the clock
    from machine_line import this_machine

    print(f"VGG16 at {size} px, {len(dataset)} images; features computed off the clock "
          f"(cached: {run.feature_cache}); {this_machine()}", flush=True)
    if "--in-order" in sys.argv or "--in-order-only" in sys.argv:
        timed_sweep(spec, dataset, config, "12 trials one after another in this process, no ASHA", cache=cache,
                    folder=root / "in-order")
        if "--in-order-only" in sys.argv:
            return
    tlcore.connect_ray()
    print(f"import keras in a fresh process at the Ray workers' priority: "
          f"{keras_import_seconds(RAY_WORKER_NICENESS):.1f} s ({load()})", flush=True)
    ratios = [pair(spec, dataset, config, cache, root / "sweeps", "this process at nice 0")]
    if "--as-the-app" in sys.argv:
        ratios.append(as_the_app(spec, dataset, config, root))
    if "--no-niced" not in sys.argv:
        os.nice(RAY_WORKER_NICENESS - os.nice(0))
        ratios.append(pair(spec, dataset, config, cache, root / "sweeps-niced",
                           f"this process at nice {RAY_WORKER_NICENESS}, as Ray's workers"))
    print("sweep / one run: " + ", ".join(f"{ratio:.1f}x" for ratio in ratios))
    tlcore.disconnect_ray()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3] if arg.isdigit()))
