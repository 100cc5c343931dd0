"""Server tasks: a curve or sweep goes on in a thread, reports progress, fails in words, and is bounded."""

import threading

import pytest

import tlcore


def _work(size: int, on_progress, gate: threading.Event):
    for done in range(1, size + 1):
        on_progress("step", done, size)
    gate.wait(10)
    if size < 0:
        raise tlcore.ConfigError("Size must be 0 or more. Received: -1")
    return size * 2


def test_a_task_reports_progress_and_its_result_and_the_board_bounds_running_tasks():
    board, gate = tlcore.TaskBoard(max_running=1), threading.Event()
    task = board.start("curve", _work, dict(size=3, gate=gate), progress="on_progress", owner="ann")
    with pytest.raises(tlcore.ConfigError, match="At most 1 curves and sweeps run at once .* while 1 run"):
        board.start("sweep", _work, dict(size=1, gate=gate), progress="on_progress")
    gate.set()
    task.wait(10)
    assert (task.state, task.result, task.progress, task.error) == ("done", 6, ("step", 3, 3), None)
    assert board.get(task.id) is task and board.get("nope") is None and board.get(None) is None


def test_a_failing_task_keeps_the_message_in_words():
    gate = threading.Event()
    gate.set()
    task = tlcore.TaskBoard().start("curve", _work, dict(size=-1, gate=gate), progress="on_progress").wait(10)
    assert task.state == "failed" and task.error == "Size must be 0 or more. Received: -1" and task.result is None


def test_the_same_request_started_twice_starts_one_task():
    """A button clicked twice before the page changed: the second run of the page asks again, and gets the same."""
    board, gate = tlcore.TaskBoard(max_running=2), threading.Event()
    first = board.start("curve", _work, dict(size=1, gate=gate), progress="on_progress", request="click-1")
    assert board.start("curve", _work, dict(size=1, gate=gate), progress="on_progress", request="click-1") is first
    other = board.start("curve", _work, dict(size=1, gate=gate), progress="on_progress", request="click-2")
    assert other is not first  # a second task: the board's limit of 2 is reached only now
    with pytest.raises(tlcore.ConfigError, match="At most 2 curves and sweeps"):
        board.start("curve", _work, dict(size=1, gate=gate), progress="on_progress", request="click-3")
    gate.set()
    assert first.wait(10).result == other.wait(10).result == 2
