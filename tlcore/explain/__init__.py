"""explain: what a network sees and how it is built.

grad_cam      where the network looks                feature_maps  a layer's strongest channels
dataset_map   a dataset as a map of its features      graph         the network as a diagram
code          the Keras program behind a page
"""
