import threading

import keras
import numpy as np
import pytest
from support import image_bytes

import tlcore
from tlcore.inference.predict import prepare_input


@pytest.fixture(scope="module")
def tiny_classifier():
    """A tiny random 'backbone-shaped' classifier: 32x32 in, 7 softmax outputs."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(7, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_top_k_is_sorted_and_matches_the_model(tiny_classifier):
    image = image_bytes((50, 40), seed=3)
    table = tlcore.predict_top_k(tiny_classifier, image, backbone="MobileNetV2", k=5)
    assert list(table.columns) == ["rank", "label", "class_id", "probability"]
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert table["probability"].is_monotonic_decreasing
    expected = tiny_classifier(prepare_input(image, tiny_classifier, backbone="MobileNetV2")).numpy()[0]
    assert table["class_id"].iloc[0] == int(np.argmax(expected))
    np.testing.assert_allclose(table["probability"], np.sort(expected)[::-1][:5], rtol=1e-5)
    assert table["label"].iloc[0] == f"class {table['class_id'].iloc[0]}"


def test_k_is_clamped_to_the_number_of_classes(tiny_classifier):
    table = tlcore.predict_top_k(tiny_classifier, image_bytes(), backbone="VGG16", k=50)
    assert len(table) == 7
    assert table["probability"].sum() == pytest.approx(1.0, abs=1e-5)
    assert len(tlcore.predict_top_k(tiny_classifier, image_bytes(), backbone="VGG16", k=0)) == 1


def test_own_labels_and_a_mismatch(tiny_classifier):
    names = [f"kind-{i}" for i in range(7)]
    table = tlcore.predict_top_k(tiny_classifier, image_bytes(), backbone="VGG16", labels=names)
    assert table["label"].iloc[0] == names[table["class_id"].iloc[0]]
    with pytest.raises(tlcore.ConfigError, match="must name each of the model's 7 outputs. Received: 3"):
        tlcore.predict_top_k(tiny_classifier, image_bytes(), backbone="VGG16", labels=names[:3])


@pytest.mark.slow
def test_imagenet_labels_for_a_thousand_outputs():
    model = tlcore.load_backbone("MobileNetV2", weights=None)
    table = tlcore.predict_top_k(model, image_bytes((64, 64)), backbone="MobileNetV2")
    assert len(table) == 5
    assert table["label"].iloc[0] == tlcore.imagenet_labels()[table["class_id"].iloc[0]]


def test_bad_image_is_an_image_error(tiny_classifier):
    with pytest.raises(tlcore.ImageError):
        tlcore.predict_top_k(tiny_classifier, b"not an image", backbone="VGG16")


def test_compiled_forward_is_shared_and_thread_safe(tiny_classifier):
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32) for _ in range(50)]
    forward = tlcore.compiled_forward(tiny_classifier)
    serial = [forward(b) for b in batches]
    results: dict[int, list] = {}

    def worker(i):
        results[i] = [tlcore.compiled_forward(tiny_classifier)(b) for b in batches]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        for got, want in zip(results[i], serial):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(serial[0], tiny_classifier(batches[0]).numpy(), rtol=1e-5)


def test_tied_probabilities_are_in_class_id_order():
    from tlcore.inference.predict import top_k_table

    probabilities = np.array([0.1, 0.3, 0.3, 0.0, 0.3], np.float32)
    table = top_k_table(probabilities, [f"c{i}" for i in range(5)], 4)
    assert list(table["class_id"]) == [1, 2, 4, 0]
    assert list(table["rank"]) == [1, 2, 3, 4]


def test_outputs_outside_0_to_1_are_logits_shown_as_their_softmax():
    """A model ending without its softmax showed "746.6%" and negative probabilities."""
    from tlcore.inference.top_k import as_probabilities, top_k_table

    logits = np.array([7.466, 3.92, -2.05], np.float32)
    shown = top_k_table(logits, ["a", "b", "c"], 3)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(shown["probability"], expected, rtol=1e-6)
    assert list(shown["label"]) == ["a", "b", "c"] and shown["probability"].sum() == pytest.approx(1.0)
    rounded = np.array([1.0078125, 0.0, 0.0], np.float32)  # bfloat16's next value above 1: kept as it is
    assert np.array_equal(as_probabilities(rounded), rounded)
    independent = np.array([0.9, 0.8, 0.1], np.float32)  # one sigmoid per class: probabilities, not summing to 1
    assert np.array_equal(as_probabilities(independent), independent)
    batch = as_probabilities(np.array([[0.9, 0.6, 0.3], [3.0, 0.6, 0.3]], np.float32))  # one batch, read one way
    np.testing.assert_allclose(batch.sum(axis=1), [1.0, 1.0], rtol=1e-6)


def test_a_model_without_its_softmax_predicts_probabilities():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    scores = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(stddev=20.0))(
        keras.layers.GlobalAveragePooling2D()(inputs))
    table = tlcore.predict_top_k(keras.Model(inputs, scores), image_bytes((16, 16), seed=2), backbone="MobileNetV2", k=4)
    assert table["probability"].between(0, 1).all() and table["probability"].sum() == pytest.approx(1.0, abs=1e-5)


def test_a_one_output_model_file_is_refused_in_words(tmp_path):
    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))).save(
        tmp_path / "yes_no.keras")
    with pytest.raises(tlcore.ModelFileError, match=r"one score per class, for 2 classes or more .* "
                                                    r"Received: outputs of shape \(1,\) in 'yes_no.keras'"):
        tlcore.load_model_file(tmp_path / "yes_no.keras")
