"""What TensorBoard logs cost a run: the same run timed with and without ``log_dir``, alternately.

    python bench/tensorboard_cost.py
"""

import statistics
import tempfile
import time
from pathlib import Path

import tlcore


def main(repeats: int = 3) -> None:
    dataset = tlcore.sample_dataset(per_class=40, size=64, seed=1)
    cases = {
        "frozen base, cached features": (tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(64, 64, 3),
                                                             weights=None, hidden_units=32),
                                         tlcore.TrainConfig(epochs=5, batch_size=16)),
        "whole network, streamed images": (tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(64, 64, 3),
                                                               weights=None, hidden_units=32, trainable_from="all"),
                                           tlcore.TrainConfig(epochs=3, batch_size=16, cache_features=False)),
    }
    for label, (spec, config) in cases.items():
        times = {False: [], True: []}
        tlcore.train(spec, dataset, config)  # warm: traces, caches
        for _ in range(repeats):
            for logged in (False, True):
                with tempfile.TemporaryDirectory() as folder:
                    started = time.perf_counter()
                    tlcore.train(spec, dataset, config, log_dir=Path(folder) / "tensorboard" if logged else None)
                    times[logged].append(time.perf_counter() - started)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(f"{label}: {len(dataset)} images, {config.total_epochs} epochs; median of {repeats}: "
              f"without logs {off:.2f} s, with logs {on:.2f} s (+{on - off:.2f} s, {100 * (on - off) / off:+.0f}%)")


if __name__ == "__main__":
    main()
