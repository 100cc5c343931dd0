"""Cached rows in memory: ``HeldRows`` (one variable, read in place) against the earlier constant.

Run: .venv/bin/python bench/held_rows.py [rows] [width] [rounds]   (default 20,000 x 1,280, 3 rounds)

The rows a head trains on when they fit the job's room: MobileNetV2's pooled vector is 1,280
float32 values, so 20,000 images are 98 MB. Each round, in this one process and taking turns:

- "constant" (before): the rows read into a NumPy array, then ``row_batches`` over it for the
  training and the validation split (each split's rows copied into a ``tf.constant``);
- "held": ``FeatureCache.read`` into ``HeldRows``, then ``row_batches`` over it for both splits.

Each side runs in a fresh process (memory freed by one side would otherwise be reused by the
next and hide its growth), after a small warm-up pass there (TensorFlow's first variable,
tf.data pass and traced steps are not the rows' memory).

Each side trains a fresh 1,280 -> 256 -> 4 head (Adam, batch 32, a block of 64 steps per call, as
an unwatched cached run trains it) for 3 epochs on 80% of the rows and validates on the rest.
Printed: resident anonymous memory added (RssAnon, sampled every 5 ms: the peak, and what is
left at the end while the rows are still in use) and the seconds per epoch after the first.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from machine_line import this_machine  # noqa: E402

from tlcore.data.pipeline import row_batches  # noqa: E402
from tlcore.training.feature_cache import FeatureCache  # noqa: E402

MB = 2**20


def anonymous() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))


class Peak:
    """The most anonymous memory this process held while the block ran, sampled every 5 ms."""

    def __enter__(self):
        self.before = self.peak = anonymous()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, anonymous())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.end = anonymous()
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.end)


def head(width: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((width,))
    hidden = keras.layers.Dense(256, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Dropout(0.2)(hidden)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=64)
    return model


def side(kind: str, path: Path, labels: np.ndarray, width: int) -> tuple[float, float, float]:
    """(peak MB, MB still held at the end, seconds per epoch after the first) of one side."""
    gc.collect()
    order = np.random.default_rng(1).permutation(len(labels))
    train_idx, val_idx = order[: int(0.8 * len(order))], order[int(0.8 * len(order)):]
    with Peak() as memory:
        mapped = np.load(path, mmap_mode="r")
        rows = FeatureCache.read(mapped) if kind == "held" else np.load(path)
        del mapped
        training = row_batches(rows, labels, train_idx, batch_size=32, seed=0)
        validation = row_batches(rows, labels, val_idx, batch_size=256)
        model = head(width)
        model.fit(training, validation_data=validation, epochs=1, verbose=0)
        started = time.perf_counter()
        model.fit(training, validation_data=validation, epochs=2, verbose=0)
        per_epoch = (time.perf_counter() - started) / 2
    del rows, training, validation, model
    gc.collect()
    return (memory.peak - memory.before) / MB, (memory.end - memory.before) / MB, per_epoch


def one_side(kind: str, path: Path, count: int, width: int) -> None:
    """Run one side in this process (after a warm-up) and print its three figures on one line."""
    labels = np.random.default_rng(2).integers(0, 4, count)
    small = path.with_name("warm-up.npy")
    np.save(small, np.zeros((256, width), np.float32))
    side(kind, small, labels[:256], width)
    print("figures", *side(kind, path, labels, width))


def main(count: int = 20_000, width: int = 1280, rounds: int = 3) -> None:
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "tl-bench-held-rows"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rows-{count}x{width}.npy"
    np.save(path, np.random.default_rng(0).standard_normal((count, width), dtype=np.float32))
    print(f"{this_machine()}; {count:,} rows of {width:,} float32 ({count * width * 4 / MB:.0f} MB)", flush=True)
    results: dict[str, list[tuple[float, ...]]] = {"constant": [], "held": []}
    for _ in range(rounds):
        for kind in ("constant", "held"):
            out = subprocess.run([sys.executable, __file__, "--side", kind, str(path), str(count), str(width)],
                                 capture_output=True, text=True, check=True).stdout
            results[kind].append(tuple(float(x) for x in out.split("figures")[-1].split()))
    print("\n| rows in memory | peak added (MB) | still held at the end (MB) | an epoch after the first |")
    print("|---|---|---|---|")
    for kind, label in (("constant", "NumPy array, each split a `tf.constant` (before)"),
                        ("held", "`HeldRows` (now)")):
        peaks, ends, epochs = zip(*results[kind], strict=True)
        print(f"| {label} | {' / '.join(f'{p:.0f}' for p in peaks)} | {' / '.join(f'{e:.0f}' for e in ends)} | "
              f"{' / '.join(f'{s:.2f} s' for s in epochs)} |")
    for leftover in folder.glob("*.npy"):
        leftover.unlink()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--side"]:
        one_side(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main(*(int(arg) for arg in sys.argv[1:4]))
