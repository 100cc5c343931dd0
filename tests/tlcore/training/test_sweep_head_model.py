"""A sweep trial builds only the head after the pooling, yet starts from the weights ``train``'s model has."""

import random

import keras
import numpy as np
import pytest

import tlcore
from tlcore.models.build import _assemble
from tlcore.training.sweep import base_draws, head_model
from tlcore.training.train import frozen_split


@pytest.mark.parametrize("hidden_units, seed", [(16, 0), (0, 3), (64, 7)])
def test_the_head_alone_has_the_initial_weights_of_the_assembled_models_rest(hidden_units, seed):
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None,
                               hidden_units=hidden_units, dropout=0.3, num_classes=3)
    keras.utils.set_random_seed(seed)
    _, rest = frozen_split(_assemble(spec))  # what ``train`` builds and trains on cached features
    _, draws = base_draws(spec, seed)
    head = head_model(spec, tuple(rest.input.shape[1:]), seed=seed, head_draws=draws)
    expected, got = rest.get_weights(), head.get_weights()
    assert [w.shape for w in got] == [w.shape for w in expected] and len(got) == (4 if hidden_units else 2)
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    keras.utils.set_random_seed(seed)  # the state before the base: the base's draws are what the head skips
    early = head_model(spec, tuple(rest.input.shape[1:]), seed=seed, head_draws=random.getstate())
    assert not np.array_equal(early.get_weights()[0], expected[0])
    rows = np.random.default_rng(0).normal(size=(4, *rest.input.shape[1:])).astype("float32")
    np.testing.assert_allclose(head.predict(rows, verbose=0), rest.predict(rows, verbose=0), rtol=1e-6)
