"""Frozen-feature caching against plain model.fit, measured in one run.

Run: .venv/bin/python bench/feature_cache.py
Both sides train the same freshly built model (same seed) on the same 256
preprocessed images of the built-in sample dataset; building the model and
decoding the images is identical for both and not timed. "plain" is Keras's
model.fit on the whole model; "cached" runs the frozen prefix once and fits
the rest (tlcore.train.fit_phase). End-to-end tlcore.train() times follow.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tlcore  # noqa: E402
from tlcore.train import fit_phase  # noqa: E402

CASES = [
    ("MobileNetV2 frozen, 128 px, 10 epochs",
     tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(128, 128, 3), weights=None), 10, 8.0),
    ("VGG16 block5 trainable, 128 px, 5 epochs",
     tlcore.TransferSpec(backbone="VGG16", input_shape=(128, 128, 3), weights=None,
                         trainable_from="block5_conv1"), 5, 2.0),
]


def timed_fit(spec, x, y, train_idx, val_idx, config) -> float:
    keras.utils.set_random_seed(0)
    model = tlcore.build_transfer_model(spec)
    start = time.perf_counter()
    fit_phase(model, x, y, train_idx, val_idx, config)
    return time.perf_counter() - start


def main() -> None:
    dataset = tlcore.sample_dataset(per_class=64, size=128, seed=0)
    train_idx, val_idx = dataset.split(0.2, seed=0)
    print(f"{len(dataset)} images ({len(train_idx)} train, {len(val_idx)} validation), batch 32, 2 CPU cores\n")
    print(f"{'case':<42} {'plain fit':>10} {'cached':>8} {'ratio':>7} {'target':>7}")
    for label, spec, epochs, target in CASES:
        spec = tlcore.TransferSpec(**{**spec.__dict__, "num_classes": 4})
        pixels, y = dataset.arrays(spec.input_shape[:2])
        x = tlcore.get_backbone(spec.backbone).preprocess(pixels.astype(np.float32))
        config = tlcore.TrainConfig(epochs=epochs, batch_size=32)
        plain = timed_fit(spec, x, y, train_idx, val_idx, tlcore.TrainConfig(epochs=epochs, cache_features=False))
        cached = timed_fit(spec, x, y, train_idx, val_idx, config)
        print(f"{label:<42} {plain:>8.1f} s {cached:>6.1f} s {plain / cached:>6.1f}x {target:>6.0f}x")
    print("\nEnd to end (tlcore.train: build, decode, train, evaluate):")
    for label, spec, epochs, _ in CASES[:1]:
        times = {}
        for cache in (False, True):
            start = time.perf_counter()
            tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=epochs, cache_features=cache))
            times[cache] = time.perf_counter() - start
        print(f"{label:<42} {times[False]:>8.1f} s {times[True]:>6.1f} s {times[False] / times[True]:>6.1f}x")


if __name__ == "__main__":
    main()
