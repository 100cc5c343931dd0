"""A 12-trial head sweep on cached features against one ordinary run of the default head.

Run: .venv/bin/python bench/head_sweep.py [images] [size] [--in-order-only]

VGG16 (random weights: ImageNet files cannot be downloaded here) at 128 px with Build's
default head (256 hidden units, dropout 0.2, Adam at 1e-3), 512 built-in sample images, up to
20 epochs with early stopping (patience 3). The base's features are computed once, off the
clock, by a first run; then:

- "one run": ``tlcore.train`` of the default head, reading the cached features (building the
  model, training, evaluating), as Train's run button does in a worker;
- "sweep": ``tlcore.head_sweep`` with 12 trials, 2 at a time, as Ray Tune trials under ASHA
  (Ray already started, as in the app), the default head among them.

Target: the sweep within 3x the one run, on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_DATA_DIR", "/tmp/tl-bench")
os.environ["TL_PRECISION"] = "float32"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlcore  # noqa: E402
from tlcore.training.feature_cache import FeatureCache  # noqa: E402


def main(images: int = 512, size: int = 128) -> None:
    dataset = tlcore.sample_dataset(per_class=images // 4, size=size, seed=0)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(size, size, 3), weights=None)
    config = tlcore.TrainConfig(epochs=20, early_stopping=3)
    root = Path(os.environ["TL_DATA_DIR"]) / "bench-sweep"
    shutil.rmtree(root, ignore_errors=True)
    cache = FeatureCache(root / "features")
    tlcore.train(spec, dataset, config, cache=cache)  # the features, once, off the clock
    started = time.perf_counter()
    run = tlcore.train(spec, dataset, config, cache=cache)
    one = time.perf_counter() - started
    started = time.perf_counter()
    in_order = tlcore.head_sweep(spec, dataset, config, budget=tlcore.SweepBudget(trials=12, concurrency=2),
                                 cache=cache, folder=root / "in-order")
    sequential = time.perf_counter() - started
    print(f"12 trials one after another in this process (no ASHA): {sequential:.1f} s, "
          f"{sum(t.epochs for t in in_order.trials)} epochs in all", flush=True)
    if "--in-order-only" in sys.argv:
        return
    tlcore.connect_ray()
    started = time.perf_counter()
    sweep = tlcore.head_sweep(spec, dataset, config, budget=tlcore.SweepBudget(trials=12, concurrency=2),
                              use_ray=True, cache=cache, folder=root / "sweeps")
    swept = time.perf_counter() - started
    print(f"VGG16 at {size} px, {len(dataset)} images, features cached: {run.feature_cache}")
    print(f"one run of the default head: {one:.1f} s, {len(run.history)} epochs, "
          f"validation accuracy {run.evaluation.accuracy:.1%}")
    print(f"12-trial sweep (2 at a time, ASHA): {swept:.1f} s ({sweep.seconds:.1f} s of trials), "
          f"{sum(t.epochs for t in sweep.trials)} epochs in all")
    print(sweep.table().to_string())
    print(f"best: trial {sweep.best.number}, {sweep.best.score:.1%}; the default head's trial: {sweep.default.score:.1%}")
    print(f"sweep / one run: {swept / one:.1f}x (target <= 3x)")
    tlcore.disconnect_ray()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3] if arg.isdigit()))
