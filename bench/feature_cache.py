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
- "watched": the same reuse with ``on_batch`` and ``stop`` given, as the dashboard's
  worker runs it: every batch returns to Python (progress, stop at the next batch),
  where an unwatched head runs ``HEAD_STEPS_PER_EXECUTION`` steps per call.

Targets (issue 18): plain / first at least 8x on 2,000 images (MobileNetV2 frozen, 10
epochs); first / reuse at least 40x on 10,000 images; disk per image stated; and the
mid-network cut (VGG16 trainable from block5_conv1 at 128 px). Datasets are the built-in
sample drawn at 224 px (128 px for the cut); the counts are options, and a run says what
it used. float32 throughout (bench/precision.py measures bfloat16), so cached and plain
runs train the same weights. The machine is shared: every figure carries /proc/loadavg.

Usage: bench/feature_cache.py [cases...] [--images=2000] [--reused-images=10000] [--mid-images=512]
       [--mid-epochs=10]   cases: plain-vs-first, reuse, mid-cut (default: all)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_DATA_DIR", "/tmp/tl-bench")
os.environ["TL_PRECISION"] = "float32"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine_line import this_machine  # noqa: E402

import tlcore  # noqa: E402

FROZEN = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(224, 224, 3), weights=None)
MID_CUT = tlcore.TransferSpec(backbone="VGG16", input_shape=(128, 128, 3), weights=None,
                              trainable_from="block5_conv1")


def loadavg() -> str:
    """The machine's load (1, 5, 15 minutes): this machine is shared, so every figure carries it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(spec: tlcore.TransferSpec, dataset: tlcore.ImageDataset, config: tlcore.TrainConfig, **listeners):
    started = time.perf_counter()
    result = tlcore.train(spec, dataset, config, **listeners)
    return time.perf_counter() - started, result


def features_folder() -> Path:
    return tlcore.load_settings().data_dir / "features"


def empty_cache() -> None:
    shutil.rmtree(features_folder(), ignore_errors=True)


def disk_per_image(dataset) -> str:
    files = list(features_folder().glob("*.npy"))
    return f"{sum(f.stat().st_size for f in files) / len(dataset) / 1000:.1f} KB an image on disk"


def plain_against_first(name, spec, dataset, epochs) -> None:
    config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
    warm = tlcore.sample_dataset(per_class=8, size=int(spec.input_shape[0]), seed=8)  # TensorFlow's first traces
    tlcore.train(spec, warm, dataclasses.replace(config, epochs=1, cache_features=False))
    plain, plain_result = timed(spec, dataset, dataclasses.replace(config, cache_features=False))
    load_plain = loadavg()
    empty_cache()
    first, first_result = timed(spec, dataset, config)
    assert first_result.feature_cache and not plain_result.feature_cache
    difference = abs(plain_result.history["loss"].iloc[-1] - first_result.history["loss"].iloc[-1])
    print(f"| {name}, {len(dataset):,} images | plain fit {plain:.1f} s (load {load_plain}) | first run "
          f"{first:.1f} s (load {loadavg()}) | **{plain / first:.1f}x** | final loss differs by {difference:.1e}; "
          f"{disk_per_image(dataset)} |", flush=True)


def first_against_reuse(name, spec, dataset, epochs) -> None:
    config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
    empty_cache()
    first, first_result = timed(spec, dataset, config)
    load_first = loadavg()
    other_head = dataclasses.replace(spec, hidden_units=128)
    other = dataclasses.replace(config, learning_rate=3e-4)
    reuse, reuse_result = timed(other_head, dataset, other)
    load_reuse = loadavg()
    # as the dashboard's worker runs it: progress reported and a stop checked after every batch
    watched, watched_result = timed(other_head, dataset, other, on_batch=lambda progress: None,
                                    stop=threading.Event())
    assert first_result.feature_cache and reuse_result.feature_cache and watched_result.feature_cache
    print(f"| {name}, {len(dataset):,} images | first run {first:.1f} s (load {load_first}) | reuse (another "
          f"head and learning rate) {reuse:.1f} s (load {load_reuse}) | **{first / reuse:.1f}x** | "
          f"watched batch by batch {watched:.1f} s, {first / watched:.1f}x (load {loadavg()}); "
          f"{first / len(dataset) * 1000:.1f} ms an image first, {reuse / len(dataset) * 1000:.2f} ms reused; "
          f"{disk_per_image(dataset)} |", flush=True)


def main(cases: list[str], images: int, reused_images: int, mid_images: int, mid_epochs: int) -> None:
    print(f"{this_machine()}; every time is tlcore.train end to end (build, stream, fit, evaluate);"
          " load is /proc/loadavg when the figure was taken\n")
    print("| case | | | ratio | |\n|---|---|---|---|---|")
    if "plain-vs-first" in cases:
        plain_against_first("MobileNetV2 frozen, 224 px, 10 epochs", FROZEN,
                            tlcore.sample_dataset(per_class=images // 4, size=224, seed=7), 10)
    if "reuse" in cases:
        first_against_reuse("MobileNetV2 frozen, 224 px, 10 epochs", FROZEN,
                            tlcore.sample_dataset(per_class=reused_images // 4, size=224, seed=7), 10)
    if "mid-cut" in cases:
        small = tlcore.sample_dataset(per_class=mid_images // 4, size=128, seed=3)
        name = f"VGG16 block5 trainable, 128 px, {mid_epochs} epochs"
        plain_against_first(name, MID_CUT, small, mid_epochs)
        first_against_reuse(name, MID_CUT, small, mid_epochs)


if __name__ == "__main__":
    chosen = [a for a in sys.argv[1:] if not a.startswith("--")]
    counts = dict(a[2:].split("=") for a in sys.argv[1:] if a.startswith("--"))
    main(chosen or ["plain-vs-first", "reuse", "mid-cut"], int(counts.get("images", 2000)),
         int(counts.get("reused-images", 10000)), int(counts.get("mid-images", 512)),
         int(counts.get("mid-epochs", 10)))
