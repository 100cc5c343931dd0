"""An uploaded model's passes run in a Ray worker of its own, within a time and a memory limit.

A stranger's ``.keras`` model passes every budget before Keras reads it, yet its passes
(prediction with the first-pass calibration, Grad-CAM, batches) take real time and memory:
they run in ``tlcore.UploadedModel``'s worker, not in the server. These tests check that the
pass really runs in another process (its PID; the server's memory does not grow with the
model's activations; the server's own forward pass is never built), that its results are the
in-process ones, that a pass over TL_MAX_UPLOAD_PASS_SECONDS is stopped with a message naming
the limit while the server keeps answering, and that a worker that dies (killed as the OOM
killer would, or past its small memory limit) gives a message, not a traceback.
"""

import json
import os
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from support import image_bytes, open_page

import tlcore
from tlcore.inference import forward

pytestmark = pytest.mark.slow


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def small_model(path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((40, 40, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="first_conv")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(keras.layers.MaxPooling2D()(x))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalMaxPooling2D()(x))
    keras.Model(inputs, outputs).save(path)
    return path


def slow_model(path, side=512, filters=32, kernel=31):
    """One big convolution: about 24 GFLOPs an image at 512 px (about half a second or more here)."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(path)
    return path


def padded_model(path, padding=1806):
    """8x8 in, padded to 3,620 a side: 150 MB of float32 activations a pass, in a 20 KB file."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.ZeroPadding2D(padding),
                              keras.layers.Conv2D(2, 3, padding="same"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    model.save(path)
    return path


def picture(seed=0, size=(60, 50)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def test_an_uploads_passes_run_in_its_worker_and_give_the_in_process_results(tmp_path, ray_address, monkeypatch):
    path = small_model(tmp_path / "small.keras")
    uploaded = tlcore.UploadedModel(path)
    local = tlcore.load_model_file(path)
    assert uploaded.worker_pid() not in (None, os.getpid())
    image = picture(3)
    expected_top = tlcore.predict_top_k(local, image, backbone="MobileNetV2", k=3, labels=["a", "b", "c"])
    expected_cam = tlcore.grad_cam(local, image, 2, backbone="MobileNetV2")
    items = tlcore.batch_inputs([("a.png", image_bytes(seed=1)), ("b.png", image_bytes(seed=2, size=(90, 70)))])
    expected_batch = tlcore.predict_batch(local, items, backbone="MobileNetV2")

    def not_here(*args, **kwargs):
        raise AssertionError("a forward pass was built in the server process")

    monkeypatch.setattr(forward, "_traced", not_here)  # the server may not trace (or run) any pass now
    pd.testing.assert_frame_equal(
        tlcore.predict_top_k(uploaded, image, backbone="MobileNetV2", k=3, labels=["a", "b", "c"]), expected_top)
    cam = tlcore.grad_cam(uploaded, image, 2, backbone="MobileNetV2")
    np.testing.assert_allclose(cam, expected_cam, atol=1e-6)
    assert cam.shape == (40, 40) and cam.max() > 0
    got = tlcore.predict_batch(uploaded, items, backbone="MobileNetV2")
    pd.testing.assert_frame_equal(got.table, expected_batch.table)
    assert got.thumbnails == expected_batch.thumbnails
    assert tlcore.model_input_size(uploaded) == (40, 40)  # the shape questions are answered by the outline
    assert tlcore.last_conv_layer(uploaded) == tlcore.last_conv_layer(local) == "last_conv"
    assert tlcore.cam_map_size(uploaded, "last_conv") == (20, 20)


def test_the_servers_memory_does_not_grow_with_an_uploads_activations(tmp_path, ray_address):
    path = padded_model(tmp_path / "padded.keras")
    uploaded = tlcore.UploadedModel(path)
    assert uploaded.cost.activation_bytes > 240 * 2**20  # the padded input (157 MB) and its convolution (105 MB)
    tlcore.predict_top_k(uploaded, picture(9, (8, 8)), backbone="MobileNetV2", k=2)  # first-call costs here
    before = _rss_mb()
    for seed in range(3):
        assert len(tlcore.predict_top_k(uploaded, picture(seed), backbone="MobileNetV2", k=2)) == 2
    remote = _rss_mb() - before
    assert uploaded.peak_memory() > 600 * 2**20  # the passes ran in the worker (TensorFlow and 240 MB a pass)
    here = _in_process_growth_mb(path)
    assert remote < 40 and here > 80, (remote, here)  # a fresh process peaks 2.4 GB higher (with calibration)


_IN_PROCESS_PASS = """
import sys
import numpy as np
from PIL import Image
import tlcore

def peak_mb():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024

model = tlcore.load_model_file(sys.argv[1])
small = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
before = peak_mb()
tlcore.predict_top_k(model, small, backbone="MobileNetV2", k=2)
print(peak_mb() - before)
"""


def _in_process_growth_mb(path) -> float:
    """The control: the same pass in a fresh process (this one's allocator reuses what other tests freed)."""
    done = subprocess.run([sys.executable, "-c", _IN_PROCESS_PASS, str(path)],
                          capture_output=True, text=True, timeout=300, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def test_a_pass_over_the_time_limit_is_stopped_with_the_limit_named_and_the_server_goes_on(
        tmp_path, ray_address, monkeypatch):
    uploaded = tlcore.UploadedModel(slow_model(tmp_path / "slow.keras"))  # loaded under the default limit
    first = uploaded.worker_pid()
    monkeypatch.setenv("TL_MAX_UPLOAD_PASS_SECONDS", "4")  # each pass is sent with the limit in force
    started = time.monotonic()
    images = tlcore.batch_inputs([(f"{i}.png", image_bytes(seed=i, size=(64, 64))) for i in range(16)])
    caught = []

    def long_pass():  # 16 images of 24 GFLOPs in one pass: over 4 s (about 7 s here, quiet)
        try:
            tlcore.predict_batch(uploaded, images, backbone="MobileNetV2", batch_size=16)
        except tlcore.TLError as exc:
            caught.append(exc)

    visitor = threading.Thread(target=long_pass)
    visitor.start()
    local = tlcore.load_model_file(small_model(tmp_path / "small.keras"))
    answers = []
    while visitor.is_alive():  # meanwhile the server answers another visitor's prediction at once
        asked = time.monotonic()
        tlcore.predict_top_k(local, picture(7), backbone="MobileNetV2", k=3)
        answers.append(time.monotonic() - asked)
        time.sleep(0.2)
    visitor.join()
    elapsed = time.monotonic() - started
    assert len(answers) >= 5 and max(answers[1:]) < 1.0, answers
    assert len(caught) == 1 and isinstance(caught[0], tlcore.BudgetError), caught
    message = str(caught[0])
    assert "at most 4 s" in message and "(TL_MAX_UPLOAD_PASS_SECONDS)" in message and "predicting" in message
    assert "slow.keras" in message and "Traceback" not in message
    assert elapsed < 30  # stopped near the limit, not when the pass would have ended
    # a new worker answers; its loading is not what this test times
    monkeypatch.setenv("TL_MAX_UPLOAD_PASS_SECONDS", "120")
    table = tlcore.predict_top_k(uploaded, picture(1), backbone="MobileNetV2", k=2)
    assert len(table) == 2 and uploaded.worker_pid() not in (None, first, os.getpid())


def test_a_worker_killed_mid_pass_gives_a_message_and_the_next_pass_works(tmp_path, ray_address):
    uploaded = tlcore.UploadedModel(slow_model(tmp_path / "slow.keras"))
    pid = uploaded.worker_pid()
    images = tlcore.batch_inputs([(f"{i}.png", image_bytes(seed=i, size=(64, 64))) for i in range(16)])
    threading.Timer(1.0, os.kill, (pid, 9)).start()  # as the kernel's OOM killer ends a process
    with pytest.raises(tlcore.WorkerError, match="ended unexpectedly while predicting .* The server and other "
                                                 "users were not affected"):
        tlcore.predict_batch(uploaded, images, backbone="MobileNetV2", batch_size=16)
    assert len(tlcore.predict_top_k(uploaded, picture(2), backbone="MobileNetV2", k=2)) == 2
    assert uploaded.worker_pid() != pid


def test_a_worker_past_its_small_memory_limit_is_a_message_on_the_page(tmp_path, ray_address, monkeypatch):
    monkeypatch.setenv("TL_UPLOAD_WORKER_BASE_MB", "64")  # less than TensorFlow itself: the worker cannot fit
    data = small_model(tmp_path / "small.keras").read_bytes()
    at = open_page("../pages/predict.py", backbone="MobileNetV2", predict_model="uploaded")
    at.file_uploader(key="model_file").set_value(("small.keras", data, "application/octet-stream")).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert "The worker for an uploaded model may use at most" in shown
    assert "(TL_UPLOAD_WORKER_BASE_MB plus what the model's measured cost needs" in shown
    assert "The server and other users were not affected" in shown
    monkeypatch.setenv("TL_UPLOAD_WORKER_BASE_MB", "1024")  # the server still answers: the next try works
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.table[0].value) == 3


def test_the_memory_limit_follows_the_models_measured_cost(monkeypatch):
    cost = tlcore.ModelCost(params=10_000_000, trainable_params=0, activation_bytes=50 * 2**20,
                            trainable_activation_bytes=0, flops=0)
    monkeypatch.setenv("TL_UPLOAD_WORKER_BASE_MB", "1000")
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "200")  # 4 images of 50 MB a pass
    assert tlcore.upload_worker_memory(cost) == 1000 * 2**20 + 3 * 4 * 10_000_000 + 3 * 4 * 50 * 2**20
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "2048")  # 16 images a pass, at most
    assert tlcore.upload_worker_memory(cost) == 1000 * 2**20 + 3 * 4 * 10_000_000 + 3 * 16 * 50 * 2**20
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "1")  # never past a training worker's limit
    assert tlcore.upload_worker_memory(cost) == 2**30


def test_the_first_pass_calibration_under_auto_runs_in_the_worker(tmp_path, ray_address, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path / "data"))  # the worker's too: it is started after this
    monkeypatch.setenv("TL_PRECISION", "auto")
    uploaded = tlcore.UploadedModel(small_model(tmp_path / "small.keras"))

    def not_here(*args, **kwargs):
        raise AssertionError("a pass was built in the server process")

    monkeypatch.setattr(forward, "_traced", not_here)
    with tlcore.forced_precision(None):
        table = tlcore.predict_top_k(uploaded, picture(5), backbone="MobileNetV2", k=3)
    assert len(table) == 3
    from tlcore.inference.calibration import bfloat16_units, store_path

    if bfloat16_units():  # this machine calibrates under auto: the worker measured and kept its verdict
        rows = json.loads(store_path().read_text())["calibrations"].values()
        assert [(row["input_size"], row["batch"]) for row in rows] == [([40, 40], 1)]


def test_a_worker_that_ended_idle_is_replaced_without_a_word(tmp_path, ray_address, monkeypatch):
    monkeypatch.setenv("TL_UPLOAD_WORKER_IDLE_SECONDS", "2")
    uploaded = tlcore.UploadedModel(small_model(tmp_path / "small.keras"))
    first = uploaded.worker_pid()
    time.sleep(4)  # the worker gave its CPU back
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    assert len(tlcore.predict_top_k(uploaded, picture(6), backbone="MobileNetV2", k=3)) == 3  # sent again, to a new one
    assert uploaded.worker_pid() not in (None, first)


def test_an_idle_upload_worker_holds_no_ray_cpu(tmp_path, ray_address):
    ray = tlcore.training.worker.ray_module()
    free = ray.available_resources().get("CPU", 0)
    uploaded = tlcore.UploadedModel(small_model(tmp_path / "small.keras"))
    assert uploaded.worker_pid() is not None  # its worker is up and idle now
    deadline = time.monotonic() + 10  # Ray's view of free resources follows within a second or so
    while ray.available_resources().get("CPU", 0) != free and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == free  # training jobs and other uploads can still start


def test_a_pass_waits_its_turn_and_a_long_wait_is_told_in_words(tmp_path, ray_address, monkeypatch):
    from tlcore.training import upload_worker

    uploaded = tlcore.UploadedModel(small_model(tmp_path / "small.keras"))
    monkeypatch.setattr(upload_worker, "START_SECONDS", 0.0)
    monkeypatch.setenv("TL_MAX_UPLOAD_PASS_SECONDS", "1")  # a turn must come within 3 s now
    assert upload_worker._turns.acquire(timeout=60)  # another upload's pass is running
    try:
        with pytest.raises(tlcore.WorkerError, match=r"must have its turn within 3 s here \(the passes of uploaded "
                                                     r"models run 1 at a time.*'small.keras' still waiting"):
            tlcore.predict_top_k(uploaded, picture(4), backbone="MobileNetV2", k=3)
    finally:
        upload_worker._turns.release()
    assert len(tlcore.predict_top_k(uploaded, picture(4), backbone="MobileNetV2", k=3)) == 3  # its turn came
