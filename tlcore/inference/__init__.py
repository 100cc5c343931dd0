"""inference: running a model: compiled passes, precision, top-k, features, batches.

forward      compiled forward passes, one per model    bfloat16   bfloat16 copies of a model
calibration  measuring float32 against bfloat16        precision  the choice, per machine and network
predict      top-k tables of a Keras model             top_k      the table itself (plain)
lite         a classifier's LiteRT copy: answers without TensorFlow
features     feature extractors and vectors            batch      many images at once, from a zip or uploads

Imports ``tlcore.core``, ``tlcore.models`` and ``tlcore.data``.
"""
