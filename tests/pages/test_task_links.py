"""AppTest: ``?curve=`` and ``?sweep=`` links that name no curve or sweep of this server.

Curves and sweeps share one task board, and a task's id sits in the address while it runs: a curve link that
names a sweep's task (or the other way round) counts as not a key at all. Such a value, like a malformed or
unknown one, gets the usual link notice and leaves the address; the rest of the page is drawn.
"""

import dataclasses
import threading
import time
import types

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from support import APP, RANDOM, open_link

import tlcore
from ui.transfer_curve import CURVE_TASK, SWEEP_TASK

POINTS = (("block1_pool", 0.30), ("block2_pool", 0.45), ("block3_pool", 0.70), ("block4_pool", 0.80),
          ("block5_pool", 0.65))
CURVE = tlcore.TransferCurve("ab" * 16, "VGG16", 224, None, None, False, "shapes", 40, 0.25,
                             tuple(tlcore.CurvePoint(depth, tap, 64 * depth, accuracy, 1.0, 1.0, False)
                                   for depth, (tap, accuracy) in enumerate(POINTS, start=1)), "block5_conv1", 3.0, 9.0)
TRIALS = (tlcore.SweepTrial(0, 256, 0.2, 1e-3, "adam", "done", 6, 0.75, 0.6),
          tlcore.SweepTrial(1, 64, 0.35, 3e-3, "rmsprop", "done", 9, 0.875, 0.4),
          tlcore.SweepTrial(2, 32, 0.1, 1e-4, "sgd", "done", 3, 0.5, 1.1))
_SPEC = tlcore.TransferSpec(backbone="VGG16", input_shape=(96, 96, 3), weights=None, num_classes=4)
SWEEP = tlcore.SweepResult("cd" * 16, {**dataclasses.asdict(_SPEC), "input_shape": [96, 96, 3]},
                           dataclasses.asdict(tlcore.TrainConfig()), dataclasses.asdict(tlcore.SweepBudget()),
                           TRIALS, True, 1.0, 20.0, "ASHA")
WORDS = {"curve": CURVE_TASK, "sweep": SWEEP_TASK}  # the kinds the pages start on the board, as their notices name them


def accepted(key: str) -> str:
    what = WORDS[key]
    return (f"in this link was not used:** `{key}` must be the key of a {what} kept on this server (32 hexadecimal "
            f"characters, 0-9 and a-f), or the id of a {what} running or just finished here (12 of those "
            f"characters). Using the default, `no {what}`.")


@pytest.fixture
def board(monkeypatch):
    """The server's board with a finished and a running task of each kind, reporting progress as the real ones
    do (a running curve: its stage; a running sweep: its trials so far). The running ones end with the test."""
    from ui.transfer_curve import task_board

    board = task_board()
    monkeypatch.setattr(board, "max_running", board.max_running + 2)
    gate = threading.Event()

    def running_curve(on_progress):
        on_progress("extracting", 40, 256)
        gate.wait(120)
        return CURVE

    def running_sweep(on_trial):
        on_trial(list(TRIALS))
        gate.wait(120)
        return SWEEP

    tasks = {
        "finished curve": board.start(CURVE_TASK, lambda on_progress: CURVE, {}, progress="on_progress").wait(10),
        "finished sweep": board.start(SWEEP_TASK, lambda on_trial: SWEEP, {}, progress="on_trial").wait(10),
        "running curve": board.start(CURVE_TASK, running_curve, {}, progress="on_progress"),
        "running sweep": board.start(SWEEP_TASK, running_sweep, {}, progress="on_trial"),
    }
    deadline = time.monotonic() + 10
    while any(task.progress is None for task in tasks.values() if task.state == "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield tasks
    gate.set()
    for task in tasks.values():
        task.wait(10)


@pytest.fixture
def waiting_job():
    """This session's own training job, waiting in line (a stand-in: Train draws its progress and Stop button)."""
    from ui import training

    snapshot = tlcore.JobSnapshot(id="job00001", run_id="run-waiting", state="queued", position=1, progress=None,
                                  history=pd.DataFrame(), elapsed=0.0, remaining=None, error=None)
    job = types.SimpleNamespace(id=snapshot.id, run_id=snapshot.run_id, owner="", finished=False,
                                config=tlcore.TrainConfig(), snapshot=lambda: snapshot, stop=lambda: None)
    jobs = training.job_queue().jobs
    jobs[job.id] = job
    yield job
    del jobs[job.id]


def notices(at: AppTest) -> str:
    return "\n".join(toast.value for toast in at.toast)


@pytest.mark.parametrize("key, page, named", [
    ("curve", "../pages/build.py", "finished sweep"),
    ("curve", "../pages/build.py", "running sweep"),
    ("sweep", "../pages/train.py", "finished curve"),
    ("sweep", "../pages/train.py", "running curve"),
])
def test_a_link_naming_a_task_of_the_other_kind_is_treated_as_an_unknown_key(board, key, page, named):
    task = board[named]
    at = open_link(page, backbone="VGG16", weights=RANDOM, **{key: task.id})
    assert not at.exception and not at.error, (at.exception, at.error)
    assert f"`{key}={task.id}` {accepted(key)}" in notices(at)
    assert key not in at.query_params  # "Copy link" passes nothing on
    assert not at.get("progress")  # no progress of the other task, read as this kind's
    assert any(b.key == f"{key}-start" for b in at.button)  # the section, as without the link
    if key == "sweep":
        assert any(b.label == "Train" for b in at.button)  # the page goes on below the sweep


def test_a_sweep_link_naming_a_curve_task_leaves_trains_own_progress_and_stop_button(board, waiting_job):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(weights=RANDOM, backbone="VGG16", sweep=board["running curve"].id)
    at.session_state["job_id"] = waiting_job.id
    at.run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any(b.label == "Train" for b in at.button)
    assert any("Waiting in line: position 1" in block.value for block in at.info)
    assert any(b.key == f"stop-{waiting_job.id}" for b in at.button)


@pytest.mark.parametrize("key, page, named, shown", [
    ("curve", "../pages/build.py", "finished curve", "The probe peaks at block4_pool"),
    ("curve", "../pages/build.py", "running curve", "One pass over the images: 40 of 256"),
    ("sweep", "../pages/train.py", "finished sweep", "Best: trial 1 (64 hidden units"),
    ("sweep", "../pages/train.py", "running sweep", "3 of 12 trials finished"),
])
def test_a_link_naming_a_task_of_its_own_kind_still_opens_it(board, key, page, named, shown):
    task = board[named]
    at = open_link(page, backbone="VGG16", weights=RANDOM, **{key: task.id})
    assert not at.exception and not at.error and not at.toast, (at.exception, at.error, at.toast)
    words = [block.value for block in at.success] + [bar.proto.text for bar in at.get("progress")]
    assert any(shown in text for text in words), words
    assert at.query_params[key] == (task.result.key if task.state == "done" else task.id)


@pytest.mark.parametrize("key, page", [("curve", "../pages/build.py"), ("sweep", "../pages/train.py")])
@pytest.mark.parametrize("raw, shown", [
    ("../../etc/passwd", "`{key}=../../etc/passwd`"),  # not escaped inside the code span: what the link holds
    ("a`b*c_d.e", "``{key}=a`b*c_d.e``"),  # a backtick does not end the span
    ("0" * 32, "`{key}=" + "0" * 32 + "`"),  # a key, but of nothing on this server
    ("x" * 500, "`{key}=" + "x" * 57 + "...`"),
])
def test_a_bad_curve_or_sweep_value_gets_the_link_notice_and_leaves_the_address(key, page, raw, shown):
    at = open_link(page, backbone="VGG16", weights=RANDOM, **{key: raw})
    assert not at.exception and not at.error
    message = notices(at)
    assert f"{shown.format(key=key)} {accepted(key)}" in message, message
    assert len(at.toast) == 1
    assert key not in at.query_params
    assert not any("not on this server" in block.value for block in at.info)  # the old, garbled words are gone
    if key == "sweep":
        assert any(b.label == "Train" for b in at.button)
