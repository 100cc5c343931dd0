"""Fast, thread-safe forward passes for models that only predict.

``model.predict`` pays a per-call setup cost (data adapter, callbacks) that
dominates single-image latency. Here each model is wrapped once in a
``tf.function`` with a fixed signature, traced and warmed, then reused by
every caller and thread.

A model can also be run in bfloat16 (``precision="bfloat16"``): a bfloat16 copy
with the same weights (``tlcore.bfloat16``) is built once, kept as long as the
model, and its outputs are cast back to float32. Which precision to use is
``tlcore.inference.precision``'s job; here the caller says.

Every pass keeps to ``TL_MAX_ACTIVATION_MB``: a batch whose activations (the model's
for one image, times the images) would not fit runs in several passes that do, and the
outputs are joined (``tlcore.models.cost.images_per_pass``). One image always runs: a
model over the budget for one image is refused where it is built or loaded.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tlcore.core.errors import ConfigError
from tlcore.inference.bfloat16 import bfloat16_clone
from tlcore.models.cost import activation_bytes, images_per_pass
from tlcore.models.remote import RemoteModel

RUN_PRECISIONS = ("float32", "bfloat16")
"""The precisions a forward pass can run in (``"auto"`` is resolved by ``tlcore.inference.precision``)."""

_LOCK = threading.Lock()
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {precision: tf.function}


def _traced(model: keras.Model, runner: keras.Model) -> Callable:
    """``runner`` in inference mode as a traced, warmed tf.function over ``model``'s input shape.

    The function reaches ``model`` only through a weak reference (tf.function holds the
    variables it captures weakly too), so the cache entry, and with it any bfloat16
    copy, goes when the last user of ``model`` lets go of it.
    """
    signature = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
    if runner is model:
        weak = weakref.ref(model)
        forward = tf.function(lambda batch: weak()(batch, training=False), input_signature=[signature])
    else:
        forward = tf.function(lambda batch: tf.cast(runner(batch, training=False), tf.float32),
                              input_signature=[signature])
    forward(tf.zeros((1, *model.inputs[0].shape[1:]), tf.float32))
    return forward


def compiled_forward(model: keras.Model, *, precision: str = "float32") -> Callable[[np.ndarray], np.ndarray]:
    """Return ``f(batch) -> outputs`` (float32) for ``model`` in inference mode.

    The first call per model and precision traces and warms the function (and
    for bfloat16 builds the copy); later calls, from any thread, reuse it. The
    model itself is never changed.

    Args:
        model: a model with one float32 image input and one output.
        precision: "float32" (the model as it is) or "bfloat16" (its bfloat16 copy).

    Raises:
        ConfigError: another precision, or a model that has no bfloat16 copy.

    A ``RemoteModel`` (an uploaded model held by a worker) gets a function whose every call
    runs in that worker.
    """
    if precision not in RUN_PRECISIONS:
        raise ConfigError(f"A forward pass runs in one of {', '.join(RUN_PRECISIONS)}. "
                          f"Received: precision={precision!r}")
    if isinstance(model, RemoteModel):
        return functools.partial(model.run, "predicting", remote_compiled_forward, precision)
    with _LOCK:
        forwards = _COMPILED.setdefault(model, {})
        forward = forwards.get(precision)
        if forward is None:
            runner = model if precision == "float32" else bfloat16_clone(model)
            forward = forwards[precision] = _traced(model, runner)

    return functools.partial(_run, forward, model)


def remote_compiled_forward(model: keras.Model, precision: str, batch: np.ndarray) -> np.ndarray:
    """``compiled_forward(model, precision=precision)(batch)``, as a model's worker runs it."""
    return compiled_forward(model, precision=precision)(batch)


def pass_size(model: keras.Model, images: int) -> int:
    """The images, up to ``images``, one forward pass of ``model`` takes: as many as fit
    ``TL_MAX_ACTIVATION_MB`` (``images_per_pass``), and at least one."""
    if images <= 1:
        return images
    return max(1, images_per_pass(activation_bytes(model), images))


def _run(forward: Callable, model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """``forward`` on ``batch``, in passes that fit the activation budget; ``model`` rides along,
    so whoever holds the function keeps the model alive."""
    size = pass_size(model, len(batch))
    if size >= len(batch):
        return _pass(forward, batch)
    return np.concatenate([_pass(forward, batch[start:start + size]) for start in range(0, len(batch), size)])


def _pass(forward: Callable, batch: np.ndarray) -> np.ndarray:
    """One forward pass."""
    return forward(tf.convert_to_tensor(batch, tf.float32)).numpy()


def forget_forward(model: keras.Model, precision: str) -> None:
    """Drop ``model``'s compiled forward pass in ``precision`` (and with it a bfloat16 copy's memory)."""
    with _LOCK:
        _COMPILED.get(model, {}).pop(precision, None)
