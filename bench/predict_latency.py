"""Single-image prediction latency: tlcore's compiled forward pass against model.predict.

Run: .venv/bin/python bench/predict_latency.py [repeats]
Weights are untrained (weights=None): the arithmetic, and so the time, is the same
as with ImageNet weights. Each number is the median of `repeats` calls after warm-up.
"""

import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import tlcore  # noqa: E402
from tlcore.inference.predict import prepare_input  # noqa: E402


def median_ms(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(repeats: int = 20) -> None:
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo, "JPEG")
    data = photo.getvalue()
    print(f"{'backbone':<12} {'model.predict':>14} {'compiled fwd':>13} {'predict_top_k':>14} {'speed-up':>9}")
    for name in ("VGG16", "MobileNetV2"):
        model = tlcore.load_backbone(name, weights=None)
        batch = prepare_input(data, model, backbone=name)
        forward = tlcore.compiled_forward(model)
        keras_ms = median_ms(lambda: model.predict(batch, verbose=0), repeats)
        forward_ms = median_ms(lambda: forward(batch), repeats)
        top_k_ms = median_ms(lambda: tlcore.predict_top_k(model, data, backbone=name), repeats)
        print(f"{name:<12} {keras_ms:>11.0f} ms {forward_ms:>10.0f} ms {top_k_ms:>11.0f} ms "
              f"{keras_ms / forward_ms:>8.1f}x")
    print("predict_top_k includes JPEG decode (640x480), centre crop and resize.")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
