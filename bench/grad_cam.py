"""Grad-CAM against one forward pass: VGG16 at 224, float32 (target: at most 2.5x).

Run: .venv/bin/python bench/grad_cam.py [--repeats 15] [--backbones VGG16,MobileNetV2]

Weights are untrained (weights=None): the arithmetic, and so the time, is the same
as with ImageNet weights. On one preprocessed 224x224 image, after a warm-up of each:

- forward: the compiled forward pass Predict runs (``compiled_forward``, float32);
- Grad-CAM: the compiled Grad-CAM function ``grad_cam`` runs (one pass up to the
  output, the gradient from the class score back to the last convolutional layer);
- ``grad_cam()``: the public call on a 640x480 JPEG (decode, fit, preprocess, Grad-CAM).

The calls alternate, so each sees the same neighbours; each figure is the median of
``repeats`` calls, by the clock and by this process's CPU time (the machine is shared:
CPU time counts our work only). The ratio against the forward pass is given by both.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import tlcore  # noqa: E402
from tlcore.explain.grad_cam import compiled_grad_cam  # noqa: E402
from tlcore.inference.predict import prepare_input  # noqa: E402

TARGET = 2.5


def alternating_medians(calls: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall seconds, CPU seconds) of each call, calls alternating, after one warm-up each."""
    for call in calls.values():
        call()
    times = {name: ([], []) for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def measure(backbone: str, repeats: int) -> list[str]:
    model = tlcore.load_backbone(backbone, weights=None)
    data = photo()
    batch = prepare_input(data, model, backbone=backbone)
    layer = tlcore.last_conv_layer(model, backbone)
    forward = tlcore.compiled_forward(model)
    started = time.perf_counter()
    cam = compiled_grad_cam(model, layer)  # traced and warmed here: the first use's cost
    first_use = time.perf_counter() - started
    tensor, index = tf.constant(batch), tf.constant(0)
    calls = {
        "forward": lambda: forward(batch),
        "grad_cam_core": lambda: cam(tensor, index).numpy(),
        "grad_cam_call": lambda: tlcore.grad_cam(model, data, 0, backbone=backbone),
    }
    result = alternating_medians(calls, repeats)
    (fw, fc), (gw, gc), (pw, pc) = result["forward"], result["grad_cam_core"], result["grad_cam_call"]
    size = tlcore.model_input_size(model)
    verdict = "met" if max(gw / fw, gc / fc) <= TARGET else ("met by CPU time only" if gc / fc <= TARGET
                                                               else "missed")
    return [
        f"| {backbone} | {size[0]}x{size[1]} | {layer} {tlcore.cam_map_size(model, layer)} "
        f"| {fw * 1000:.0f} ms ({fc * 1000:.0f} ms CPU) | {gw * 1000:.0f} ms ({gc * 1000:.0f} ms CPU) "
        f"| {gw / fw:.2f}x ({gc / fc:.2f}x CPU) | {pw * 1000:.0f} ms ({pc * 1000:.0f} ms CPU) "
        f"| {first_use:.1f} s | {verdict} (target {TARGET}x) |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backbones", default="VGG16")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").is_file() else ["?"] * 3
    print(f"Machine: {os.cpu_count()} CPUs, load average {' '.join(load)} at the start; float32; "
          f"median of {args.repeats} alternating calls after a warm-up.\n")
    print("| backbone | input | layer (map) | forward pass | Grad-CAM (compiled) | ratio | grad_cam() on a JPEG "
          "| first use (trace) | 2.5x target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.backbones.split(","):
        for line in measure(name.strip(), args.repeats):
            print(line, flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").is_file() else ["?"] * 3
    print(f"\nLoad average at the end: {' '.join(load)}")


if __name__ == "__main__":
    main()
