"""Untrained (random) weights are seeded on the pages: the same network at every server start."""

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tlcore

SMALL = dict(include_top=False, input_shape=(32, 32, 3))
DIGEST = """
import hashlib, tlcore
model = tlcore.load_backbone("MobileNetV2", weights=None, include_top=False, input_shape=(32, 32, 3), seed=0)
print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
"""


def _digest(model) -> str:
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def test_the_same_seed_builds_the_same_untrained_network():
    first = tlcore.load_backbone("MobileNetV2", weights=None, seed=tlcore.UNTRAINED_SEED, **SMALL)
    second = tlcore.load_backbone("MobileNetV2", weights=None, seed=tlcore.UNTRAINED_SEED, **SMALL)
    other = tlcore.load_backbone("MobileNetV2", weights=None, seed=1, **SMALL)
    assert _digest(first) == _digest(second)
    assert _digest(first) != _digest(other)
    kernel = first.get_weights()[0]
    assert kernel.std() > 0.01  # drawn, not zeros


def test_unseeded_builds_still_differ_and_python_random_is_put_back():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    tlcore.load_backbone("MobileNetV2", weights=None, seed=7, **SMALL)
    assert random.random() == expected  # the seeded build left Python's random where it was
    a = tlcore.load_backbone("MobileNetV2", weights=None, **SMALL)
    b = tlcore.load_backbone("MobileNetV2", weights=None, **SMALL)
    assert _digest(a) != _digest(b)  # training seeds its own builds (TrainConfig.seed): nothing changed there


def test_a_seeded_feature_extractor_gives_the_same_vectors():
    from support import image_bytes

    image = image_bytes((64, 64), seed=3)
    vectors = [tlcore.extract_features(tlcore.feature_extractor("MobileNetV2", weights=None, seed=0),
                                       [image], backbone="MobileNetV2") for _ in range(2)]
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert float(np.abs(vectors[0]).sum()) > 0


@pytest.mark.slow  # two fresh Python processes
def test_two_processes_build_the_same_untrained_network():
    here = _digest(tlcore.load_backbone("MobileNetV2", weights=None, seed=0, **SMALL))
    root = Path(__file__).resolve().parents[3]
    runs = [subprocess.run([sys.executable, "-c", DIGEST], capture_output=True, text=True, timeout=300, cwd=root,
                           check=True).stdout.split()[-1] for _ in range(2)]
    assert runs == [here, here]
