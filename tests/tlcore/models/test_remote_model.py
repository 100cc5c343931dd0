"""``RemoteModel``: the outline answers questions about the model here; a place to run passes must say how."""

import types

import pytest

from tlcore.models.remote import RemoteModel


def test_a_remote_model_that_cannot_run_passes_cannot_be_made():
    class Nowhere(RemoteModel):
        pass

    with pytest.raises(TypeError, match="abstract method run"):
        Nowhere()


def test_shape_questions_are_answered_by_the_outline_and_passes_go_through_run():
    class Here(RemoteModel):
        def __init__(self, outline):
            self.outline = outline

        def run(self, what, function, *args, **kwargs):
            return function(self.outline, *args, **kwargs)

    outline = types.SimpleNamespace(name="tiny", input="x", inputs=["x"], output="y", outputs=["y"], layers=["a", "b"])
    model = Here(outline)
    assert (model.name, model.input, model.inputs, model.output, model.outputs, model.layers) == (
        "tiny", "x", ["x"], "y", ["y"], ["a", "b"])
    assert model.run("counting", lambda m, extra: len(m.layers) + extra, 3) == 5
