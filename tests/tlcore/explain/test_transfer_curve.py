"""The transfer curve: taps at the diagram's block ends, one streaming pass, keyed feature files, probes."""

import dataclasses

import numpy as np
import pytest

import tlcore
from tlcore.data.pipeline import fitted_pixels
from tlcore.explain.transfer_curve import EXTRACT, PROBE, _tapped, curve_taps, extract_taps, transfer_curve
from tlcore.models.summary import layer_table
from tlcore.training.feature_cache import FeatureCache, cache_key
from tlcore.training.probes import ProbeBudget, fit_probe
from tlcore.training.train import frozen_split

VGG_POOLS = ["block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"]


@pytest.fixture(scope="module")
def shapes():
    return tlcore.sample_dataset(per_class=4, size=32, seed=3)


def test_vgg16_taps_are_its_five_pools_and_fc1_fc2_when_the_top_is_kept():
    base = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(32, 32, 3))
    assert tlcore.block_ends(layer_table(base)) == VGG_POOLS
    assert curve_taps(base, include_top=False) == VGG_POOLS
    full = tlcore.load_backbone("VGG16", weights=None, include_top=True, input_shape=(32, 32, 3))
    assert tlcore.block_ends(layer_table(full))[-4:] == ["block5_pool", "fc1", "fc2", "predictions"]
    assert curve_taps(full, include_top=True) == [*VGG_POOLS, "fc1", "fc2"]


def test_resnet50_taps_are_its_stages():
    base = tlcore.load_backbone("ResNet50", weights=None, include_top=False, input_shape=(32, 32, 3))
    assert curve_taps(base, include_top=False)[-4:] == ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                                                        "conv5_block3_out"]


@pytest.mark.parametrize("backbone, size, expected, not_taps", [
    ("Xception", 71, ["block1_conv2_act", "add", "add_1"], {"block2_pool", "block3_pool", "block13_pool"}),
    ("InceptionV3", 75, ["mixed0", "mixed1"], {"mixed9_0", "mixed9_1"}),
])
def test_taps_are_graph_cuts_never_a_layer_inside_a_branch(backbone, size, expected, not_taps):
    """Xception's block ends were the residual branch before its Add (and "train from" named the shortcut's
    batch norm), InceptionV3's included one branch's concatenation: neither is what a head there would see."""
    from tlcore.explain.transfer_curve import _train_from, graph_cuts

    base = tlcore.load_backbone(backbone, weights=None, include_top=False, input_shape=(size, size, 3))
    taps = curve_taps(base, include_top=False)
    assert taps[:len(expected)] == expected and not not_taps & set(taps)
    assert set(taps) <= set(graph_cuts(base)) and taps[-1] == base.layers[-1].name
    names = [layer.name for layer in base.layers]
    for tap in taps[:-1]:  # training from the tap's next layer with weights: a layer that reads only what the tap gives
        start = _train_from(base, backbone, tap)
        assert names.index(start) > names.index(tap) and "batch_normalization" not in start
    if backbone == "Xception":
        assert _train_from(base, backbone, "add") == "block3_sepconv1"


def test_graph_cuts_of_a_small_residual_network():
    import keras

    inputs = keras.Input((8, 8, 3), name="image")
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    branch = keras.layers.Conv2D(4, 3, padding="same", name="branch")(stem)
    joined = keras.layers.Add(name="join")([stem, branch])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(joined)
    model = keras.Model(inputs, pooled)
    from tlcore.explain.transfer_curve import graph_cuts

    assert graph_cuts(model) == ["image", "stem", "join", "pool"]  # "branch" is skipped by the shortcut


def test_one_pass_writes_every_tap_as_separate_extractions_would_and_reuses_the_files(tmp_path, shapes):
    base = tlcore.load_backbone("VGG16", weights=None, include_top=False, input_shape=(32, 32, 3))
    cache, progress = FeatureCache(tmp_path), []
    keys, found = extract_taps(base, VGG_POOLS, shapes, backbone="VGG16", mode="crop", cache=cache,
                               on_progress=lambda done, total: progress.append((done, total)))
    assert found == set() and progress[-1] == (16, 16) and len(progress) == 1  # one pass: one batch of 16
    for tap, width in zip(VGG_POOLS, (64, 128, 256, 512, 512)):
        rows = cache.load(keys[tap])
        assert rows.shape == (16, width)
        alone, _ = cache.features(_tapped(base, tap), shapes, backbone="VGG16",
                                  preprocess=tlcore.get_backbone("VGG16").preprocess)  # the same key: read back
        np.testing.assert_array_equal(np.asarray(alone), np.asarray(rows))
        x = tlcore.get_backbone("VGG16").preprocess(
            np.stack([fitted_pixels(str(shapes.files[i]), (32, 32)) for i in (0, 9)]).astype("float32"))
        np.testing.assert_allclose(np.asarray(rows[[0, 9]]), _tapped(base, tap).predict(x, verbose=0),
                                   rtol=1e-4, atol=1e-4)
    again, found = extract_taps(base, VGG_POOLS, shapes, backbone="VGG16", mode="crop", cache=cache)
    assert again == keys and found == set(VGG_POOLS)


def test_the_deepest_tap_is_the_file_a_run_on_the_frozen_base_reads(tmp_path, shapes):
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, num_classes=4)
    model = tlcore.build_transfer_model(spec)
    base, _ = tlcore.base_and_head(model)
    prefix, _ = frozen_split(model)
    run_key = cache_key(prefix, shapes, backbone="VGG16", mode="crop")
    assert cache_key(_tapped(base, "block5_pool"), shapes, backbone="VGG16", mode="crop") == run_key
    assert cache_key(_tapped(base, "block4_pool"), shapes, backbone="VGG16", mode="crop") != run_key


def test_a_probe_separates_separable_vectors_and_not_random_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    rows = rng.normal(size=(120, 16)).astype("float32")
    separable = rows + 4 * np.eye(3, 16, dtype="float32")[labels]
    train_idx, val_idx = np.arange(0, 120, 2), np.arange(1, 120, 2)
    good = fit_probe(separable, labels, train_idx, val_idx, classes=3, tap="t")
    noise = fit_probe(rows, rng.permutation(labels), train_idx, val_idx, classes=3)
    assert good.accuracy >= 0.85 and good.train_accuracy >= 0.95 and good.features == 16 and good.tap == "t"
    assert noise.accuracy <= 0.55


def test_a_probe_on_a_feature_file_scores_as_on_the_rows_in_memory(tmp_path):
    from tlcore.training.probes import STATISTICS_ROWS, _mean_and_variance

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(2), STATISTICS_ROWS)  # more rows than one chunk of the statistics
    rows = (rng.normal(size=(len(labels), 8)) * 3 + 5 + np.eye(2, 8)[labels]).astype("float32")
    np.save(tmp_path / "rows.npy", rows)
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    train_idx, val_idx = np.arange(1, len(labels), 2), np.arange(0, len(labels), 2)
    mean, variance = _mean_and_variance(mapped, train_idx)
    np.testing.assert_allclose(mean, rows[train_idx].mean(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(variance, rows[train_idx].var(axis=0, dtype=np.float64), rtol=1e-9)
    budget = ProbeBudget(epochs=3)
    here = fit_probe(rows, labels, train_idx, val_idx, classes=2, budget=budget)
    there = fit_probe(mapped, labels, train_idx, val_idx, classes=2, budget=budget)
    assert (here.accuracy, here.train_accuracy) == (there.accuracy, there.train_accuracy)
    assert here.loss == pytest.approx(there.loss, rel=1e-6) and 0.5 < here.accuracy < 1


def test_a_curve_is_measured_once_and_recommends_a_cut(tmp_path, shapes):
    stages = []
    common = dict(weights=None, input_size=32, validation_fraction=0.5, seed=1, budget=ProbeBudget(epochs=5),
                  cache=FeatureCache(tmp_path / "features"), folder=tmp_path / "curves")
    curve = transfer_curve("VGG16", shapes, on_progress=lambda *args: stages.append(args), **common)
    assert [p.tap for p in curve.points] == VGG_POOLS and [p.depth for p in curve.points] == [1, 2, 3, 4, 5]
    assert all(0 <= p.accuracy <= 1 for p in curve.points) and curve.chance == pytest.approx(0.25)
    assert (EXTRACT, 16, 16) in stages and stages[-1] == (PROBE, 5, 5)
    assert curve.peak.accuracy == max(p.accuracy for p in curve.points)
    following = {"block1_pool": "block2_conv1", "block2_pool": "block3_conv1", "block3_pool": "block4_conv1",
                 "block4_pool": "block5_conv1", "block5_pool": None}
    assert curve.train_from == following[curve.peak.tap]
    assert curve.peak.tap in curve.recommendation()
    stages.clear()
    again = transfer_curve("VGG16", shapes, on_progress=lambda *args: stages.append(args), **common)
    assert again == curve and stages == []  # nothing ran: the files and the curve were kept
    assert list((tmp_path / "curves").glob("*.json")) == [tmp_path / "curves" / f"{curve.key}.json"]


def test_the_recommendation_in_words():
    point = tlcore.CurvePoint(4, "block4_pool", 512, 0.8, 0.5, 0.9, False)
    curve = tlcore.TransferCurve("k", "VGG16", 128, "imagenet", None, False, "d", 10, 0.25,
                                 (dataclasses.replace(point, depth=1, tap="block1_pool", accuracy=0.4), point,
                                  dataclasses.replace(point, depth=5, tap="block5_pool", accuracy=0.7)),
                                 "block5_conv1", 1.0, 1.0)
    assert curve.recommendation() == "the probe peaks at block4_pool (80% against 25% by chance): train from block5_conv1"
    assert tlcore.TransferCurve.from_json(curve.to_json()) == curve


def test_bad_datasets_and_splits_are_refused_in_words(tmp_path):
    two = tlcore.sample_dataset(per_class=2, size=32, seed=0)
    with pytest.raises(tlcore.DatasetError, match="validation share must be from 0.05 to 0.9. Received: 0.95"):
        transfer_curve("VGG16", two, weights=None, input_size=32, validation_fraction=0.95, folder=tmp_path)
    with pytest.raises(tlcore.ConfigError, match="1 to 500 epochs. Received: epochs=0"):
        transfer_curve("VGG16", two, weights=None, input_size=32, budget=ProbeBudget(epochs=0), folder=tmp_path)


def test_the_extraction_runs_as_many_images_at_once_as_the_memory_budget_allows(monkeypatch):
    """Memory follows the batch: a large input runs fewer images at once rather than being refused (the features
    are the same at any batch)."""
    from tlcore.explain.transfer_curve import check_curve_budget

    assert check_curve_budget("MobileNetV2", 224, 3) == 32  # the default 12 GB: a whole batch
    assert 1 <= check_curve_budget("ResNet50", 448, 3) < 32  # about 0.6 GB an image: fewer at once
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "2")
    few = check_curve_budget("MobileNetV2", 224, 3)
    assert 1 <= few < 32
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "3")
    with_top = check_curve_budget("VGG16", 224, 3, include_top=True)  # 138 M weights instead of 15 M
    assert with_top < check_curve_budget("VGG16", 224, 3)


def test_a_curve_over_the_servers_budgets_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    """The curve runs in the server's own process; it checked no model or memory budget (VGG19 at 1024 px passed)."""
    two = tlcore.sample_dataset(per_class=2, size=32, seed=0)
    monkeypatch.setattr("tlcore.explain.transfer_curve._load_network", lambda *a, **k: pytest.fail("built"))
    monkeypatch.setenv("TL_MAX_ACTIVATION_MB", "5")
    with pytest.raises(tlcore.BudgetError, match=r"TL_MAX_ACTIVATION_MB"):
        transfer_curve("MobileNetV2", two, weights=None, input_size=64, folder=tmp_path)
    monkeypatch.delenv("TL_MAX_ACTIVATION_MB")
    monkeypatch.setenv("TL_JOB_MEMORY_GB", "1")
    with pytest.raises(tlcore.BudgetError, match=r"extraction may need at most 1 GB of memory on this server "
                                                 r"\(TL_JOB_MEMORY_GB\), even one image at a time\. Received: about"):
        transfer_curve("VGG19", two, weights=None, input_size=1024, folder=tmp_path)
    monkeypatch.delenv("TL_JOB_MEMORY_GB")
    with pytest.raises(tlcore.ShapeError, match="Received: input_shape=\\(16, 16, 3\\)"):
        transfer_curve("VGG16", two, weights=None, input_size=16, folder=tmp_path)


def test_the_probes_keras_program_runs_on_a_folder_of_images(tmp_path, shapes, monkeypatch, capsys):
    curve = tlcore.TransferCurve("k", "VGG16", 32, None, None, False, "shapes", 16, 0.25,
                                 tuple(tlcore.CurvePoint(d, tap, 0, 0.5, 1.0, 1.0, False)
                                       for d, tap in enumerate(VGG_POOLS[:3], start=1)), "block3_conv1", 1.0, 1.0)
    program = tlcore.probe_program(curve)
    for index, (path, label) in enumerate(zip(shapes.files, shapes.labels)):
        folder = tmp_path / "my_images" / shapes.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(program.replace("epochs=100", "epochs=2"), "transfer_curve.py", "exec"), {"__name__": "__main__"})
    printed = [line.split() for line in capsys.readouterr().out.split("\n") if line.startswith("block")]
    assert [words[0] for words in printed] == VGG_POOLS[:3]
    assert all(0 <= float(words[1]) <= 1 for words in printed)


def test_the_probes_program_splits_and_trains_as_the_curve_did(tmp_path, shapes, monkeypatch, capsys):
    """The program drew its own 80/20 split with seed 0 and trained 100 epochs whatever the curve used: a curve
    measured on 62.5% of the images for validation was reproduced on 20%."""
    budget = tlcore.ProbeBudget(epochs=3, batch_size=8, learning_rate=0.05, seed=5)
    curve = tlcore.TransferCurve("k", "VGG16", 32, None, None, False, "shapes", len(shapes), 0.25,
                                 (tlcore.CurvePoint(1, "block1_pool", 0, 0.5, 1.0, 1.0, False),), None, 1.0, 1.0,
                                 len(shapes.split(0.625, seed=3)[1]), 0.625, 3, "squash", budget)
    assert tlcore.TransferCurve.from_json(curve.to_json()) == curve
    program = tlcore.probe_program(curve)
    assert "crop_to_aspect_ratio" not in program and "default_rng(3)" in program
    assert "Adam(0.05)" in program and "epochs=3, batch_size=8" in program and "set_random_seed(5)" in program
    for index, (path, label) in enumerate(zip(shapes.files, shapes.labels)):
        folder = tmp_path / "my_images" / shapes.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(program, "transfer_curve.py", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    assert curve.validation_images == 8 and "8 validation images" in printed  # the old program: 4 (20%)


def test_the_probes_program_names_files_by_their_downloads_never_by_server_paths():
    """A curve on a run's base or an uploaded weights file printed their paths on this server into the code any
    visitor of its link could read and download."""
    points = (tlcore.CurvePoint(1, "block1_pool", 0, 0.5, 1.0, 1.0, False),)
    on_a_run = tlcore.TransferCurve("k", "VGG16", 32, None, "/srv/lab/data/runs/20261207-101500-1a2b3c/model.keras",
                                    False, "shapes", 16, 0.25, points, None, 1.0, 1.0)
    program = tlcore.probe_program(on_a_run)
    assert "keras.models.load_model('20261207-101500-1a2b3c.keras')" in program and "/srv" not in program
    on_a_file = dataclasses.replace(on_a_run, base_model=None, weights="/srv/lab/data/uploads/ab12.weights.h5")
    program = tlcore.probe_program(on_a_file)
    assert 'keras.applications.VGG16(weights="my_weights.h5", include_top=False' in program and "/srv" not in program


def test_the_recommendation_says_how_sure_it_is_and_when_no_tap_beats_chance():
    """On shuffled labels, where nothing can be learned, a 24-image curve still said it "peaks at block5_pool (42%
    against 25% by chance)" (a reviewer's measurement): a peak within luck's reach of chance is no recommendation."""
    point = tlcore.CurvePoint(4, "block4_pool", 512, 0.8, 0.5, 0.9, False)
    clear = tlcore.TransferCurve("k", "VGG16", 128, "imagenet", None, False, "d", 96, 0.25,
                                 (dataclasses.replace(point, depth=1, tap="block1_pool", accuracy=0.4), point),
                                 "block5_conv1", 1.0, 1.0, 24)
    assert clear.margin(0.8) == pytest.approx(2 * (0.8 * 0.2 / 24) ** 0.5)  # 16.3 points
    assert clear.recommendation() == ("the probe peaks at block4_pool (80% against 25% by chance; give or take 16 "
                                      "points on 24 validation images): train from block5_conv1")
    luck = dataclasses.replace(clear, points=(dataclasses.replace(point, tap="block5_pool", accuracy=0.42),))
    assert luck.recommendation() == (
        "the probe peaks at block5_pool (42% against 25% by chance), but on 24 validation images no tap clearly beats "
        "chance (within 18 points of it, as luck may reach): measure on more images before choosing a cut")
    assert tlcore.TransferCurve.from_json(luck.to_json()) == luck
    assert clear.clear and not luck.clear and dataclasses.replace(luck, validation_images=0).clear
