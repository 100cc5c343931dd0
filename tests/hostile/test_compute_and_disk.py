"""Uploads that cost compute or disk rather than memory are refused before Keras spends either.

A 3 MB ``.keras`` of one 63x63 convolution over a 1024x1024 input fits the parameter and
activation budgets, yet its first prediction took 235 s (8 CPU-minutes): ``TL_MAX_GFLOPS``
refuses it before any pass. A ``.keras`` whose members declare ~900 MiB used to be unpacked
by Keras: a fourth member makes it unpack every member into the temporary folder, and the
weights member is read whole; here each crafted file is loaded in a child process whose
TMPDIR is watched, and must be refused at once with nothing big written.
"""

import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import keras
import pytest

import tlcore
from tlcore.models.cost import GFLOP, check_model_cost, measure_model
from tlcore.models.scopes import shapes_only

ROOT = Path(__file__).resolve().parents[2]
MB = 2**20
BLOB = 900 * MB
"""What the crafted members declare: about the 940 MiB the finding saw written to the temporary folder."""


def convolution_63(inputs: keras.KerasTensor) -> keras.Model:
    """One Conv2D(64, 63x63, same) over a 1024x1024x3 input: 762,112 parameters, 268 MB of activations."""
    return keras.Model(inputs, keras.layers.Conv2D(64, 63, padding="same")(inputs), name="conv63")


def test_one_63x63_convolution_at_1024_is_over_the_compute_budget():
    with shapes_only():
        cost = measure_model(convolution_63(keras.Input((1024, 1024, 3))))
    assert cost.params == 63 * 63 * 3 * 64 + 64
    assert cost.activation_bytes < 300 * MB  # within TL_MAX_ACTIVATION_MB: memory was never the problem
    assert cost.flops == 1024 * 1024 * 64 * 63 * 63 * 3  # 799 GFLOPs: every output takes 63x63x3 multiply-adds
    with pytest.raises(tlcore.BudgetError, match=r"at most 600 GFLOPs \(billions of multiply-adds\) for one image "
                                                 r"on this server \(TL_MAX_GFLOPS\)\. Received: 799\.1 GFLOPs"):
        check_model_cost(cost, described="conv63", params_advice="", activation_advice="")


def test_a_3_mb_upload_of_that_convolution_is_refused_before_its_first_pass(tmp_path):
    path = tmp_path / "conv63.keras"
    convolution_63(keras.Input((1024, 1024, 3))).save(path)  # 3 MB of weights; never called
    assert path.stat().st_size < 4 * MB
    started = time.perf_counter()
    with pytest.raises(
        tlcore.ModelFileError,
        match=r"A model may take at most 600 GFLOPs \(billions of multiply-adds\) for one image on this server "
              r"\(TL_MAX_GFLOPS\)\. Received: 799\.1 GFLOPs \('conv63.keras', 2 layers\); load a model with a "
              r"smaller input or smaller, fewer convolutions",
    ):
        tlcore.load_model_file(path)
    assert time.perf_counter() - started < 10


def test_the_compute_budget_is_read_at_call_time(monkeypatch):
    with shapes_only():
        cost = measure_model(convolution_63(keras.Input((64, 64, 3))))  # 3.1 GFLOPs
    check_model_cost(cost, described="conv63", params_advice="", activation_advice="")
    monkeypatch.setenv("TL_MAX_GFLOPS", "3")
    assert 3 * GFLOP < cost.flops < 4 * GFLOP
    with pytest.raises(tlcore.BudgetError, match=r"at most 3 GFLOPs .*Received: 3\.1 GFLOPs \(conv63\); use"):
        check_model_cost(cost, described="conv63", params_advice="", activation_advice="")


# --- Archives that unpack to far more than they store ------------------------------------------------

def zeros_crc(head: bytes, zeros: int) -> int:
    crc, block = zlib.crc32(head), bytes(MB)
    for start in range(0, zeros, MB):
        crc = zlib.crc32(block[:min(MB, zeros - start)], crc)
    return crc


def deflated_zeros(head: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``head`` then ``zeros`` zero bytes, made in milliseconds.

    After a full flush the compressor forgets everything, so each further MiB of zeros
    compresses to the same bytes: compress one and repeat it.
    """
    assert zeros % MB == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(MB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return start + block * (zeros // MB) + compressor.flush()


def write_zip(path: Path, members: list[dict]) -> Path:
    """Write a zip by hand: members may end in a hole of zeros (a sparse file) and may lie in the directory.

    Each member: ``name``, ``data`` (the stored bytes), ``size`` and ``crc`` (of the unpacked
    bytes), ``method`` (stored or deflated), ``hole`` (zero bytes left unwritten after
    ``data``, stored members only) and ``declared`` (the compressed size the directory
    claims, if not the true one).
    """
    directory = b""
    with open(path, "wb") as handle:
        for member in members:
            name, data, hole = member["name"].encode(), member["data"], member.get("hole", 0)
            offset, method = handle.tell(), member.get("method", zipfile.ZIP_STORED)
            compressed = len(data) + hole
            fields = (20, 0, method, 0, 0x21, member["crc"], compressed, member["size"], len(name), 0)
            handle.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + name + data)
            handle.seek(hole, os.SEEK_CUR)
            declared = member.get("declared", compressed)
            directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, member["crc"],
                                     declared, member["size"], len(name), 0, 0, 0, 0, 0, offset) + name
        start = handle.tell()
        handle.write(directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                                             len(directory), start, 0))
    return path


def crafted_files(folder: Path) -> dict[str, Path]:
    """A small image classifier saved (``honest``), and its members with 900 MiB declared four ways."""
    model = keras.Sequential([keras.Input((3, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(41)])
    model.save(folder / "small.keras")
    with zipfile.ZipFile(folder / "small.keras") as archive:
        own = [{"name": name, "data": archive.read(name), "size": archive.getinfo(name).file_size,
                "crc": archive.getinfo(name).CRC} for name in ("metadata.json", "config.json")]
        weights = archive.read("model.weights.h5")
    padded = {"name": "model.weights.h5", "size": len(weights) + BLOB, "crc": zeros_crc(weights, BLOB)}
    stored = {**padded, "data": weights, "hole": BLOB}  # valid HDF5, then zeros: h5py reads it
    deflated = {**padded, "data": deflated_zeros(weights, BLOB), "method": zipfile.ZIP_DEFLATED}
    honest = {"name": "model.weights.h5", "data": weights, "size": len(weights), "crc": zlib.crc32(weights)}
    asset = {"name": "assets/blob", "data": b"", "size": BLOB, "crc": zeros_crc(b"", BLOB), "hole": BLOB}
    return {
        "honest": folder / "small.keras",
        # ~1,000:1: caught by the compression ratio
        "deflated": write_zip(folder / "deflated.keras", [*own, deflated]),
        # 1:1 and within TL_MAX_MODEL_FILE_MB, but far more than 1,517 parameters need
        "stored": write_zip(folder / "stored.keras", [*own, stored]),
        # a 1 MB file whose directory claims 18 MB compressed: a 50:1 ratio that is a lie
        "lying": write_zip(folder / "lying.keras", [*own, {**deflated, "declared": BLOB // 50}]),
        # a fourth member: Keras unpacks every member into the temporary folder
        "assets": write_zip(folder / "assets.keras", [*own, honest, asset]),
    }


EXPECTED = {
    "deflated": r"Model file members may be compressed at most 100:1 \(TL_MAX_COMPRESSION_RATIO\)\. Received: "
                r"'model.weights.h5' in 'deflated.keras' at [\d,]+:1",
    "stored": r"The model.weights.h5 of a model file may declare at most 1\.1 MB for the 1,517 parameters in 2 "
              r"variables its config.json describes .*Received: 900\.0 MB declared in 'stored.keras'",
    "lying": r"A model file's archive members must each hold the compressed bytes its directory declares, apart "
             r"from the others\. Received: 'model.weights.h5' in 'lying.keras' declares 18,874,\d+ compressed bytes",
    "assets": r"A model file may hold only config.json, metadata.json and model.weights.h5, each once: .* "
              r"Received: 'assets/blob' in 'assets.keras'",
}

CHILD = r"""
import json, resource, sys, time
import tlcore

paths = json.loads(sys.argv[1])
tlcore.load_model_file(paths.pop("honest"))  # Keras and TensorFlow loaded and warm before the limit

def vm_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmSize:"))
    return int(line.split()[1]) // 1024

limit = (vm_mb() + 600) * 2**20  # a model read whole (900 MiB) does not fit
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {}
for case, path in paths.items():
    started = time.perf_counter()
    try:
        tlcore.load_model_file(path)
        outcome = "loaded"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    results[case] = [outcome, time.perf_counter() - started]
print(json.dumps(results))
"""


def disk_use(folder: Path) -> int:
    """Bytes of disk the files under ``folder`` take (allocated blocks: holes take none)."""
    used = 0
    for base, _, names in os.walk(folder):
        for name in names:
            try:
                used += os.lstat(os.path.join(base, name)).st_blocks * 512
            except OSError:  # removed meanwhile
                pass
    return used


@pytest.mark.slow
def test_members_declaring_900_mib_are_refused_at_once_and_nothing_big_is_unpacked(tmp_path):
    uploads, temporary = tmp_path / "uploads", tmp_path / "tmp"
    uploads.mkdir()
    temporary.mkdir()
    files = crafted_files(uploads)
    assert disk_use(uploads) < 4 * MB  # the stored ones are sparse: their zeros are holes
    assert max(path.stat().st_size for path in (files["deflated"], files["lying"])) < 1 * MB
    before = {path.name for path in uploads.iterdir()}
    peaks = {"tmp": 0, "uploads": 0}
    done = threading.Event()

    def watch() -> None:
        baseline = disk_use(uploads)
        while not done.is_set():
            peaks["tmp"] = max(peaks["tmp"], disk_use(temporary))
            peaks["uploads"] = max(peaks["uploads"], disk_use(uploads) - baseline)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps({case: str(path) for case, path in files.items()})],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(ROOT)},
        )
    finally:
        done.set()
        watcher.join()
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(results, indent=1), f"peak disk use: {peaks}")
    for case, pattern in EXPECTED.items():
        outcome, seconds = results[case]
        assert outcome.startswith("ModelFileError: "), (case, outcome)
        assert re.search(pattern, outcome), (case, outcome)
        assert seconds < 2, (case, seconds)
    assert peaks["tmp"] < 1 * MB and peaks["uploads"] < 1 * MB
    assert {path.name for path in uploads.iterdir()} == before


def test_a_trained_model_saved_with_adam_is_within_its_weights_size_limit(tmp_path):
    """Adam keeps two slots a weight: a fully trainable model's weights file holds ~12 bytes a parameter."""
    import numpy as np

    from tlcore.models.model_files import weights_size_limit

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile("adam", "mse")
    model.train_on_batch(np.zeros((2, 32, 32, 3), "float32"), np.zeros((2, 3), "float32"))
    model.save(tmp_path / "adam.keras")
    with zipfile.ZipFile(tmp_path / "adam.keras") as archive:
        declared = archive.getinfo("model.weights.h5").file_size
    assert declared < weights_size_limit(model) < 2 * MB
    loaded = tlcore.load_model_file(tmp_path / "adam.keras")
    assert loaded.count_params() == model.count_params()
