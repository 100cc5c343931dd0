"""Predict computes a Grad-CAM heatmap once per model, image, class, layer and fit in a session (issue 18),
and a session keeps only a bounded number of them."""

import pytest
from support import open_page

import tlcore
from ui import grad_cam

pytestmark = pytest.mark.slow  # opens Predict (MobileNetV2 at 224 px) and computes Grad-CAM


@pytest.fixture
def cam_calls(monkeypatch):
    """Every call of tlcore.grad_cam the pages make, as (class id, layer, fit), the real map still computed."""
    calls, real = [], tlcore.grad_cam

    def spy(model, image, class_id, **kwargs):
        calls.append((int(class_id), kwargs.get("layer"), kwargs.get("mode")))
        return real(model, image, class_id, **kwargs)

    monkeypatch.setattr(tlcore, "grad_cam", spy)
    return calls


def _picker(at):
    return next(box for box in at.selectbox if box.label == "Heatmap for")


def _heat_caption(at) -> str:
    return at.image[-1].captions[0]


def test_reruns_page_switches_and_a_class_chosen_again_do_not_compute_the_heatmap_again(cam_calls):
    at = open_page("../pages/predict.py", backbone="MobileNetV2", sample="cat")
    assert not at.exception
    top = at.table[0].value
    first, third = int(top["class_id"].iloc[0]), int(top["class_id"].iloc[2])
    assert [c for c, _, _ in cam_calls] == [first]
    shown = _heat_caption(at)

    for _ in range(3):
        at.run()
    assert len(cam_calls) == 1 and _heat_caption(at) == shown  # reruns show the kept map

    _picker(at).set_value(third).run()
    assert [c for c, _, _ in cam_calls] == [first, third]
    _picker(at).set_value(first).run()  # chosen again: kept
    assert len(cam_calls) == 2 and _heat_caption(at) == shown

    at.switch_page("../pages/layers.py").run()
    at.switch_page("../pages/predict.py").run()
    assert not at.exception and len(cam_calls) == 2

    at.radio(key="fit").set_value("squash").run()  # another fit: another input, another map
    assert len(cam_calls) == 3 and cam_calls[-1][2] == "squash"
    at.selectbox(key="sample").set_value("rocket").run()  # another image
    assert len(cam_calls) == 4


def test_a_session_keeps_at_most_the_bound_and_forgets_the_oldest(cam_calls, monkeypatch):
    monkeypatch.setattr(grad_cam, "HEATMAPS_KEPT", 2)
    at = open_page("../pages/predict.py", backbone="MobileNetV2", sample="cat")
    classes = [int(c) for c in at.table[0].value["class_id"]]
    for class_id in classes[1:3]:
        _picker(at).set_value(class_id).run()
    assert [c for c, _, _ in cam_calls] == classes[:3]
    kept = at.session_state[grad_cam._HEATMAPS]
    assert [key[2] for key in kept] == classes[1:3]  # the two most recent; the first was forgotten
    assert all(heat.shape == (224, 224) for heat in kept.values())

    _picker(at).set_value(classes[2]).run()  # still kept
    assert len(cam_calls) == 3
    _picker(at).set_value(classes[0]).run()  # forgotten: computed again
    assert [c for c, _, _ in cam_calls] == [*classes[:3], classes[0]]


def test_the_top_5_is_worked_out_once_per_model_image_fit_and_precision(monkeypatch):
    calls, real = [], tlcore.predict_top_k

    def spy(model, image, **kwargs):
        calls.append((kwargs.get("mode"), kwargs.get("precision")))
        return real(model, image, **kwargs)

    monkeypatch.setattr(tlcore, "predict_top_k", spy)
    at = open_page("../pages/predict.py", backbone="MobileNetV2", sample="cat")
    table = at.table[0].value
    assert len(calls) == 1
    for _ in range(3):
        at.run()
    at.switch_page("../pages/layers.py").run()
    at.switch_page("../pages/predict.py").run()
    assert not at.exception and len(calls) == 1
    assert at.table[0].value.equals(table)  # the kept table, shown again

    at.toggle(key="force_float32").set_value(True).run()  # another precision asked for: worked out again
    assert len(calls) == 2
    at.radio(key="fit").set_value("squash").run()
    assert len(calls) == 3 and calls[-1][0] == "squash"
