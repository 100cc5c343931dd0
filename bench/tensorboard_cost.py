"""What TensorBoard logs cost a run: the time spent inside the logging code, and the run's time with and without.

    python bench/tensorboard_cost.py

The whole-run times depend on everything else the machine does; the time inside the
logging code (Keras's TensorBoard callback for every epoch, then the graph, the confusion
matrix and the projector's files) is what the logs add.
"""

import statistics
import tempfile
import time
from pathlib import Path

import tlcore
from tlcore.training import tensorboard, train

SPENT = {"seconds": 0.0}


def _timed(function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT["seconds"] += time.perf_counter() - started
    return wrapper


def _instrument() -> None:
    train._write_logs = _timed(train._write_logs)
    board = tensorboard.EpochScalars
    for hook in ("on_epoch_end", "on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "set_model",
                 "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                 "on_test_batch_end"):
        setattr(board, hook, _timed(getattr(board, hook)))


def main(repeats: int = 2) -> None:
    _instrument()
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
        times, logging = {False: [], True: []}, []
        tlcore.train(spec, dataset, config)  # warm: traces, caches
        for _ in range(repeats):
            for logged in (False, True):
                with tempfile.TemporaryDirectory() as folder:
                    SPENT["seconds"] = 0.0
                    started = time.perf_counter()
                    tlcore.train(spec, dataset, config, log_dir=Path(folder) / "tensorboard" if logged else None)
                    times[logged].append(time.perf_counter() - started)
                    if logged:
                        logging.append(SPENT["seconds"])
        off, on, inside = statistics.median(times[False]), statistics.median(times[True]), statistics.median(logging)
        print(f"{label}: {len(dataset)} images, {config.total_epochs} epochs; medians of {repeats}: run without "
              f"logs {off:.2f} s, with logs {on:.2f} s; inside the logging code {inside:.2f} s "
              f"({100 * inside / on:.1f}% of the logged run)", flush=True)


if __name__ == "__main__":
    main()
