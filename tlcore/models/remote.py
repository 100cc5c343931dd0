"""A model whose passes run in another process: its outline here, its weights and passes there.

An uploaded ``.keras`` model is a stranger's: its passes (prediction with its first-pass
precision calibration, Grad-CAM, batches) may take all of a worker's memory or minutes of
CPU. ``RemoteModel`` is what the server holds instead of the model: the model built with
shapes only (``model_outline``: its graph, layer names and shapes, no weights allocated),
which answers every question about the model's shape, and ``run``, which sends a pass to
the process that holds the real model. The functions that run passes (``inference_forward``,
``compiled_forward``, ``grad_cam``) send their pass through ``run`` when given one; given a
``keras.Model`` they run in this process, as a notebook does.

This module imports neither Ray nor TensorFlow: ``tlcore.training.upload_worker`` holds the
one implementation, a Ray actor per uploaded file.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any


class RemoteModel(abc.ABC):
    """A model held by another process; ``outline`` describes it here, ``run`` computes there.

    Attributes:
        outline: the model built with shapes only (``tlcore.models.model_files.model_outline``):
            inspect it (inputs, outputs, layers, shapes), never call it on data.
    """

    outline: Any

    @property
    def name(self) -> str:
        return self.outline.name

    @property
    def input(self):
        return self.outline.input

    @property
    def inputs(self):
        return self.outline.inputs

    @property
    def output(self):
        return self.outline.output

    @property
    def outputs(self):
        return self.outline.outputs

    @property
    def layers(self):
        return self.outline.layers

    @abc.abstractmethod
    def run(self, what: str, function: Callable, *args, **kwargs):
        """``function(model, *args, **kwargs)`` where the model is, and its result here.

        Args:
            what: the pass in words, for messages ("predicting", "computing the heatmap").
            function: a module-level function (it travels by name), taking the model first.

        Raises:
            TLError: whatever the pass raised on purpose, or why it could not finish
                (a time or memory limit, a worker that died), in words.
        """
