"""The transfer-lab command, run as a user runs it: in a subprocess, offline (random weights)."""

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from support import class_folders, transfer_lab


@pytest.fixture
def folder(tmp_path):
    return class_folders(tmp_path, 6)


@pytest.mark.slow
@pytest.mark.parametrize("command", [[], ["predict"], ["features"], ["train"], ["runs"], ["runs", "list"],
                                     ["runs", "show"], ["runs", "export"], ["runs", "import"],
                                     ["lite-copy"]])
def test_every_command_has_help(command, tmp_path):
    done = transfer_lab(*command, "--help", data_dir=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: transfer-lab"), done.stderr


@pytest.mark.slow
def test_bad_input_exits_2_in_the_pages_words_without_a_traceback(folder):
    cases = [
        (["predict", folder / "missing.png", "--weights", "random"], "Each image must be a file. Received: "),
        (["predict", folder / "images", "--weights", "random"], "Each image must be a file."),
        (["predict", folder / "images/cat/0.png", "--backbone", "AlexNet"], "--backbone must be one of"),
        (["runs", "show", "nope"], "Run id must name a stored run. Received: 'nope'"),
        (["runs", "import", folder / "images/cat/0.png"],
         "A run bundle must be a zip archive made by Transfer Lab's Download bundle."),
        (["train", folder / "images", "--spec", folder / "images/cat/0.png"], "--spec must be JSON text (UTF-8)."),
        (["train", folder / "images", "--spec", "no-such-spec.json"], "--spec must be a JSON object or a file holding one."),
        (["train", folder / "images", "--spec", '{"spec": {"backbone": "VGG16",}}'],
         "--spec must be JSON. Received: the JSON given, which does not parse (Expecting property name"),
        (["lite-copy", "--backbone", "AlexNet"], "--backbone must be one of"),
        (["lite-copy", "--weights", folder / "missing.h5"], "--weights must be imagenet, random or a weights file."),
    ]
    for args, words in cases:
        done = transfer_lab(*args, data_dir=folder)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    usage = transfer_lab("predict", data_dir=folder)
    assert usage.returncode == 2 and "the following arguments are required: IMAGE" in usage.stderr


@pytest.mark.slow
def test_a_train_spec_with_bad_values_is_refused_before_any_run_is_recorded(folder):
    """Each of these recorded a failed run first (one printed TensorFlow's traceback, one trained a whole phase)."""
    spec = {"backbone": "MobileNetV2", "input_shape": [32, 32, 3], "weights": None, "hidden_units": 4}
    cases = [
        ({"epochs": "3"}, "epochs must be a whole number. Received: epochs='3'"),
        ({"seed": -5}, "Seed must be from 0 to 2**32 - 1. Received: seed=-5"),
        ({"resize_mode": "zoom"}, "Resize mode must be one of ('crop', 'squash'). Received: resize_mode='zoom'"),
        ({"fine_tune_from": "nosuchlayer", "fine_tune_epochs": 1},
         "fine_tune_from must be None, 'all' or a layer of MobileNetV2's base"),
        (["abc"], "--spec must name only TransferSpec fields"),
        ({"workers": 2}, "transfer-lab train trains in one process: --spec's config must have workers 1"),
    ]
    for config, words in cases:
        (folder / "spec.json").write_text(json.dumps({"spec": spec, "config": config}))
        done = transfer_lab("train", folder / "images", "--spec", folder / "spec.json", data_dir=folder)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, (config, done.stderr)
    inline = json.dumps({"spec": {**spec, "hidden_units": "many"}})  # the JSON itself, as the help shows it
    done = transfer_lab("train", folder / "images", "--spec", inline, data_dir=folder)
    assert done.returncode == 2 and "Hidden units must be a whole number. Received: hidden_units='many'" in done.stderr
    listed = transfer_lab("runs", "list", "--csv", data_dir=folder)
    assert listed.returncode == 0 and list(csv.DictReader(io.StringIO(listed.stdout))) == []


@pytest.mark.slow
def test_predict_features_train_and_move_a_transfer_lab(folder):
    image = folder / "images/cat/0.png"
    done = transfer_lab("predict", image, image, "--backbone", "MobileNetV2", "--weights", "random", "--top", "3", "--csv",
               data_dir=folder)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] * 2 and rows[0]["image"] == str(image)
    assert sum(float(r["probability"]) for r in rows[:3]) <= 1.0 + 1e-6

    done = transfer_lab("features", image, folder / "images/dog/1.png", "--backbone", "MobileNetV2", "--weights", "random",
               "--out", folder / "f.npy", data_dir=folder)
    assert done.returncode == 0, done.stderr
    assert np.load(folder / "f.npy").shape == (2, 1280)

    (folder / "images" / "bird").mkdir()  # a third class: the run's model has three outputs, whatever the spec said
    for i in range(6):  # the cats' pictures turned upside down: other images (a cat's own bytes always train)
        Image.open(folder / "images" / "cat" / f"{i}.png").rotate(180).save(folder / "images" / "bird" / f"{i}.png")
    (folder / "spec.json").write_text(json.dumps({
        "spec": {"backbone": "MobileNetV2", "input_shape": [32, 32, 3], "weights": None, "hidden_units": 4},
        "config": {"epochs": 2, "batch_size": 4}}))
    done = transfer_lab("train", folder / "images", "--spec", folder / "spec.json", "--owner", "cli", data_dir=folder)
    assert done.returncode == 0, done.stderr
    assert "epoch 2 of 2, batch 4 of 4" in done.stderr and "100%" in done.stderr  # the progress bar
    run_id = done.stdout.split("\t")[0]
    assert any((folder / "runs" / run_id / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert json.loads((folder / "runs" / run_id / "config.json").read_text())["spec"]["num_classes"] == 3

    listed = transfer_lab("runs", "list", "--csv", data_dir=folder)
    [row] = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert row["id"] == run_id and row["owner"] == "cli" and row["status"] == "done" and row["epochs"] == "2"

    done = transfer_lab("runs", "export", run_id, "--out", folder / "run.zip", data_dir=folder)
    assert done.returncode == 0, done.stderr
    assert f"{run_id}/model.keras" in zipfile.ZipFile(folder / "run.zip").namelist()
    into = folder / "bundles"  # --out a folder: the bundle goes in it under its own name
    into.mkdir()
    done = transfer_lab("runs", "export", run_id, "--out", into, data_dir=folder)
    assert done.returncode == 0 and done.stdout.split("\t")[0] == str(into / f"transfer-lab-{run_id}.zip"), done.stderr
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    done = transfer_lab("runs", "import", folder / "run.zip", data_dir=elsewhere)
    assert done.returncode == 0 and done.stdout.split() == [run_id], done.stderr
    shown = transfer_lab("runs", "show", run_id, data_dir=elsewhere)
    about = json.loads(shown.stdout[:shown.stdout.index("\n}\n") + 2])  # then the history's table
    assert (about["id"], about["owner"], about["status"]) == (run_id, "cli", "done")
    assert "phase" in shown.stdout.split("\n}\n")[1]
    again = transfer_lab("runs", "import", folder / "run.zip", data_dir=elsewhere)
    assert again.returncode == 2 and "already" in again.stderr and "Traceback" not in again.stderr


def _start(*args, data_dir, **popen):
    import os
    import subprocess
    import sys

    from support import ROOT

    environ = {**os.environ, "TL_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tlcore_cli", *map(str, args)], env=environ, cwd=data_dir,
                            text=True, **popen)


@pytest.mark.slow
def test_ctrl_c_stops_training_at_the_next_batch_and_keeps_the_model(folder):
    """Ctrl-C marked the run failed with an empty error.txt and lost everything learned."""
    import signal
    import subprocess

    (folder / "spec.json").write_text(json.dumps({
        "spec": {"backbone": "MobileNetV2", "input_shape": [32, 32, 3], "weights": None, "hidden_units": 4},
        "config": {"epochs": 400, "batch_size": 4}}))
    process = _start("train", folder / "images", "--spec", folder / "spec.json", data_dir=folder,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = ""
    while "epoch 2 of 400" not in seen:  # the bar redraws one line: read what came so far
        chunk = process.stderr.read(64)
        assert chunk, f"training ended before its second epoch: {seen[-2000:]}"
        seen += chunk
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    err = seen + err
    assert process.returncode == 1, err[-2000:]
    assert "Stopping at the next batch" in err and "the model so far is kept" in err and "Traceback" not in err
    run_id = out.split("\t")[0]
    assert (folder / "runs" / run_id / "model.keras").is_file()
    listed = transfer_lab("runs", "list", "--csv", data_dir=folder)
    [row] = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert row["id"] == run_id and row["status"] == "stopped" and 1 <= int(row["epochs"]) < 400


@pytest.mark.slow
def test_a_reader_that_leaves_early_gets_no_traceback(folder):
    import subprocess

    process = _start("runs", "list", "--csv", data_dir=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -0` does, before the command has written anything
    err = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
