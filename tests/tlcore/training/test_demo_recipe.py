"""The develop-a-model demo's real recipe, its source trained once for every test here: the reused base's
margin over training from scratch, the transfer curve on that base (it differs across depth), and head
sweeps on it (one at least as good as the default), in this process as in a notebook and in Ray."""

import dataclasses

import keras
import pytest

import tlcore
from tlcore.training.demo import TARGET_CLASSES
from tlcore.training.feature_cache import FeatureCache

pytestmark = pytest.mark.slow
RECIPE = tlcore.DEMO_RECIPE  # MobileNetV2 at 48 px, seed 0: the source learns the sample shapes


@pytest.fixture(scope="module")
def source():
    """The demo's source run, trained as ``train_demo`` trains it (once for this module: about 45 s)."""
    keras.backend.clear_session()
    return tlcore.train(RECIPE.source_spec, RECIPE.source_dataset(), RECIPE.seeded(RECIPE.source_config))


@pytest.fixture(scope="module")
def source_base(source, tmp_path_factory):
    """The source model saved as the app saves a run's model."""
    path = tmp_path_factory.mktemp("source") / "model.keras"
    source.model.save(path)
    return str(path)


def test_the_reused_base_beats_the_same_target_from_scratch_by_a_clear_margin(source):
    """The demo's own recipe, in this process (no Ray), at one seed (``DEMO_RECIPE``'s note has more)."""

    def trainer(spec, dataset, config):  # the source's run is the module's: the same call, made once
        if (spec, config) == (RECIPE.source_spec, RECIPE.seeded(RECIPE.source_config)):
            assert dataset.digest == RECIPE.source_dataset().digest
            return source
        return tlcore.train(spec, dataset, config)

    result = tlcore.train_demo(RECIPE, trainer=trainer)
    print(f"\ndevelop-a-model demo, seed {RECIPE.seed}: {result.summary()}")
    assert result.source is source
    accuracies = (r.evaluation.accuracy for r in (result.source, result.transfer, result.scratch))
    source_accuracy, transfer, scratch = accuracies
    assert source_accuracy >= 0.8  # the source learned the sample shapes
    assert transfer - scratch == result.gap >= 0.2  # a clear margin: measured +43.8 points at seed 0
    assert result.transfer.class_names == TARGET_CLASSES and len(result.transfer.evaluation.truth) == 80
    assert len(result.transfer.history) == len(result.scratch.history) == RECIPE.target_config.epochs


@pytest.fixture(scope="module")
def curve(source_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("curve")
    return tlcore.transfer_curve("MobileNetV2", RECIPE.target_dataset(), base_model=source_base, input_size=48,
                                 validation_fraction=0.625, seed=0, cache=FeatureCache(root / "features"),
                                 folder=root / "curves")


def test_the_curve_on_the_target_shapes_rises_past_the_first_block(curve):
    accuracies = [point.accuracy for point in curve.points]
    first, later = accuracies[0], max(accuracies[len(accuracies) // 3:])
    # measured (seed 0): the first tap 30%, the peak 66.25% at block_11_add, the last 56.25%; chance 25%
    assert later - first >= 0.2, curve.table().to_string()
    assert curve.peak.depth > 1 and curve.chance == pytest.approx(0.25)
    assert curve.train_from is not None and curve.train_from in tlcore.trainable_from_choices("MobileNetV2")
    assert f"the probe peaks at {curve.peak.tap}" in curve.recommendation()


def test_the_curve_in_ray_tasks_reads_the_same_files_and_scores_alike(curve, source_base, tmp_path, ray_address):
    root = curve_root = tmp_path
    in_ray = tlcore.transfer_curve("MobileNetV2", RECIPE.target_dataset(), base_model=source_base, input_size=48,
                                   validation_fraction=0.625, seed=0, cache=FeatureCache(root / "features"),
                                   folder=curve_root / "curves", use_ray=True)
    assert [p.tap for p in in_ray.points] == [p.tap for p in curve.points]
    for here, there in zip(curve.points, in_ray.points):  # one core per task may round sums differently
        assert abs(here.accuracy - there.accuracy) <= 0.05, (here, there)


def test_a_sweep_on_the_sample_shapes_finds_a_head_at_least_as_good_as_the_default(source_base, tmp_path):
    shapes = tlcore.sample_dataset(per_class=16, size=48, seed=7)  # images the source never saw
    spec = dataclasses.replace(RECIPE.target_spec, base_model=source_base, hidden_units=0)
    config = tlcore.TrainConfig(epochs=15, batch_size=8, validation_fraction=0.5, early_stopping=3)
    cache = FeatureCache(tmp_path / "features")
    sweep = tlcore.head_sweep(spec, shapes, config, budget=tlcore.SweepBudget(trials=6, max_epochs=15, patience=3),
                              cache=cache, folder=tmp_path / "sweeps")
    default_run = tlcore.train(spec, shapes, config, cache=cache)
    kept_spec, kept_config = sweep.best_run()
    kept = tlcore.train(kept_spec, shapes, kept_config, cache=cache)
    assert sweep.default.score == pytest.approx(default_run.evaluation.accuracy, abs=1e-6)
    assert kept.evaluation.accuracy == pytest.approx(sweep.best.score, abs=1e-6)  # "keep the best" is that trial
    assert kept.evaluation.accuracy >= default_run.evaluation.accuracy, sweep.table().to_string()


def test_a_sweep_in_ray_tune_under_asha(source_base, tmp_path, ray_address):
    import logging

    shapes = tlcore.sample_dataset(per_class=16, size=48, seed=7)
    spec = dataclasses.replace(RECIPE.target_spec, base_model=source_base, hidden_units=0)
    config = tlcore.TrainConfig(epochs=15, batch_size=8, validation_fraction=0.5, early_stopping=3)
    seen, heard = [], []
    grid_log, listener = logging.getLogger("ray.tune.analysis.experiment_analysis"), logging.Handler()
    listener.emit = lambda record: heard.append(record.getMessage())  # what passes the logger's own filters
    grid_log.addHandler(listener)
    try:
        sweep = tlcore.head_sweep(spec, shapes, config,
                                  budget=tlcore.SweepBudget(trials=6, max_epochs=15, patience=3),
                                  cache=FeatureCache(tmp_path / "features"), folder=tmp_path / "sweeps",
                                  use_ray=True, on_trial=lambda trials: seen.append(trials))
    finally:
        grid_log.removeHandler(listener)
    assert sweep.scheduler == "ASHA" and len(sweep.trials) == 6
    assert {t.state for t in sweep.trials} <= {"done", "stopped by ASHA"}
    assert all(t.epochs >= 1 for t in sweep.trials) and sweep.best.score >= sweep.default.score
    assert any(t.state == "running" for trials in seen for t in trials)  # live progress reached this process
    assert not [line for line in heard if "Failed to fetch metrics" in line]  # the trial files are off on purpose
