"""data: images and datasets from strangers, stored once, streamed in batches.

images    safe decoding (EXIF, bombs, budgets)       intake    zips and folders, checked before reading
datasets  the content-addressed store                samples   datasets the project draws itself
pipeline  tf.data streaming of stored images

Imports only ``tlcore.core``.
"""
