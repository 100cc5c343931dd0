"""AppTest: each page's "Keras code" panel holds the program for what it shows, and Build's new conv blocks."""

import nbformat
import pytest
from streamlit.testing.v1 import AppTest
from support import APP, RANDOM, open_page

import tlcore


def code_panel(at):
    """The program in the page's "Keras code" panel, and the labels of the downloads beside it."""
    panels = [e for e in at.expander if e.label == "Keras code"]
    assert len(panels) == 1, [e.label for e in at.expander]
    program = panels[0].code[0]
    assert program.language == "python"
    downloads = [d.proto.label for d in panels[0].get("download_button")]
    return program.value.rstrip("\n") + "\n", downloads  # st.code keeps the text; AppTest drops the last newline


@pytest.mark.slow
def test_every_page_shows_the_keras_code_for_its_choices():
    at = open_page("../pages/layers.py", backbone="MobileNetV2", include_top=False, size=96, pooling="avg")
    program, downloads = code_panel(at)
    assert program == tlcore.layers_program("MobileNetV2", False, 96, "avg")
    assert downloads == ["Download .py", "Download notebook (.ipynb)"]

    at.switch_page("../pages/build.py").run()
    assert not at.exception
    program, _ = code_panel(at)
    assert program == tlcore.transfer_program(at.session_state["transfer_spec"])
    assert "base = MobileNetV2(weights=None, include_top=False" in program

    at.switch_page("../pages/train.py").run()
    assert not at.exception
    program, _ = code_panel(at)
    assert "model.fit(train_ds" in program and "keras.optimizers.Adam(0.001)" in program
    assert "input_shape=(224, 224, 3)" in program  # the Build page's model

    at.switch_page("../pages/predict.py").run()
    assert not at.exception
    program, _ = code_panel(at)
    assert program == tlcore.prediction_program("MobileNetV2", weights=None, mode="crop")
    assert "decode_predictions(probabilities, top=5)" in program

    at.switch_page("../pages/features.py").run()
    assert not at.exception
    program, _ = code_panel(at)
    assert 'network.get_layer("global_average_pooling2d")' in program and "np.linalg.svd" in program


@pytest.mark.slow
def test_build_adds_convolutional_blocks_from_a_link_and_explains_a_head_that_does_not_fit():
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in dict(weights=RANDOM, backbone="VGG16", preset="128", conv_blocks="2", conv_filters="32",
                           conv_pool="2").items():
        at.query_params[key] = value
    at.run()
    at.switch_page("../pages/build.py").run()
    assert not at.exception and not at.error
    assert at.number_input(key="conv_blocks").value == 2
    spec = at.session_state["transfer_spec"]
    assert (spec.conv_blocks, spec.conv_filters, spec.conv_kernel, spec.conv_pool) == (2, 32, 3, 2)
    assert "4x4x512" in at.success[0].value and "the new convolutional blocks make it **1x1x32**" in at.success[0].value
    names = set(at.dataframe[0].value["name"])
    assert {"head_conv_1", "head_conv_pool_1", "head_conv_2", "head_conv_pool_2"} <= names
    program, _ = code_panel(at)
    assert 'name=f"head_conv_{block}"' in program and "range(1, 3)" in program
    assert at.query_params["conv_blocks"] == "2"

    at.selectbox(key="preset").set_value("48").run()  # the article's size
    assert "at least 4x4 for 2 convolutional blocks" in at.error[0].value
    assert "The smallest input that works is 128x128" in at.error[0].value
    at.number_input(key="conv_blocks").set_value(0).run()
    at.number_input(key="pool_size").set_value(4).run()  # the article's AveragePooling2D(4) head
    assert "An average pooling of 4x4 must fit the feature map leaving the base" in at.error[0].value


@pytest.mark.slow
def test_a_linked_conv_value_outside_the_widget_falls_back_with_a_notice():
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in dict(weights=RANDOM, backbone="VGG16", preset="128", conv_blocks="9").items():
        at.query_params[key] = value
    at.run()
    at.switch_page("../pages/build.py").run()
    assert at.number_input(key="conv_blocks").value == 0
    assert "`conv_blocks` must be a whole number from 0 to 4" in "\n".join(t.value for t in at.toast)


def test_the_notebook_download_is_a_valid_notebook_of_the_program():
    program = tlcore.transfer_program(tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(96, 96, 3)))
    notebook = nbformat.reads(tlcore.as_notebook(program).decode(), as_version=4)
    nbformat.validate(notebook)
    assert "".join(cell.source for cell in notebook.cells if cell.cell_type == "code").count("base") >= 3
