"""One-line help in plain words for every control on Train and Build, for someone who never trained a network."""

from __future__ import annotations

TRAIN = {
    "epochs": "How many times training goes through all the training images. More can learn more, and takes longer.",
    "batch_size": "How many images the model looks at before each small correction. Smaller uses less memory; "
                  "larger is steadier.",
    "learning_rate": "How big each correction is. Too big and training jumps around; too small and it barely "
                     "moves. 0.001 is a good start.",
    "optimizer": "The rule that turns the model's mistakes into corrections. Adam is a safe default.",
    "validation": "The share of images kept aside and never trained on, to check the model on pictures it has "
                  "not seen (the \"held-out\" or validation images).",
    "augment": "Shows slightly flipped, turned and zoomed copies of the training images, so a small dataset "
               "goes further. It turns off the frozen-feature cache, so training is slower.",
    "patience": "Stop by itself when the result on the held-out images has not improved for this many "
                "epochs in a row (0: always train every epoch).",
    "fine_tune": "After the first phase, unfreeze more of the pretrained network and train a little longer, "
                 "gently, so it adapts to your images.",
    "fine_from": "This layer and every layer after it learn in the second phase; the earlier ones stay as they "
                 "were.",
    "fine_epochs": "How many passes over the training images the second phase makes.",
    "fine_rate": "The size of the corrections in the second phase: small, so what the network already knows "
                 "is not wiped out.",
}
"""Train's settings, by widget key."""

BUILD = {
    "base_run": "What the model's base starts from: the network pretrained on ImageNet photos (or the weights "
                "chosen in the sidebar), or the trained base of one of your earlier runs.",
    "preset": "The size, in pixels, images are resized to before the network sees them. Smaller is faster; "
              "larger keeps more detail.",
    "custom_size": "Any size in pixels; very small images may be too small for the network's layers.",
    "build_pooling": "How the base's output grid becomes one list of numbers for the head. Global average: "
                     "the average of each feature over the image (small, a common choice). Global max: each "
                     "feature's strongest spot. Flatten: every value kept in place (many more weights).",
    "training": "Frozen layers keep what they learned and do not change; trainable ones adapt to your images. "
                "Freezing more is faster and needs fewer images.",
    "trainable_from": "This layer and every layer after it train; the ones before stay frozen.",
    "conv_blocks": "Extra layers added after the base that look at small neighbourhoods of its output grid, "
                   "each followed by a shrinking step (a Conv2D and a max pooling). 0 for none.",
    "conv_filters": "How many different patterns each added layer looks for (its number of output channels).",
    "conv_kernel": "The size of the neighbourhood each pattern looks at, e.g. 3 for 3x3 grid cells.",
    "conv_pool": "Each added block ends by keeping only the strongest value in every n x n square, shrinking "
                 "the grid n times on each side. 1 for none.",
    "pool_size": "Averages each n x n square of the grid before the dense layers, shrinking it (as in the "
                 "classic AveragePooling2D(4) head); it must fit the grid it receives. 0 for none.",
    "hidden": "A layer of this many units between the pooling and the output, to combine features. 0 goes "
              "straight to the output.",
    "dropout": "During training, ignore this share of the hidden units at random each step, so the model does "
               "not lean on a few of them (helps against learning the training images by heart).",
    "classes": "How many kinds of thing the model tells apart: one output each. Training sets it to the "
               "number of classes in the images chosen on Train.",
}
"""Build's controls, by widget key."""

WORKERS = ("Trains this one run in several processes at once, each on its share of the images, averaging what "
           "they learn at every step. It pays on large datasets and several GPU machines; on a 2-core machine "
           "it is slower than 1 worker.")
"""Train's Workers control (``ui/workers.py``)."""
