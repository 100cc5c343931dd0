"""Where a head's training step goes: Keras's step with its parts turned off one at a time, against the
step's own matrix products.

Run: .venv/bin/python bench/head_step.py [rows] [rounds]   (default 8,000 rows, 2 rounds)

The reuse case of ``bench/feature_cache.py``: a 1,280 -> 256 -> 4 head (dropout 0.5) on 8,000 rows of
1,280 float32 (10,000 images less the validation fifth), batch 32, a block of 64 steps per call
(``steps_per_execution``, as an unwatched cached run trains), from an in-memory tf.data pipeline.
Each variant is compiled and fitted one epoch (its tracing), then timed over 5 epochs; the variants
take turns for ``rounds`` rounds, in this one process. Then the arithmetic alone: the forward
product (32 x 1,280 by 1,280 x 256) and a forward plus the kernel's gradient product, 2,000 times in
one traced loop.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine_line import this_machine  # noqa: E402

from tlcore.training.fused_adam import fused_adam  # noqa: E402

VARIANTS = {
    "Keras step: Keras's Adam, accuracy metric, dropout (as a run was)": dict(optimizer="adam", metrics=True,
                                                                             dropout=True),
    "the same, Adam's update in TensorFlow's fused kernel (as a run is)": dict(optimizer="fused", metrics=True,
                                                                              dropout=True),
    "without the accuracy metric": dict(optimizer="adam", metrics=False, dropout=True),
    "without dropout": dict(optimizer="adam", metrics=True, dropout=False),
    "SGD instead of Adam": dict(optimizer="sgd", metrics=True, dropout=True),
    "SGD, no metric, no dropout": dict(optimizer="sgd", metrics=False, dropout=False),
}


def step_ms(x: np.ndarray, y: np.ndarray, *, optimizer: str, metrics: bool, dropout: bool) -> float:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((x.shape[1],))
    hidden = keras.layers.Dense(256, activation="relu")(inputs)
    if dropout:
        hidden = keras.layers.Dropout(0.5)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(hidden))
    made = {"adam": lambda: keras.optimizers.Adam(1e-3), "fused": lambda: fused_adam(1e-3),
            "sgd": lambda: keras.optimizers.SGD(1e-3)}[optimizer]()
    model.compile(optimizer=made,
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"] if metrics else [],
                  steps_per_execution=64)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).prefetch(2)
    model.fit(data, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(data, epochs=5, verbose=0)
    return (time.perf_counter() - started) / (5 * -(-len(x) // 32)) * 1000


def products_ms() -> tuple[float, float]:
    a, w = tf.random.normal((32, 1280)), tf.Variable(tf.random.normal((1280, 256)))
    g = tf.random.normal((32, 256))

    @tf.function
    def forward(n):
        total = tf.zeros((32, 256))
        for _ in tf.range(n):
            total += tf.matmul(a, w)
        return total

    @tf.function
    def forward_and_gradient(n):
        total = tf.zeros((1280, 256))
        for _ in tf.range(n):
            total += tf.matmul(a, g, transpose_a=True) + 0 * tf.reduce_sum(tf.matmul(a, w))
        return total

    times = []
    for fn in (forward, forward_and_gradient):
        fn(tf.constant(10))
        started = time.perf_counter()
        fn(tf.constant(2000))
        times.append((time.perf_counter() - started) / 2000 * 1000)
    return times[0], times[1]


def main(rows: int = 8000, rounds: int = 2) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((rows, 1280)).astype(np.float32), rng.integers(0, 4, rows)
    print(f"{this_machine()}; {rows:,} rows, batch 32, 64 steps a call\n")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, variant in VARIANTS.items():
            times[name].append(step_ms(x, y, **variant))
    print("| variant | a training step |")
    print("|---|---|")
    for name, measured in times.items():
        print(f"| {name} | {' / '.join(f'{t:.2f} ms' for t in measured)} |")
    forward, both = products_ms()
    print(f"| the forward product alone (32 x 1,280 by 1,280 x 256) | {forward:.3f} ms |")
    print(f"| the forward product and the kernel's gradient product | {both:.3f} ms |")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
