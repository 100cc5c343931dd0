"""Keras build scopes: models whose variables have shapes but no memory.

``shapes_only()`` builds a Keras model inside Keras's ``StatelessScope`` with deferred
initialization, so a spec or a ``config.json`` declaring ten billion parameters can be
counted (``tlcore.models.cost``) and checked before anything is allocated.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

from keras.src.backend.common import global_state
from keras.src.backend.common.stateless_scope import StatelessScope


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Inside, Keras variables are created with shapes but without memory.

    Keras's global state is thread-local, so other threads building real models
    are not affected. On the way out (exception or not) the deferred variables
    made inside are forgotten, so nothing initializes them later, and Python's
    ``random`` state is put back (Keras draws initializer seeds from it), so a
    check never changes the weights of a model built afterwards with a seed.

    A model built inside must only be inspected (shapes, counts), never called
    on data or given weights.
    """
    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    seeds = random.getstate()
    try:
        with StatelessScope(initialize_variables=False):
            yield
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)
        random.setstate(seeds)


_SEEDED = threading.Lock()


@contextlib.contextmanager
def seeded_initializers(seed: int) -> Iterator[None]:
    """Inside, Keras initializers draw their seeds from ``seed``: a model built inside has the same
    untrained weights in every build and every process (the same network, so the same map, the same %).

    Keras 3 gives each unseeded initializer a seed from Python's ``random`` when the layer is made
    (``keras.random.make_default_seed``), then draws its values with stateless ops from that seed.
    Python's ``random`` is seeded here and put back on the way out; builds inside are serialized, so
    two threads building untrained networks at once each get their own seeded sequence.
    """
    with _SEEDED:
        state = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)
