"""Keras's Adam with TensorFlow's fused update (issue 18: half of a head's step was Keras's unfused Adam): the
same updates to rounding, the same optimizer in a saved run, Keras's own step where the kernel does not apply."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlcore.training.config import OPTIMIZERS
from tlcore.training.fused_adam import fused_adam


def _after(optimizer, start: np.ndarray, gradients: list) -> np.ndarray:
    variable = keras.Variable(start)
    optimizer.build([variable])
    for gradient in gradients:
        optimizer.apply_gradients([(gradient, variable)])
    return np.array(variable)


def test_the_fused_steps_are_kerass_steps_to_rounding():
    rng = np.random.default_rng(0)
    start = rng.standard_normal((50, 20)).astype(np.float32)
    gradients = [tf.constant(rng.standard_normal((50, 20)).astype(np.float32) * scale)
                 for scale in (1.0, 0.1, 1e-4, 10.0, 1.0, 0.0)]
    expected = _after(keras.optimizers.Adam(1e-3), start, gradients)
    fused = _after(fused_adam(1e-3), start, gradients)
    assert np.abs(expected - start).max() > 4e-3  # six real steps were taken
    assert np.abs(fused - expected).max() < 1e-6


def test_a_sparse_gradient_takes_kerass_own_step():
    start = np.ones((6, 3), np.float32)
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]), tf.constant([1, 4]),
                              tf.constant([6, 3]))
    expected = _after(keras.optimizers.Adam(1e-2), start, [sparse, sparse])
    fused = _after(fused_adam(1e-2), start, [sparse, sparse])
    assert np.array_equal(fused, expected) and not np.array_equal(fused, start)


def test_a_fitted_model_agrees_and_saves_kerass_adam(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((256, 16)).astype(np.float32), rng.integers(0, 3, 256)

    def fitted(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", steps_per_execution=4)
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        return model

    expected, fused = fitted(keras.optimizers.Adam(1e-2)), fitted(OPTIMIZERS["adam"](1e-2))
    for mine, theirs in zip(fused.get_weights(), expected.get_weights()):
        assert np.abs(mine - theirs).max() < 1e-5
    assert int(fused.optimizer.iterations) == 16

    fused.save(tmp_path / "run.keras")
    loaded = keras.saving.load_model(tmp_path / "run.keras")
    assert type(loaded.optimizer) is keras.optimizers.Adam  # Keras's own class: loads without tlcore
    assert int(loaded.optimizer.iterations) == 16
    assert loaded.optimizer.get_config()["learning_rate"] == pytest.approx(1e-2)
    for mine, saved in zip(fused.optimizer.variables, loaded.optimizer.variables):
        assert np.array_equal(np.array(mine), np.array(saved))
