"""Keras's Adam, its update computed by TensorFlow's fused kernel (``ResourceApplyAdam``).

Keras 3's Adam updates each variable with about ten separate operations; on a cached run's head (1,280 ->
256 -> 4, batch 32) they were half of a training step (``bench/head_step.py``: 1.8 to 2.0 ms a step, 1.0 ms
with this). TensorFlow's ``ResourceApplyAdam`` does the same arithmetic (Keras's bias correction, epsilon
outside the square root) in one kernel per variable.

The optimizer stays ``keras.optimizers.Adam``: only this instance's ``update_step`` is replaced, so a saved
run names Keras's own Adam with its own variables (moments, velocities, iterations) and loads anywhere.
Weight decay, clipping and loss scaling happen outside ``update_step`` and are unchanged; a sparse gradient
(``tf.IndexedSlices``) or amsgrad takes Keras's own step. The weights agree with Keras's step to rounding
(1e-6 over a few steps); over thousands of steps Adam's rounding differences grow as any two orders of
summation do.
"""

from __future__ import annotations

import types

import keras
import tensorflow as tf


def fused_adam(learning_rate: float) -> keras.optimizers.Adam:
    """``keras.optimizers.Adam(learning_rate)`` whose updates run in TensorFlow's fused kernel."""
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.update_step = types.MethodType(_fused_update_step, optimizer)
    return optimizer


def _handle(variable) -> tf.Tensor:
    """The resource handle of a Keras variable or of the TensorFlow variable under it."""
    return variable.handle if isinstance(variable, tf.Variable) else variable.value.handle


def _fused_update_step(self: keras.optimizers.Adam, gradient, variable, learning_rate) -> None:
    if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
        return keras.optimizers.Adam.update_step(self, gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
        beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        use_locking=False)
    return None
