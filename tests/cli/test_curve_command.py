"""``transfer-lab curve``: the transfer curve from the command line, in Build's words (a subprocess, offline)."""

import csv
import io
import json

import pytest
from support import class_folders, transfer_lab


@pytest.fixture
def images(tmp_path):
    return class_folders(tmp_path, 5, red_cats=True)


@pytest.mark.slow
def test_curve_prints_every_tap_chance_and_builds_recommendation(images):
    args = ["curve", images / "images", "--backbone", "MobileNetV2", "--size", 32, "--weights", "random"]
    done = transfer_lab(*args, data_dir=images)
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

    again = transfer_lab(*args, "--csv", data_dir=images)  # the kept curve, as CSV rows
    rows = list(csv.DictReader(io.StringIO(again.stdout)))
    assert again.returncode == 0 and [r["tap"] for r in rows] == [t[1] for t in taps]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(accuracies, abs=1e-4)


@pytest.mark.slow
def test_curve_help_and_bad_input_exit_2_without_a_traceback(images):
    helped = transfer_lab("curve", "--help", data_dir=images)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: transfer-lab curve"), helped.stderr
    assert "--size" in helped.stdout and "--csv" in helped.stdout
    cases = [
        (["curve", images / "missing", "--weights", "random"], "The dataset must be a folder of class folders"),
        (["curve", images / "images", "--backbone", "AlexNet"], "--backbone must be one of"),
        (["curve", images / "images", "--weights", images / "nope.h5"], "--weights must be imagenet, random"),
        (["curve", images / "images", "--size", 0, "--weights", "random"], "--size must be a positive number"),
    ]
    for args, words in cases:
        done = transfer_lab(*args, data_dir=images)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    usage = transfer_lab("curve", data_dir=images)
    assert usage.returncode == 2 and "the following arguments are required: DATASET" in usage.stderr
