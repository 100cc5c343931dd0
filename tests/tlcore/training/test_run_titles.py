"""Run titles: every legend and list names a run so it can be told from the others."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd

import tlcore


def test_a_title_says_what_the_run_is_its_part_when_and_who():
    when = datetime.datetime(2026, 12, 4, 21, 15, 30)
    assert (tlcore.run_title("MobileNetV2 on target shapes", when, role="scratch", owner="alice")
            == "MobileNetV2 on target shapes, from scratch · 4 Dec 21:15 · alice")
    assert (tlcore.run_title("MobileNetV2 on target shapes", when, role="transfer")
            == "MobileNetV2 on target shapes, reusing a base · 4 Dec 21:15")
    assert tlcore.run_title("VGG16 on cats.zip", None) == "VGG16 on cats.zip"
    assert tlcore.run_title("VGG16 on cats.zip", pd.NaT, role="other") == "VGG16 on cats.zip"


def test_the_runs_of_a_pair_read_differently_and_same_minute_twins_get_their_id():
    created = pd.Timestamp("2026-12-04 21:15:02")
    runs = pd.DataFrame({
        "id": ["20261204-211502-aaaaaa", "20261204-211501-bbbbbb", "20261204-211500-cccccc",
               "20261204-211500-dddddd"],
        "name": ["MobileNetV2 on develop-a-model target shapes"] * 2 + ["VGG16 on cats.zip"] * 2,
        "created": [created] * 4, "role": ["scratch", "transfer", "", ""],
        "owner": ["s1", "s1", "bob", "bob"],
    })
    titles = tlcore.run_titles(runs, owner_label=lambda owner: {"s1": "you"}.get(owner, owner))
    assert titles == {
        "20261204-211502-aaaaaa": "MobileNetV2 on develop-a-model target shapes, from scratch · 4 Dec 21:15 · you",
        "20261204-211501-bbbbbb": "MobileNetV2 on develop-a-model target shapes, reusing a base · 4 Dec 21:15 · you",
        "20261204-211500-cccccc": "VGG16 on cats.zip · 4 Dec 21:15 · bob · cccccc",
        "20261204-211500-dddddd": "VGG16 on cats.zip · 4 Dec 21:15 · bob · dddddd",
    }
    assert len(set(titles.values())) == 4


def test_a_record_titles_itself_as_its_listing_row_does(tmp_path):
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(48, 48, 3), weights=None)
    store = tlcore.RunStore(tmp_path)
    run_id = store.create(spec, tlcore.TrainConfig(epochs=1), {"name": "cats.zip", "classes": ["a", "b"]},
                          owner="carol", group="g", role="scratch")
    record = store.get(run_id)
    assert record.created is not None and abs(record.created - datetime.datetime.now()).total_seconds() < 60
    listed = tlcore.run_titles(store.list())
    assert record.title() == listed[run_id]
    assert record.title().startswith("MobileNetV2 on cats.zip, from scratch · ")
    assert record.title().endswith(" · carol")
    assert record.title(owner_label=str.upper).endswith(" · CAROL")
    assert tlcore.RunRecord("not-a-date", Path("."), spec, tlcore.TrainConfig(), {}, pd.DataFrame(), None,
                            "done").created is None
