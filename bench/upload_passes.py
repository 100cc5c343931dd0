"""What running an uploaded model's passes in its worker costs: in-process against the worker, side by side.

Run: .venv/bin/python bench/upload_passes.py [repeats]
Two uploaded models, each saved to a .keras file: a small one (two convolutions at 64 px, a few
thousand parameters: the overhead shows plainly) and MobileNetV2 at 224 px from random weights
(a model a person might upload). Each is loaded in this process (``load_model_file``, as the
server did before) and as an ``UploadedModel`` (its passes in a Ray worker); then one photo's
``predict_top_k`` (decode, fit and one forward pass) and ``grad_cam`` run on each, alternately,
and each figure is the median of ``repeats`` calls after warm-up. The difference is the remote
path's overhead: the pixels and the answer crossing to the worker and back (Ray's task call).
Starting a worker (Ray first, then the process, TensorFlow and the model) is timed once too.
"""

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TL_PRECISION", "float32")  # the same arithmetic in both places, no calibration
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import tlcore  # noqa: E402


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(x))
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="small")


def mobilenet() -> keras.Model:
    return tlcore.load_backbone("MobileNetV2", weights=None)


def medians_ms(calls: dict, repeats: int) -> dict[str, float]:
    """Each call's median time over ``repeats`` rounds, the calls taking turns within a round."""
    for call in calls.values():
        call()  # warm-up
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main(repeats: int = 30) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tl-bench-uploads-"))
    os.environ.setdefault("TL_DATA_DIR", str(folder / "data"))
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo, "JPEG")
    image = tlcore.load_image(photo.getvalue())
    started = time.perf_counter()
    tlcore.connect_ray()
    print(f"Ray started (or joined) in {time.perf_counter() - started:.1f} s")
    print(f"{'model':<22} {'pass':<14} {'in process':>11} {'in worker':>10} {'overhead':>9}")
    for label, make in (("small (64 px)", small_model), ("MobileNetV2 (224 px)", mobilenet)):
        path = folder / f"{make.__name__}.keras"
        make().save(path)
        local = tlcore.load_model_file(path)
        tlcore.compiled_forward(local)
        started = time.perf_counter()
        uploaded = tlcore.UploadedModel(path)
        start_s = time.perf_counter() - started
        calls = {}
        for where, model in (("here", local), ("worker", uploaded)):
            calls[("top-5", where)] = lambda model=model: tlcore.predict_top_k(model, image, backbone="MobileNetV2")
            calls[("grad_cam", where)] = lambda model=model: tlcore.grad_cam(model, image, 0, backbone="MobileNetV2")
        found = medians_ms(calls, repeats)
        for task in ("top-5", "grad_cam"):
            here, there = found[(task, "here")], found[(task, "worker")]
            print(f"{label:<22} {task:<14} {here:>8.1f} ms {there:>7.1f} ms {there - here:>+6.1f} ms")
        print(f"{label:<22} starting its worker (process, TensorFlow, loading, one warm-up pass): {start_s:.1f} s; "
              f"worker pid {uploaded.worker_pid()}, this process {os.getpid()}")
        del uploaded  # its worker ends
    print(f"Medians of {repeats} calls each, alternating; a 640x480 JPEG decoded once, fitted and preprocessed "
          "in this process for both.")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
