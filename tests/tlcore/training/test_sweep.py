"""Head sweeps: budgets checked first, seeded settings (the current head first), kept by key, one run's fidelity."""

import dataclasses

import numpy as np
import pytest

import tlcore
from tlcore.training.feature_cache import FeatureCache
from tlcore.training.sweep import (
    DROPOUT,
    HIDDEN_UNITS,
    LEARNING_RATE,
    STOPPED_EARLY,
    _sweep_key,
    check_sweep_spec,
    trial_settings,
)

SPEC = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, hidden_units=16)
CONFIG = tlcore.TrainConfig(epochs=3, batch_size=8, validation_fraction=0.5, early_stopping=2)


def test_budgets_are_checked_in_words_before_anything_starts():
    with pytest.raises(tlcore.ConfigError, match="2 to 64 head settings. Received: trials=100"):
        tlcore.SweepBudget(trials=100).check(cores=2, memory_gb=8)
    with pytest.raises(tlcore.ConfigError, match="1 to 2 trials at once here .* Received: concurrency=3"):
        tlcore.SweepBudget(concurrency=3).check(cores=2, memory_gb=8)
    with pytest.raises(tlcore.BudgetError, match="2 trials at once need about 1.8 GB .* than the 1 GB"):
        tlcore.SweepBudget(concurrency=2).check(cores=2, memory_gb=1)
    with pytest.raises(tlcore.ConfigError, match="patience must be from 1 to max_epochs"):
        tlcore.SweepBudget(max_epochs=3, patience=5).check(cores=2, memory_gb=8)
    tlcore.SweepBudget().check(cores=2, memory_gb=8)


def test_a_sweep_needs_a_frozen_base_and_says_why():
    with pytest.raises(tlcore.ConfigError, match=r"whole base frozen .* Received: trainable_from='block5_conv1'"):
        check_sweep_spec(dataclasses.replace(SPEC, trainable_from="block5_conv1"), CONFIG)
    with pytest.raises(tlcore.ConfigError, match="augmentation off"):
        check_sweep_spec(SPEC, dataclasses.replace(CONFIG, augment=True))
    # no validation images: every trial scored 0 and the first "won"
    with pytest.raises(tlcore.ConfigError, match=r"validation images to score the trials on .* "
                                                 r"Received: validation_fraction=0.0"):
        check_sweep_spec(SPEC, dataclasses.replace(CONFIG, validation_fraction=0.0))


@pytest.mark.parametrize("epochs, patience, grace", [(1, 1, 1), (2, 1, 2), (10, 3, 3), (10, 1, 2)])
def test_ashas_grace_period_never_passes_the_last_epoch(epochs, patience, grace):
    """The Sweep section on a Train page set to 1 epoch asked ASHA for a grace period of 2 epochs of 1: it
    raised AssertionError after the features were computed."""
    from ray.tune.schedulers import ASHAScheduler

    from tlcore.training.sweep import asha

    scheduler = asha(tlcore.SweepBudget(max_epochs=epochs, patience=patience), ASHAScheduler)
    assert scheduler.debug_string().endswith(f"Iter {grace:.3f}: None")  # its first milestone: the grace period


def test_settings_are_seeded_draws_from_tunes_spaces_with_the_current_head_first():
    settings = trial_settings(SPEC, CONFIG, tlcore.SweepBudget(trials=12, seed=4))
    assert settings[0] == {"hidden_units": 16, "dropout": 0.2, "learning_rate": 1e-3, "optimizer": "adam"}
    assert settings == trial_settings(SPEC, CONFIG, tlcore.SweepBudget(trials=12, seed=4))
    assert settings != trial_settings(SPEC, CONFIG, tlcore.SweepBudget(trials=12, seed=5))
    drawn = settings[1:]
    assert len(drawn) == 11 and all(s["hidden_units"] in HIDDEN_UNITS for s in drawn)
    assert all(DROPOUT[0] <= s["dropout"] <= DROPOUT[1] and LEARNING_RATE[0] <= s["learning_rate"] <= LEARNING_RATE[1]
               for s in drawn)
    assert len({s["optimizer"] for s in drawn}) >= 2 and len({s["learning_rate"] for s in drawn}) == 11


def test_a_sweep_is_kept_under_the_images_it_validates_on():
    """The same features, head and settings validated on other images (a dataset with copies, whose split changed
    when copies began to stay together) is another sweep, not the one stored before."""
    budget = tlcore.SweepBudget(trials=4)
    settings = trial_settings(SPEC, CONFIG, budget)
    key = _sweep_key("features", SPEC, CONFIG, budget, settings, False, np.array([0, 3, 5]))
    assert key == _sweep_key("features", SPEC, CONFIG, budget, settings, False, np.array([0, 3, 5]))
    assert key != _sweep_key("features", SPEC, CONFIG, budget, settings, False, np.array([0, 3, 6]))
    assert key != _sweep_key("features", SPEC, CONFIG, budget, settings, False)  # no copies: the key it had


def test_a_sweep_in_this_process_ranks_heads_keeps_them_and_never_runs_twice(tmp_path):
    shapes = tlcore.sample_dataset(per_class=4, size=32, seed=2)
    cache, seen = FeatureCache(tmp_path / "features"), []
    budget = tlcore.SweepBudget(trials=3, concurrency=1, max_epochs=3, patience=2, seed=1)
    common = dict(budget=budget, cache=cache, folder=tmp_path / "sweeps")
    result = tlcore.head_sweep(SPEC, shapes, CONFIG, on_trial=lambda trials: seen.append(trials), **common)
    assert [t.number for t in result.trials] == [0, 1, 2] and result.scheduler == "none"
    assert result.dataset == {"name": shapes.name, "digest": shapes.digest} and result.measured_on(shapes)
    assert not result.measured_on(tlcore.sample_dataset(per_class=4, size=32, seed=9))  # other images
    assert all(t.state == "done" and 1 <= t.epochs <= 3 and 0 <= t.score <= 1 for t in result.trials)
    assert result.default.settings == trial_settings(SPEC, CONFIG, budget)[0]
    assert result.best.score == max(t.score for t in result.trials)
    assert seen and seen[-1] == list(result.trials)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 1  # the base ran once
    seen.clear()
    again = tlcore.head_sweep(SPEC, shapes, CONFIG, on_trial=lambda trials: seen.append(trials), **common)
    assert again == dataclasses.replace(result) and seen == []  # kept: nothing trained
    spec, config = result.best_run()
    assert (spec.hidden_units, spec.dropout) == (result.best.hidden_units, result.best.dropout)
    assert (config.learning_rate, config.optimizer, config.epochs, config.early_stopping) == (
        result.best.learning_rate, result.best.optimizer, 3, 2)


def test_the_default_trial_scores_what_an_ordinary_run_of_the_default_head_scores(tmp_path):
    shapes = tlcore.sample_dataset(per_class=6, size=32, seed=3)
    cache = FeatureCache(tmp_path / "features")
    budget = tlcore.SweepBudget(trials=2, concurrency=1, max_epochs=3, patience=2)
    result = tlcore.head_sweep(SPEC, shapes, CONFIG, budget=budget, cache=cache, folder=tmp_path / "sweeps")
    spec, config = dataclasses.replace(result, trials=result.trials[:1]).best_run()  # the default as a run
    run = tlcore.train(spec, shapes, config, cache=cache)
    assert run.feature_cache
    assert run.evaluation.accuracy == pytest.approx(result.default.score, abs=1e-6)
    assert np.isfinite(result.default.val_loss)
    assert STOPPED_EARLY not in {t.state for t in result.trials}  # no ASHA in this process
