"""The Train page says in one line where a job will train and whether it would wait."""

import os

from support import open_page

import tlcore


def test_the_train_page_says_where_jobs_train_and_that_a_new_one_starts_at_once(monkeypatch):
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "1")  # a job this machine has room for, however busy it is
    at = open_page("../pages/train.py", transfer_spec=tlcore.TransferSpec(
        backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16))
    assert not at.exception, at.exception
    lines = [c.value for c in at.caption if c.value.startswith("Jobs train ")]
    assert len(lines) == 1, [c.value for c in at.caption]
    assert lines[0].startswith(f"Jobs train on this machine ({os.cpu_count()} CPUs, no GPU, ")
    assert lines[0].endswith("memory free). A new job starts at once.")
