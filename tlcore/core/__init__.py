"""core: what every wing stands on, in plain Python (no Keras, TensorFlow or Ray).

settings  the TL_* settings, read at call time      errors   TLError and its kinds
atomic    crash-safe writes                         storage  the data folder and its quota
access    passwords, who may manage what, what a visitor may see
"""
