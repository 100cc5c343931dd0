"""Frozen-prefix features on disk against plain model.fit, and their reuse, measured in one run.

Run: .venv/bin/python bench/feature_cache.py

Every time is ``tlcore.train`` end to end, in this process (the notebook path;
the dashboard runs the same function in a Ray worker): building the model,
streaming the images from their files, fitting, evaluating. Same dataset,
seed and split on every side.

- "plain": ``cache_features=False``, Keras's ``model.fit`` on the whole model,
  every epoch decoding the images and running the frozen base again.
- "first": the feature cache is empty: one streaming pass of the frozen prefix
  writes its output to disk, then only the rest is fitted.
- "reuse": a second run with another head (learning rate and hidden units
  change) finds the features on disk and never runs the base.

Targets: plain / first at least 8x (MobileNetV2 frozen, 10 epochs); first /
reuse at least 20x. Datasets are the built-in sample drawn at 224 px and 2,000 or
10,000 images (shared with bench/worker_memory.py under /tmp/tl-bench), and 512
images at 128 px for the mid-network cut. float32 throughout (bench/precision.py
measures bfloat16), so cached and plain runs train the same weights.

Usage: bench/feature_cache.py [cases...]   cases: plain-vs-first, reuse, mid-cut (default: all)
"""

from __future__ import annotations

import dataclasses
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

FROZEN = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(224, 224, 3), weights=None)
MID_CUT = tlcore.TransferSpec(backbone="VGG16", input_shape=(128, 128, 3), weights=None,
                              trainable_from="block5_conv1")


def timed(spec: tlcore.TransferSpec, dataset: tlcore.ImageDataset, config: tlcore.TrainConfig):
    started = time.perf_counter()
    result = tlcore.train(spec, dataset, config)
    return time.perf_counter() - started, result


def empty_cache() -> None:
    shutil.rmtree(tlcore.load_settings().data_dir / "features", ignore_errors=True)


def plain_against_first(name, spec, dataset, epochs) -> None:
    config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
    tlcore.train(spec, dataset, dataclasses.replace(config, epochs=1, cache_features=False))  # warm-up
    plain, plain_result = timed(spec, dataset, dataclasses.replace(config, cache_features=False))
    empty_cache()
    first, first_result = timed(spec, dataset, config)
    assert first_result.feature_cache and not plain_result.feature_cache
    difference = abs(plain_result.history["loss"].iloc[-1] - first_result.history["loss"].iloc[-1])
    print(f"| {name}, {len(dataset):,} images | plain fit {plain:.1f} s | first run {first:.1f} s | "
          f"**{plain / first:.1f}x** | final loss differs by {difference:.1e} |", flush=True)


def first_against_reuse(name, spec, dataset, epochs) -> None:
    config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
    empty_cache()
    first, first_result = timed(spec, dataset, config)
    other_head = dataclasses.replace(spec, hidden_units=128)
    reuse, reuse_result = timed(other_head, dataset, dataclasses.replace(config, learning_rate=3e-4))
    assert first_result.feature_cache and reuse_result.feature_cache
    print(f"| {name}, {len(dataset):,} images | first run {first:.1f} s | reuse (another head and "
          f"learning rate) {reuse:.1f} s | **{first / reuse:.1f}x** | |", flush=True)


def main(cases: list[str]) -> None:
    print("2 cores; every time is tlcore.train end to end (build, stream, fit, evaluate)\n")
    print("| case | | | ratio | |\n|---|---|---|---|---|")
    if "plain-vs-first" in cases:
        plain_against_first("MobileNetV2 frozen, 224 px, 10 epochs", FROZEN,
                            tlcore.sample_dataset(per_class=500, size=224, seed=7), 10)
    if "reuse" in cases:
        first_against_reuse("MobileNetV2 frozen, 224 px, 10 epochs", FROZEN,
                            tlcore.sample_dataset(per_class=2500, size=224, seed=7), 10)
    if "mid-cut" in cases:
        small = tlcore.sample_dataset(per_class=128, size=128, seed=3)
        plain_against_first("VGG16 block5 trainable, 128 px, 5 epochs", MID_CUT, small, 5)
        first_against_reuse("VGG16 block5 trainable, 128 px, 5 epochs", MID_CUT, small, 5)


if __name__ == "__main__":
    main(sys.argv[1:] or ["plain-vs-first", "reuse", "mid-cut"])
