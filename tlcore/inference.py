"""Fast, thread-safe forward passes for models that only predict.

``model.predict`` pays a per-call setup cost (data adapter, callbacks) that
dominates single-image latency. Here each model is wrapped once in a
``tf.function`` with a fixed signature, traced and warmed, then reused by
every caller and thread.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

_LOCK = threading.Lock()
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_forward(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``f(batch) -> outputs`` for ``model`` in inference mode.

    The first call per model traces and warms the function; later calls,
    from any thread, reuse it. The model itself is never changed.
    """
    with _LOCK:
        forward = _COMPILED.get(model)
        if forward is None:
            signature = tf.TensorSpec((None, *model.input.shape[1:]), tf.float32)
            forward = tf.function(
                lambda batch: model(batch, training=False), input_signature=[signature]
            )
            forward(tf.zeros((1, *model.input.shape[1:]), tf.float32))
            _COMPILED[model] = forward

    def run(batch: np.ndarray) -> np.ndarray:
        return forward(tf.convert_to_tensor(batch, tf.float32)).numpy()

    return run
