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
reuse at least 20x.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TL_DATA_DIR"] = tempfile.mkdtemp(prefix="tl-bench-cache-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlcore  # noqa: E402

CASES = [
    ("MobileNetV2 frozen, 128 px, 10 epochs",
     tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(128, 128, 3), weights=None), 10),
    ("VGG16 block5 trainable, 128 px, 5 epochs",
     tlcore.TransferSpec(backbone="VGG16", input_shape=(128, 128, 3), weights=None,
                         trainable_from="block5_conv1"), 5),
]
IMAGES = 512


def timed(spec: tlcore.TransferSpec, dataset: tlcore.ImageDataset, config: tlcore.TrainConfig):
    started = time.perf_counter()
    result = tlcore.train(spec, dataset, config)
    return time.perf_counter() - started, result


def main() -> None:
    dataset = tlcore.sample_dataset(per_class=IMAGES // 4, size=128, seed=3)
    features = tlcore.load_settings().data_dir / "features"
    print(f"{len(dataset)} images of the built-in sample at 128 px, batch 32, 2 cores\n")
    print("| case | plain fit | first run (extract + fit) | reuse (another head) | plain / first | first / reuse |")
    print("|---|---|---|---|---|---|")
    for name, spec, epochs in CASES:
        config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
        tlcore.train(spec, dataset, dataclasses.replace(config, epochs=1, cache_features=False))  # warm-up
        plain, plain_result = timed(spec, dataset, dataclasses.replace(config, cache_features=False))
        shutil.rmtree(features, ignore_errors=True)
        first, first_result = timed(spec, dataset, config)
        other_head = dataclasses.replace(spec, hidden_units=128)
        reuse, reuse_result = timed(other_head, dataset, dataclasses.replace(config, learning_rate=3e-4))
        assert first_result.feature_cache and reuse_result.feature_cache and not plain_result.feature_cache
        print(f"| {name} | {plain:.1f} s | {first:.1f} s | {reuse:.1f} s | **{plain / first:.1f}x** | "
              f"**{first / reuse:.1f}x** |", flush=True)
        same = abs(plain_result.history["loss"].iloc[-1] - first_result.history["loss"].iloc[-1])
        print(f"|   | final loss {plain_result.history['loss'].iloc[-1]:.4f} | "
              f"{first_result.history['loss'].iloc[-1]:.4f} (difference {same:.1e}) | | | |")


if __name__ == "__main__":
    main()
