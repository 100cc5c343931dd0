"""models: networks as data, and what they cost before anything is allocated.

zoo        the registry: one row per backbone        scopes         shapes-only Keras builds
cost       parameters and activation bytes           spec           TransferSpec, as plain values
shapes     the smallest input a backbone takes       weights        ImageNet weights: cache, download, files
weights_probe  what an HDF5 file declares            backbone       load_backbone
model_files    uploaded .keras files, safely         build          TransferSpec -> model, and its cost
summary    layer tables and parameter counts         labels         the 1,000 ImageNet class names

Imports only ``tlcore.core``.
"""
