"""AppTest: Build's transfer curve and Train's head sweep open from a link, and the curve's button sets the cut."""

import dataclasses
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, RANDOM

import tlcore

POINTS = (("block1_pool", 0.30), ("block2_pool", 0.45), ("block3_pool", 0.70), ("block4_pool", 0.80),
          ("block5_pool", 0.65))


def _store_curve() -> tlcore.TransferCurve:
    """A curve as ``transfer_curve`` keeps it (the page reads the file; measuring is tested in tlcore's tests)."""
    curve = tlcore.TransferCurve(
        "ab" * 16, "VGG16", 224, None, None, False, "shapes", 40, 0.25,
        tuple(tlcore.CurvePoint(depth, tap, 64 * depth, accuracy, 1.0, 1.0, False)
              for depth, (tap, accuracy) in enumerate(POINTS, start=1)), "block5_conv1", 3.0, 9.0)
    folder = Path(os.environ["TL_DATA_DIR"]) / "curves"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{curve.key}.json").write_text(curve.to_json())
    return curve


def _open(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["weights"] = RANDOM
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_curve_link_opens_the_kept_curve_and_its_button_opens_build_at_the_cut():
    curve = _store_curve()
    at = _open("../pages/build.py", curve=curve.key)
    words = " ".join(block.value for block in at.success)
    assert "The probe peaks at block4_pool (80% against 25% by chance): train from block5_conv1" in words
    assert any("Keras code of the probes" in e.label for e in at.expander)
    [button] = [b for b in at.button if b.key == "curve-open-cut"]
    button.click().run()
    assert not at.exception, at.exception
    assert at.radio(key="training").value == "Train from a layer"
    assert at.selectbox(key="trainable_from").value == "block5_conv1"
    assert at.query_params["trainable_from"] == "block5_conv1"


def test_a_curve_of_another_base_says_so_and_does_not_set_its_cut():
    """Measured on VGG16, opened while Build starts from MobileNetV2: block5_conv1 is no layer of MobileNetV2."""
    curve = _store_curve()
    at = _open("../pages/build.py", curve=curve.key, backbone="MobileNetV2")
    assert any(w.value.startswith("This curve was measured on VGG16; Build now starts from MobileNetV2")
               for w in at.warning)
    [button] = [b for b in at.button if b.key == "curve-open-cut"]
    assert button.disabled


def test_a_curve_link_that_is_not_on_this_server_says_so():
    at = _open("../pages/build.py", curve="../../etc/passwd")
    notice = " ".join(toast.value for toast in at.toast)
    assert "`curve=../../etc/passwd` in this link was not used:** `curve` must be the key of a transfer curve" in notice
    assert "curve" not in at.query_params
    assert not at.success or all("probe peaks" not in block.value for block in at.success)


def test_a_sweep_link_opens_the_kept_sweep_with_its_table_and_the_best_heads_code(tmp_path):
    trials = (tlcore.SweepTrial(0, 256, 0.2, 1e-3, "adam", "done", 6, 0.75, 0.6),
              tlcore.SweepTrial(1, 64, 0.35, 3e-3, "rmsprop", "done", 9, 0.875, 0.4),
              tlcore.SweepTrial(2, 0, 0.1, 2e-4, "sgd", "stopped by ASHA", 3, 0.5, 1.1))
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(96, 96, 3), weights=None, num_classes=4)
    result = tlcore.SweepResult("cd" * 16, {**dataclasses.asdict(spec), "input_shape": [96, 96, 3]},
                                dataclasses.asdict(tlcore.TrainConfig()), dataclasses.asdict(tlcore.SweepBudget()),
                                trials, True, 1.0, 20.0, "ASHA")
    folder = Path(os.environ["TL_DATA_DIR"]) / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{result.key}.json").write_text(result.to_json())
    at = _open("../pages/train.py", sweep=result.key)
    words = " ".join(block.value for block in at.success)
    assert "Best: trial 1 (64 hidden units, dropout 0.35, rmsprop at 0.003) at 87.5%" in words
    assert "the current head (trial 0) 75.0%" in words
    assert any("Keras code of the best head" in e.label for e in at.expander)
    code = next(c.value for c in at.code if "Dense(64" in c.value)
    assert "RMSprop" in code
    assert not next(b for b in at.button if b.key == "sweep-keep").disabled  # stored before sweeps named their images
    other = dataclasses.replace(result, key="ef" * 16, dataset={"name": "holiday photos", "digest": "0" * 64})
    (folder / f"{other.key}.json").write_text(other.to_json())
    at = _open("../pages/train.py", sweep=other.key)  # a teammate's link, while this page trains on the sample shapes
    assert any(w.value.startswith("This sweep was measured on holiday photos; Train now uses") for w in at.warning)
    assert next(b for b in at.button if b.key == "sweep-keep").disabled  # its best head would train on other images



@pytest.mark.slow
def test_build_measures_a_curve_in_ray_and_the_link_then_opens_it(ray_address):
    at = _open("../pages/build.py", preset="custom", custom_size="32")
    [start] = [b for b in at.button if b.key == "curve-start"]
    start.click().run(timeout=300)
    assert not at.exception, at.exception
    task_id = at.query_params["curve"]
    from ui.transfer_curve import task_board

    task = task_board().get(task_id)
    assert task is not None and task.kind == "transfer curve"
    task.wait(600)
    assert task.state == "done", task.error
    at.run(timeout=120)
    words = " ".join(block.value for block in at.success)
    assert f"The probe peaks at {task.result.peak.tap}" in words
    assert at.query_params["curve"] == task.result.key  # the link now names the kept curve
    again = _open("../pages/build.py", curve=task.result.key)
    assert f"The probe peaks at {task.result.peak.tap}" in " ".join(block.value for block in again.success)


@pytest.mark.slow
def test_train_sweeps_in_ray_tune_and_keeps_the_best_as_an_ordinary_run(ray_address):
    from support import open_page

    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)
    at = open_page("../pages/train.py", transfer_spec=spec, epochs=3, sweep_trials=3, sweep_patience=2)
    [start] = [b for b in at.button if b.key == "sweep-start"]
    start.click().run(timeout=300)
    assert not at.exception, at.exception
    from ui.transfer_curve import task_board

    task = task_board().get(at.query_params["sweep"])
    assert task is not None and task.kind == "head sweep"
    task.wait(600)
    assert task.state == "done", task.error
    at.run(timeout=120)
    result = task.result
    assert result.scheduler == "ASHA" and len(result.trials) == 3
    assert f"Best: trial {result.best.number}" in " ".join(block.value for block in at.success)
    [keep] = [b for b in at.button if b.key == "sweep-keep"]
    keep.click().run(timeout=120)
    from ui import training

    job = training.job_queue().jobs[at.session_state["job_id"]]
    snapshot = job.wait(600)
    assert snapshot.state == "done", snapshot.error
    record = training.run_store().get(snapshot.run_id)
    assert record.spec.hidden_units == result.best.hidden_units
    assert record.result.accuracy == pytest.approx(result.best.score, abs=1e-6)  # the trial, as a run
    assert record.role == tlcore.SWEEP_BEST and "best head of a sweep" in record.title()
    runs = open_page("../pages/runs.py", backbone="VGG16", opened_run=record.id)  # chosen on its own validation images
    assert any("won a sweep by its score on these same validation images" in c.value for c in runs.caption)
