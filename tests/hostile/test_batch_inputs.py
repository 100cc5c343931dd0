"""Hostile batch inputs: zip members that are not images, or far larger than any image, are skipped
with the reason after reading their first bytes only; cells of the CSV download that a spreadsheet
would run as a formula are neutralised."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from support import image_bytes, zip_of

import tlcore
from tlcore.data.intake import image_format, max_image_file_bytes

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_model(classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(pooled))


def test_members_are_judged_by_their_first_bytes_and_declared_size(monkeypatch):
    monkeypatch.setenv("TL_MAX_IMAGE_PIXELS", "1000")  # files up to 8,000 bytes and 16 MiB of metadata
    monkeypatch.setenv("TL_MAX_COMPRESSION_RATIO", "5000")  # zeros compress 1000:1; the ratio check is not tested here
    limit = max_image_file_bytes(tlcore.load_settings())
    assert limit == 1000 * 8 + 16 * MiB
    archive = zip_of({"ok.png": image_bytes((30, 30), seed=1), "zeros.png": bytes(2 * MiB),
                        "huge.png": PNG_SIGNATURE + bytes(limit), "empty.jpg": b"",
                        "inner.zip": zip_of({"a.png": image_bytes()})})
    items = tlcore.batch_inputs([("up.zip", archive), ("plain.png", b"GIF89a but no more")])
    result = tlcore.predict_batch(tiny_model(), items, backbone="MobileNetV2", labels=["a", "b", "c"])
    assert result.table["file"].tolist() == ["up.zip/ok.png"]
    reasons = dict(s.split(": ", 1) for s in result.skipped)
    assert list(reasons) == ["up.zip/zeros.png", "up.zip/huge.png", "up.zip/empty.jpg", "up.zip/inner.zip",
                             "plain.png"]
    assert reasons["up.zip/zeros.png"] == (
        "An image must be JPEG, PNG, WebP, BMP, GIF or TIFF, recognised by its first bytes. "
        "Received: a file starting 00 00 00 00 00 00 00 00 (not read further)")
    assert reasons["up.zip/inner.zip"].endswith("Received: a file starting 50 4b 03 04 14 00 00 00 (not read further)")
    assert reasons["up.zip/huge.png"] == (
        f"An image file may be at most {limit:,} bytes (8 bytes for each of the TL_MAX_IMAGE_PIXELS=1,000 pixels, "
        f"and 16 MiB of metadata). Received: {limit + 8:,} bytes (not read)")
    assert reasons["up.zip/empty.jpg"] == "An image file must not be empty. Received: 0 bytes"
    assert reasons["plain.png"].endswith("Received: 'plain.png', which is not an image in any of these "
                                         "formats.")  # a GIF's signature lets it through to the decoder, which refuses


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_allowed_format_passes_the_first_bytes_check(fmt):
    assert image_format(image_bytes((20, 20), fmt=fmt)) == fmt
    assert image_format(b"MM\x00\x2a" + bytes(12)) == "TIFF" and image_format(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert image_format(b"%PDF-1.7") is None and image_format(b"\x00\x00\x00\x0cjP  ") is None  # JPEG 2000: not allowed


CHILD = r"""
import json, resource, sys, zipfile, io
import keras, numpy as np
import tlcore

MiB = 2**20

def vm_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmSize:"))
    return int(line.split()[1]) // 1024

def peak_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmPeak:"))
    return int(line.split()[1]) // 1024

buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
    archive.writestr("photos/ok.png", open(sys.argv[1], "rb").read())
    for name, head, mib in (("photos/zeros.jpg", b"", 300), ("photos/fake.png", b"\x89PNG\r\n\x1a\n", 500)):
        with archive.open(name, "w") as member:  # streamed, never in memory
            member.write(head)
            chunk = bytes(MiB)
            for _ in range(mib):
                member.write(chunk)
data = buffer.getvalue()
del buffer

keras.utils.set_random_seed(0)
inputs = keras.Input((32, 32, 3))
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
warm = tlcore.batch_inputs([("warm.png", open(sys.argv[1], "rb").read())])
tlcore.predict_batch(model, warm, backbone="MobileNetV2", labels=["a", "b", "c"])  # traced, thread pools made

start = vm_mb()
limit = (start + int(sys.argv[2])) * MiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
items = tlcore.batch_inputs([("big.zip", data)])
result = tlcore.predict_batch(model, items, backbone="MobileNetV2", labels=["a", "b", "c"])
print(json.dumps({"zip_bytes": len(data), "files": result.table["file"].tolist(), "skipped": list(result.skipped),
                  "grew_mb": peak_mb() - start}))
"""
HEADROOM_MB = 200
"""Address space the warm child may add: one small image's pass fits; a 300 or 500 MiB member does not."""


@pytest.mark.slow
def test_a_small_zip_of_huge_members_is_handled_in_little_memory(tmp_path):
    """Huge members in a 1 MB zip: 300 MiB of zeros (small enough to be an image: its first bytes say it is
    not), and a PNG signature then 500 MiB of zeros (larger than any image may be). Batch prediction read each
    whole before finding it was not an image; now the declared size and the first bytes decide."""
    image = tmp_path / "ok.png"
    image.write_bytes(image_bytes((40, 40), seed=5))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TL_DATA_DIR": str(tmp_path / "data"), "MALLOC_ARENA_MAX": "2",
           "TL_PRECISION": "float32", "TL_MAX_COMPRESSION_RATIO": "5000"}  # zeros compress 1000:1
    done = subprocess.run([sys.executable, "-c", CHILD, str(image), str(HEADROOM_MB)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["zip_bytes"] < MiB
    assert found["files"] == ["big.zip/photos/ok.png"]
    assert found["grew_mb"] < HEADROOM_MB < 300
    reasons = dict(s.split(": ", 1) for s in found["skipped"])
    assert list(reasons) == ["big.zip/photos/zeros.jpg", "big.zip/photos/fake.png"]
    assert reasons["big.zip/photos/zeros.jpg"].startswith("An image must be JPEG, PNG, WebP, BMP, GIF or TIFF, "
                                                          "recognised by its first bytes. Received: a file starting 00")
    assert reasons["big.zip/photos/fake.png"].startswith("An image file may be at most 336,777,216 bytes")
    assert reasons["big.zip/photos/fake.png"].endswith(f"Received: {500 * MiB + 8:,} bytes (not read)")


DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def test_csv_cells_a_spreadsheet_would_run_are_neutralised():
    """OWASP's CSV injection advice: a cell starting with = + - @ tab or CR gets a leading single quote."""
    formula = '=HYPERLINK("http://x","y").png'
    labels = ["@SUM(1+1)", "-2+3", "+cmd|' /C calc'!A0"]  # whichever is top-1, the cell starts dangerously
    archive = zip_of({"@evil/-1.png": image_bytes(seed=2), "\tnote.txt": b"=1+1"})
    files = [(formula, image_bytes(seed=1)), ("plain.png", image_bytes(seed=3)), ("pack.zip", archive),
             ("+bad.png", b"not an image")]
    result = tlcore.predict_batch(tiny_model(), tlcore.batch_inputs(files), backbone="MobileNetV2", labels=labels)
    assert result.table["file"].tolist() == [formula, "plain.png", "pack.zip/@evil/-1.png"]  # the table is as named
    rows = list(csv.reader(io.StringIO(result.csv().decode("utf-8"))))
    assert rows[0] == ["file", "top-1", "probability", "top-5"]
    assert [row[0] for row in rows[1:]] == ["'" + formula, "plain.png", "pack.zip/@evil/-1.png",
                                           "pack.zip/\tnote.txt", "'+bad.png"]
    for row, top in zip(rows[1:4], result.table.itertuples()):
        assert row[1] == "'" + top._2 and row[3] == "'" + top._4  # the labels, and the top-5 that starts with one
        assert float(row[2]) == pytest.approx(top.probability)  # numbers are left as numbers
    for row in rows[1:]:
        assert not any(cell.startswith(DANGEROUS) for cell in row), row
