"""One run across 2 Ray Train workers: both take part, and the result is one worker's on the same global batches."""

import dataclasses

import numpy as np
import pytest

import tlcore
from tlcore.core.errors import ConfigError

pytestmark = pytest.mark.slow  # starts Ray Train workers

SPEC = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8,
                           dropout=0.0)  # frozen base: its batch norm does not train, so no per-worker statistics


def test_two_workers_take_part_and_match_one_worker_on_the_same_global_batches(ray_address):
    from ray.train.v2._internal.constants import get_env_vars_to_propagate

    from tlcore.training.data_parallel import CONTROLLER_POLL_ENV, CONTROLLER_POLL_SECONDS, train_data_parallel

    dataset = tlcore.sample_dataset(per_class=8, size=32, seed=6)
    two = train_data_parallel(SPEC, dataset, tlcore.TrainConfig(epochs=2, batch_size=4, workers=2))
    one = train_data_parallel(SPEC, dataset, tlcore.TrainConfig(epochs=2, batch_size=8, workers=1))
    assert two.steps == {0: 6, 1: 6} and two.images == {0: 12, 1: 12}  # both took part, the same steps
    assert one.steps == {0: 6} and one.images == {0: 24}
    assert len(two.history) == 2 and two.history["loss"].notna().all()
    largest = max(float(np.max(np.abs(a - b))) for a, b in zip(two.weights, one.weights))
    moved = max(float(np.max(np.abs(a))) for a in two.weights)
    assert largest < 1e-4 < moved  # stated tolerance: 1e-4 on any weight (float32 sums in another order)
    # what Ray Train hands its controller: a look at the workers every quarter second, not every 2 s
    assert get_env_vars_to_propagate()[CONTROLLER_POLL_ENV] == CONTROLLER_POLL_SECONDS


def test_too_few_images_for_a_batch_per_worker_is_refused_before_any_worker_starts():
    from tlcore.training.data_parallel import train_data_parallel

    dataset = tlcore.sample_dataset(per_class=2, size=32, seed=6)
    with pytest.raises(ConfigError, match="Each of 4 workers needs at least one batch of 8 training images"):
        train_data_parallel(SPEC, dataset, dataclasses.replace(tlcore.TrainConfig(), workers=4, batch_size=8))
    with pytest.raises(ConfigError, match="Workers must be 1 to 64. Received: workers=0"):
        tlcore.TrainConfig(workers=0).check()
