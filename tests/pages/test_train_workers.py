"""AppTest: the Train page's Workers control says when one run across workers pays, and is off for what it cannot train."""

import os

from support import open_page

import tlcore
from ui.workers import progress_words

SMALL = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def test_workers_are_chosen_up_to_the_cpus_with_their_limits_said_and_off_for_settings_they_cannot_honour():
    at = open_page("../pages/train.py", transfer_spec=SMALL)
    control = at.number_input(key="workers")
    assert control.value == 1 and not control.disabled
    assert control.proto.max == tlcore.most_workers(os.cpu_count()) == min(os.cpu_count(), 64)
    assert "large datasets and several GPU machines" in control.proto.help
    assert "on a 2-core machine it is slower than 1 worker" in control.proto.help
    assert "first phase only" not in captions(at)

    at.number_input(key="workers").set_value(2).run()
    assert not at.exception, at.exception
    said = captions(at)
    assert "A run across workers trains the first phase only, on images: no feature cache" in said
    assert f"On one machine ({os.cpu_count()} CPUs) the workers share its cores" in said
    assert "so this is slower than 1 worker" in said

    at.checkbox(key="augment").check().run()
    assert at.number_input(key="workers").disabled
    assert ("One run across several workers trains the first phase only: it cannot add augmentation, so this run "
            "trains in 1 worker. Turn it off to use more.") in captions(at)
    at.number_input(key="patience").set_value(3).run()
    assert "it cannot add augmentation or early stopping, so this run trains in 1 worker. Turn them off" \
        in captions(at)


def test_a_running_job_says_on_how_many_workers_it_trains():
    progress = tlcore.BatchProgress("train", 2, 3, 1, 6)
    assert progress_words(tlcore.TrainConfig(workers=2), progress) == \
        "training on 2 workers, epoch 2 of 3, batch 1 of 6"
    assert progress_words(tlcore.TrainConfig(workers=2), None).startswith("starting 2 workers (each waits for a free CPU)")
    assert progress_words(tlcore.TrainConfig(), progress) == "epoch 2 of 3, batch 1 of 6"
