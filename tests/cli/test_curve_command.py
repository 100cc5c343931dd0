"""``transfer-lab curve``: the transfer curve from the command line, in Build's words (a subprocess, offline)."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def run(*args, data_dir: Path, timeout=600):
    environ = {**os.environ, "TL_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tlcore_cli", *map(str, args)], capture_output=True, text=True,
                          env=environ, timeout=timeout, cwd=data_dir)


@pytest.fixture
def images(tmp_path):
    for label, seed in (("cat", 0), ("dog", 50)):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(5):
            pixels = np.random.default_rng(seed + i).integers(0, 255, (40, 40, 3), dtype=np.uint8)
            pixels[..., 0] = 255 if label == "cat" else 0  # the classes differ in colour: probes can tell them
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    return tmp_path


@pytest.mark.slow
def test_curve_prints_every_tap_chance_and_builds_recommendation(images):
    args = ["curve", images / "images", "--backbone", "MobileNetV2", "--size", 32, "--weights", "random"]
    done = run(*args, data_dir=images)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    taps = [line.split("\t") for line in lines if line.split("\t")[0].isdigit()]
    assert len(taps) >= 3 and [int(t[0]) for t in taps] == sorted(int(t[0]) for t in taps)
    accuracies = [float(t[3].removeprefix("validation ")) for t in taps]
    assert all(0 <= a <= 1 for a in accuracies)
    chance = next(line for line in lines if line.startswith("chance\t"))
    assert float(chance.split("\t")[1]) == pytest.approx(0.5, abs=0.25)  # 5 and 5 images, split by class
    key = next(line for line in lines if line.startswith("curve\t")).split("\t")[1]
    kept = json.loads((images / "curves" / f"{key}.json").read_text())
    best = max(point["accuracy"] for point in kept["points"])
    sentence = next(line for line in lines if line.startswith("The probe peaks at "))
    assert f"({best:.0%} against {kept['chance']:.0%} by chance)" in sentence and sentence.endswith(".")
    assert ("train from " in sentence) == (kept["train_from"] is not None)
    assert [p["tap"] for p in kept["points"]] == [t[1] for t in taps]

    again = run(*args, "--csv", data_dir=images)  # the kept curve, as CSV rows
    rows = list(csv.DictReader(io.StringIO(again.stdout)))
    assert again.returncode == 0 and [r["tap"] for r in rows] == [t[1] for t in taps]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(accuracies, abs=1e-4)


@pytest.mark.slow
def test_curve_help_and_bad_input_exit_2_without_a_traceback(images):
    helped = run("curve", "--help", data_dir=images)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: transfer-lab curve"), helped.stderr
    assert "--size" in helped.stdout and "--csv" in helped.stdout
    cases = [
        (["curve", images / "missing", "--weights", "random"], "The dataset must be a folder of class folders"),
        (["curve", images / "images", "--backbone", "AlexNet"], "--backbone must be one of"),
        (["curve", images / "images", "--weights", images / "nope.h5"], "--weights must be imagenet, random"),
        (["curve", images / "images", "--size", 0, "--weights", "random"], "--size must be a positive number"),
    ]
    for args, words in cases:
        done = run(*args, data_dir=images)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    usage = run("curve", data_dir=images)
    assert usage.returncode == 2 and "the following arguments are required: DATASET" in usage.stderr
