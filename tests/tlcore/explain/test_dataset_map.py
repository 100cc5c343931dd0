"""Datasets as a map (tlcore.dataset_map) and the Features page drawing one."""

import base64
import importlib
import io
import json
import shutil

import keras
import numpy as np
import pytest
from PIL import Image
from support import open_page

import tlcore

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 220)}


def colour_folder(root, counts, *, mixed=False, seed=0):
    """Class folders of noisy solid-colour 16x16 PNGs; ``mixed`` fills every class with every colour."""
    rng = np.random.default_rng(seed)
    palette = list(COLOURS.values())
    for (name, rgb), count in zip(COLOURS.items(), counts):
        (root / name).mkdir(parents=True)
        for i in range(count):
            base = palette[i % 3] if mixed else rgb
            pixels = np.clip(np.array(base) + rng.normal(0, 6, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def mean_colour() -> keras.Model:
    """A tiny extractor: the mean of each channel (3 values), at 32x32."""
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return tlcore.load_dataset(colour_folder(tmp_path_factory.mktemp("colours") / "data", (6, 12, 18)))


def test_a_map_places_min_of_limit_and_size_in_a_stratified_seeded_subset(colours):
    small = tlcore.dataset_map(colours, mean_colour(), backbone="MobileNetV2", limit=12)
    assert (small.used, small.total, small.feature_width) == (12, 36, 3)
    points = small.points
    assert list(points.columns) == ["x", "y", "class", "label", "index", "file"]
    assert points["class"].value_counts().to_dict() == {"red": 2, "green": 4, "blue": 6}  # each keeps its share
    assert points["index"].is_unique and all(
        colours.files[i].as_posix() == f and colours.class_names[colours.labels[i]] == c
        for i, f, c in zip(points["index"], points["file"], points["class"]))
    again = tlcore.dataset_map(colours, mean_colour(), backbone="MobileNetV2", limit=12)
    other = tlcore.dataset_map(colours, mean_colour(), backbone="MobileNetV2", limit=12, seed=1)
    assert points["index"].tolist() == again.points["index"].tolist() != other.points["index"].tolist()
    whole = tlcore.dataset_map(colours, mean_colour(), backbone="MobileNetV2", limit=100)
    assert whole.used == 36 and sorted(whole.points["index"]) == list(range(36))
    assert tlcore.map_subset([0] * 50 + [1], 10).tolist()[-1] == 50  # a rare class keeps one image


def test_solid_colours_separate_and_labels_unrelated_to_the_images_are_near_chance(colours, tmp_path):
    mapped = tlcore.dataset_map(colours, mean_colour(), backbone="MobileNetV2", limit=36)
    assert mapped.separability == 1.0
    assert mapped.chance == pytest.approx((6 * 5 + 12 * 11 + 18 * 17) / (36 * 35))
    assert np.ptp(mapped.points["x"]) > 0.5  # the colours are spread out, not one blob
    mixed = tlcore.load_dataset(colour_folder(tmp_path / "mixed", (12, 12, 12), mixed=True))
    unrelated = tlcore.dataset_map(mixed, mean_colour(), backbone="MobileNetV2")
    assert unrelated.separability < 0.5 and unrelated.chance == pytest.approx(3 * 12 * 11 / (36 * 35))
    rng = np.random.default_rng(0)  # many random vectors with random labels: chance, measured
    accuracy, chance = tlcore.nearest_neighbour_accuracy(rng.normal(size=(400, 32)), rng.integers(0, 4, 400))
    assert abs(accuracy - chance) < 0.08 and 0.23 < chance < 0.27



def test_nearest_neighbours_found_block_by_block_are_the_brute_force_ones(monkeypatch):
    module = importlib.import_module("tlcore.explain.dataset_map")  # tlcore.dataset_map itself is the function

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 6))
    labels = (vectors[:, 0] > 0).astype(int)  # a class the first value decides: nearest neighbours mostly agree
    distances = ((vectors[:, None] - vectors[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    expected = np.mean(labels[distances.argmin(axis=1)] == labels)
    monkeypatch.setattr(module, "NEIGHBOUR_ROWS", 7)  # blocks of 7 rows, the last one short
    accuracy, _ = tlcore.nearest_neighbour_accuracy(vectors, labels)
    assert accuracy == pytest.approx(expected) and accuracy > 0.6

def test_the_limits_are_refused_before_any_image_is_read(colours, monkeypatch):
    missing = tuple(path.with_suffix(".missing") for path in colours.files)  # reading any would fail
    gone = tlcore.ImageDataset(colours.root, colours.class_names, missing, colours.labels, name="gone")
    with pytest.raises(tlcore.BudgetError, match=r"at most 400 images on this server \(TL_MAX_MAP_IMAGES\)\. "
                                                 r"Received: limit=500"):
        tlcore.dataset_map(gone, mean_colour(), backbone="MobileNetV2", limit=500)
    with pytest.raises(tlcore.ConfigError, match=r"from 2 to 400\. Received: limit=1"):
        tlcore.dataset_map(gone, mean_colour(), backbone="MobileNetV2", limit=1)
    monkeypatch.setenv("TL_MAX_MAP_IMAGES", "10")
    with pytest.raises(tlcore.BudgetError, match="at most 10 images.*Received: limit=11"):
        tlcore.dataset_map(gone, mean_colour(), backbone="MobileNetV2", limit=11)
    monkeypatch.setenv("TL_MAX_MAP_FEATURE_MB", "0")
    with pytest.raises(tlcore.BudgetError, match=r"at most 0 MB.*choose a later layer.*Received: 10 images x 3 values"):
        tlcore.dataset_map(gone, mean_colour(), backbone="MobileNetV2", limit=10)


def test_a_runs_dataset_comes_back_from_its_summary_and_a_deleted_one_is_named(colours, tmp_path):
    back = tlcore.run_dataset(json.loads(json.dumps(colours.summary())))
    assert (back.files, back.labels, back.class_names, back.digest) == (
        colours.files, colours.labels, colours.class_names, colours.digest)
    copy = tmp_path / "copy"
    shutil.copytree(colours.root, copy)
    summary = {**colours.summary(), "root": str(copy)}
    shutil.rmtree(copy)
    with pytest.raises(tlcore.DatasetError, match="must still be stored to be mapped.*was deleted"):
        tlcore.run_dataset(summary)


def test_a_thumbnail_is_a_small_jpeg_of_the_image(colours):
    url = tlcore.thumbnail_url(colours.files[0], 8)
    assert url.startswith("data:image/jpeg;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert picture.format == "JPEG" and max(picture.size) == 8
    drawn = COLOURS[colours.class_names[colours.labels[0]]]
    assert np.abs(np.asarray(picture, dtype=int).mean(axis=(0, 1)) - drawn).max() < 25
    with pytest.raises(tlcore.ConfigError, match="from 8 to 256 pixels. Received: size=1000"):
        tlcore.thumbnail_url(colours.files[0], 1000)


def map_chart(at):
    """The dataset map's Vega-Lite spec and its data rows (the one chart with a ``class`` colour)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        if spec.get("encoding", {}).get("color", {}).get("field") == "class":
            (named,) = chart.proto.datasets  # Streamlit sends the data beside the spec, as Arrow
            return spec, convert_arrow_bytes_to_pandas_df(named.data.data).to_dict("records")
    raise AssertionError("no dataset map drawn")


@pytest.mark.slow
def test_features_maps_the_sample_dataset_with_pictures_on_hover():
    at = open_page("../pages/features.py", backbone="MobileNetV2", features_map="dataset", map_images=24)
    assert not at.error
    spec, rows = map_chart(at)
    assert len(rows) == 24 and {r["class"] for r in rows} == {"circle", "square", "triangle", "stripes"}
    assert all(sum(r["class"] == c for r in rows) == 6 for c in ("circle", "square", "triangle"))
    assert all(r["image"].startswith("data:image/jpeg;base64,") for r in rows)
    assert "file" not in rows[0] and spec["encoding"]["tooltip"][0]["field"] == "image"
    assert "24 of 256 images" in at.subheader[0].value
    assert at.metric[0].label == "Nearest neighbour of the same class" and at.metric[1].value == "22%"
    assert "(PCA)" in " ".join(c.value for c in at.caption)
    assert at.query_params["features_map"] == "dataset" and at.query_params["map_images"] == "24"
    from ui.dataset_map import _LAST

    placed = at.session_state[_LAST][1]
    at.run()
    assert at.session_state[_LAST][1] is placed  # a rerun shows the kept map
    at.toggle(key="force_float32").set_value(True).run()  # a map made in another precision is made again
    assert not at.exception and at.session_state[_LAST][1] is not placed


@pytest.mark.slow
def test_features_maps_a_runs_data_and_says_when_it_was_deleted(colours, tmp_path):
    copy = tmp_path / "run-data"
    shutil.copytree(colours.root, copy)
    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None)
    run_id = store.create(spec, tlcore.TrainConfig(epochs=1), {**colours.summary(), "root": str(copy)},
                          name="colours for the map")
    store.mark(run_id, "done")
    at = open_page("../pages/features.py", backbone="MobileNetV2", features_map="run", map_run=run_id)
    assert not at.error, at.error
    _, rows = map_chart(at)
    assert len(rows) == 36 and {r["class"] for r in rows} == set(COLOURS)
    assert "36 of 36 images" in at.subheader[0].value
    shutil.rmtree(copy)
    at.run()
    assert not at.exception
    assert "cannot be mapped" in at.error[0].value and "was deleted" in at.error[0].value
