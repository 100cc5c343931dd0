"""Every control on Home, Predict, Features, Layers and the sidebar has a one-line help in plain words."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = ["pages/home.py", "pages/predict.py", "pages/features.py", "pages/layers.py", "ui/sidebar.py",
         "ui/precision.py", "ui/first_screen.py", "ui/grad_cam.py", "ui/network_views.py", "ui/dataset_map.py",
         "ui/batch.py", "ui/demo.py", "ui/access.py", "ui/samples.py", "ui/classifiers.py", "ui/workers.py"]
WIDGETS = {"button", "download_button", "checkbox", "toggle", "radio", "selectbox", "multiselect", "slider",
           "select_slider", "number_input", "text_input", "text_area", "file_uploader", "camera_input",
           "segmented_control", "pills", "page_link", "color_picker", "date_input"}
JARGON = ("penultimate", "logits", "tensor", "None,", "dtype")


def controls(path: Path):
    """(line, widget, help text or None) for each Streamlit control drawn in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WIDGETS:
            helps = [k.value for k in node.keywords if k.arg == "help"]
            text = None
            if helps:
                text = ast.unparse(helps[0])
            yield node.lineno, node.func.attr, text


@pytest.mark.parametrize("name", FILES)
def test_every_control_has_a_help(name):
    missing = [f"{name}:{line} st.{widget}" for line, widget, text in controls(ROOT / name) if text is None]
    assert not missing, f"controls without help=: {missing}"


@pytest.mark.parametrize("name", FILES)
def test_helps_are_plain_words(name):
    for line, widget, text in controls(ROOT / name):
        if text is None or not text.startswith(("'", '"')):
            continue  # a computed help: its parts are checked where they are written
        words = ast.literal_eval(text)
        assert 20 <= len(words) <= 400, f"{name}:{line} st.{widget}: help of {len(words)} characters"
        assert not any(term in words for term in JARGON), f"{name}:{line} st.{widget}: {words!r}"
