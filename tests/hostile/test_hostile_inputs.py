"""Hostile uploads and killed processes: nothing lost, nothing let in.

Covers what tests/test_images.py, test_datasets.py and test_model_files.py do
not already: formats refused before any decoder parses them, memory under a
decompression bomb, Pillow's global flags, non-UTF-8 archive names, SIGKILL
mid-save, a full disk, and the server settings.
"""

import io
import json
import multiprocessing
import os
import random
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tomllib
from PIL import Image, ImageFile
from support import image_bytes

import tlcore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name,data", [
    ("psd", b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10\x00\x08\x00\x03" + b"\x00" * 64),
    ("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'),
    ("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"),
    ("text", b"hello"),
])
def test_formats_outside_the_allow_list_are_refused_by_content(name, data):
    with pytest.raises(tlcore.ImageError, match="must be JPEG, PNG, WebP, BMP, GIF or TIFF"):
        tlcore.load_image(data)


@pytest.mark.slow
def test_decompression_bomb_is_refused_without_the_memory_jumping(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 200_000
    script = (
        "import resource, sys, tlcore\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"try:\n    tlcore.load_image({str(bomb)!r})\nexcept tlcore.ImageError as exc:\n    print(exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120).stdout.splitlines()
    assert "at most 40,000,000 pixels" in out[0]
    assert int(out[1]) < 50_000  # KiB: far below the 900 MB a decode would take


def test_truncated_images_never_flip_pillows_global_flag():
    data = image_bytes((64, 64), "JPEG")
    with pytest.raises(tlcore.ImageError, match="complete and readable"):
        tlcore.load_image(data[:300])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_animated_webp_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 255, 0), (255, 0, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert tuple(np.asarray(tlcore.load_image(buffer.getvalue()))[0, 0]) == (0, 255, 0)


def test_non_utf8_archive_names_become_stable_class_names():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(2):
            archive.writestr(f"cafe/{i}.png", image_bytes(seed=i))
            archive.writestr(f"tea/{i}.png", image_bytes(seed=9 + i))
    data = buffer.getvalue().replace(b"cafe/", b"caf\xe9/")  # Latin-1 bytes, no UTF-8 flag
    first = tlcore.load_dataset(data)
    second = tlcore.load_dataset(data)
    assert first.class_names == second.class_names == ("cafΘ", "tea")  # decoded as Zip's cp437, every time


RECORDS = [json.dumps({"version": version, "pad": str(version) * 2_000_000}) for version in (0, 1)]
"""The record's two complete versions: 2 MB each, so that writing one takes milliseconds."""


def _model(value: float) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.layers[0].set_weights([np.full((4, 3), value), np.zeros(3)])
    return model


def _save_forever(folder: str) -> None:
    """Keep replacing a model file and a record, alternating two known versions of each."""
    models = [_model(0.0), _model(1.0)]
    step = 0
    while True:
        step += 1
        tlcore.atomic_save(Path(folder) / "model.keras", models[step % 2].save, suffix=".keras")
        tlcore.atomic_write_text(Path(folder) / "record.json", RECORDS[step % 2])


def _temporaries(folder: Path) -> set[str]:
    return {name for name in os.listdir(folder) if name.startswith(".")}


@pytest.mark.slow
def test_sigkill_mid_save_leaves_the_old_or_the_new_version_never_half(tmp_path):
    tlcore.atomic_save(tmp_path / "model.keras", _model(0.0).save, suffix=".keras")  # an old version of each
    tlcore.atomic_write_text(tmp_path / "record.json", RECORDS[0])
    context = multiprocessing.get_context("fork")
    rng = random.Random(0)
    interrupted = {"model.keras": 0, "record.json": 0}  # kills that landed between a temporary's creation and its rename
    for attempt in range(24):
        target = "model.keras" if attempt % 2 == 0 else "record.json"
        before = _temporaries(tmp_path)
        writer = context.Process(target=_save_forever, args=(str(tmp_path),))
        writer.start()
        deadline = time.monotonic() + 120
        while not any(name.startswith(f".{target}.") for name in _temporaries(tmp_path) - before):
            assert writer.is_alive() and time.monotonic() < deadline, f"the writer never began a {target}"
            time.sleep(0.0005)
        if target == "model.keras":
            time.sleep(rng.uniform(0.0, 0.002))  # somewhere inside Keras's save (about 4 ms on a quiet machine)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        for name in _temporaries(tmp_path) - before:  # still there: the kill came before the rename
            interrupted[next(file for file in interrupted if name.startswith(f".{file}."))] += 1
        model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
        kernel, bias = model.layers[0].get_weights()
        assert (kernel == kernel[0, 0]).all() and kernel[0, 0] in (0.0, 1.0) and not bias.any()  # all old or all new
        record = (tmp_path / "record.json").read_text()
        whole = record in RECORDS  # the whole old record or the whole new one
        assert whole, f"record.json holds {len(record):,} characters, neither version ({len(RECORDS[0]):,})"
    assert interrupted["model.keras"] >= 6 and interrupted["record.json"] >= 6, interrupted  # of 12 kills each
    leftovers = _temporaries(tmp_path)
    assert leftovers and all(name.endswith((".tmp", ".keras")) for name in leftovers)  # only abandoned temporaries


def _write_on_a_full_disk(path: str, queue) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
    try:
        tlcore.atomic_write_bytes(path, b"x" * 100_000)
        queue.put("written")
    except tlcore.StorageError as exc:
        queue.put(str(exc))


@pytest.mark.slow
def test_a_full_disk_gives_a_clear_message_and_keeps_the_previous_file(tmp_path):
    target = tmp_path / "history.csv"
    tlcore.atomic_write_text(target, "epoch,loss\n1,0.5\n")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_write_on_a_full_disk, args=(str(target), queue))
    process.start()
    process.join(30)
    message = queue.get(timeout=5)
    assert "needs free disk space" in message and "previous version is kept" in message
    assert target.read_text() == "epoch,loss\n1,0.5\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_server_settings():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["maxUploadSize"] >= 200


def test_every_limit_is_a_setting_with_a_default(monkeypatch):
    defaults = tlcore.load_settings({})
    assert defaults.max_image_pixels == 40_000_000 and defaults.max_archive_files == 20_000
    assert defaults.max_compression_ratio == 100 and defaults.max_training_jobs == 1
    changed = tlcore.load_settings({"TL_MAX_QUEUED_JOBS": "3", "TL_DATA_DIR": "/srv/lab"})
    assert changed.max_queued_jobs == 3 and changed.data_dir == Path("/srv/lab")
    with pytest.raises(ValueError, match="TL_MAX_TRAINING_JOBS must be a whole number. Received: 'two'"):
        tlcore.load_settings({"TL_MAX_TRAINING_JOBS": "two"})


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400", "-1"])
def test_a_size_setting_must_be_finite_and_not_negative(raw):
    """``nan`` passed ``value < 0``: every later check of the data folder's quota raised ValueError, and
    TL_JOB_MEMORY_GB=nan let any job through."""
    for name in ("TL_MAX_DATA_GB", "TL_JOB_MEMORY_GB", "TL_MAX_UPLOAD_PASS_SECONDS"):
        with pytest.raises(ValueError, match=rf"Setting {name} must be a finite number, 0 or more\. Received: '{raw}'"):
            tlcore.load_settings({name: raw})
    assert tlcore.load_settings({"TL_MAX_DATA_GB": "0.5"}).max_data_gb == 0.5


@pytest.mark.slow
def test_an_unexpected_page_error_shows_a_friendly_message(monkeypatch):
    from streamlit.testing.v1 import AppTest

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tlcore, "layer_views", broken)  # what the Layers page asks first
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=120)
    at.query_params["include_top"] = "False"
    at.query_params["size"] = "77"  # a size no other test asks for, so nothing is cached
    at.run()
    at.switch_page("../pages/layers.py").run()
    assert not at.exception
    assert "Something went wrong on this page" in at.error[0].value
    assert "boom" not in at.error[0].value
