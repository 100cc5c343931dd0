"""How long a pass over stored images waits after its last batch: tf.data's autotuner on and off, side by side.

Run: .venv/bin/python bench/pass_ends.py [rounds] [images]   (default 20 rounds of 32 images)

Each round runs two passes of VGG16 (random weights, 128 px, batch 32) over the same built-in sample
images through ``image_batches``, in turns: as shipped (the autotuner off) and with the autotuner turned back
on (``tf.data.Options().autotune.enabled = True``, as every pipeline had it). A pass is timed from its
first batch asked for to the loop's end (the iterator let go); "waited" is the time after its last batch
was used. A pass that waited more than 0.5 s is counted as late.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine_line import this_machine  # noqa: E402

import tlcore  # noqa: E402
from tlcore.data.pipeline import image_batches  # noqa: E402
from tlcore.explain.transfer_curve import _tapped  # noqa: E402
from tlcore.inference.forward import compiled_forward  # noqa: E402

LATE = 0.5


def one_pass(forward, batches) -> tuple[float, float]:
    """(seconds for the whole pass, seconds waited after its last batch was used)."""
    started = last = time.perf_counter()
    for x, _ in batches:
        forward(x.numpy())
        last = time.perf_counter()
    ended = time.perf_counter()
    return ended - started, ended - last


def main(rounds: int = 20, images: int = 32) -> None:
    dataset = tlcore.sample_dataset(per_class=max(1, images // 4), size=128, seed=0)
    base = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(128, 128, 3), seed=1)
    forward = compiled_forward(_tapped(base, "block5_pool"))
    preprocess = tlcore.get_backbone("VGG16").preprocess
    tuned = tf.data.Options()
    tuned.autotune.enabled = True

    def shipped():
        return image_batches(dataset, np.arange(len(dataset)), (128, 128), preprocess=preprocess, batch_size=32)

    assert shipped().options().autotune.enabled is False and shipped().with_options(tuned).options().autotune.enabled
    one_pass(forward, shipped())  # warm-up, off the clock
    seen = {"autotuner off (as shipped)": [], "autotuner on (as before)": []}
    for _ in range(rounds):
        seen["autotuner off (as shipped)"].append(one_pass(forward, shipped()))
        seen["autotuner on (as before)"].append(one_pass(forward, shipped().with_options(tuned)))
    print(f"VGG16 at 128 px, {len(dataset)} images a pass, batch 32, {rounds} passes each, in turns; {this_machine()}\n")
    print("| pipeline | passes late (waited > 0.5 s) | median pass | mean pass | longest wait |")
    print("|---|---:|---:|---:|---:|")
    for name, passes in seen.items():
        totals, waits = [p[0] for p in passes], [p[1] for p in passes]
        print(f"| {name} | {sum(w > LATE for w in waits)} of {len(passes)} | {statistics.median(totals):.2f} s | "
              f"{statistics.mean(totals):.2f} s | {max(waits):.2f} s |")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
