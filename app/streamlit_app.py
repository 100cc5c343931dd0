"""Transfer Lab: the router. Shared sidebar, then the chosen page.

This entrypoint has a folder of its own, app/, on purpose. Streamlit 1.67 decides once
per server process, when the first session starts, whether this is a legacy pages/-folder
app: ``PagesManager.uses_pages_directory`` becomes whether a ``pages`` folder exists beside
the entrypoint, and while it is true every script run goes through ``_mpa_v1`` (file names
as navigation, a linked page run without this router). Only ``st.navigation`` clears it,
which a fresh server whose first request is a deep link never reaches; AppTest even resets
it before every run. With no ``pages`` folder beside this file it is false from the start.
Page paths are relative to this file, as Streamlit resolves them: ``../pages/predict.py``.
"""

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `ui` and `tlcore` live one folder up
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from ui import access, keras_reset, script_folder  # noqa: E402  (plain Python: no TensorFlow, no Ray)

# app.py did it at start; here for a server started on this file (spelled as Streamlit spells it), and AppTest
script_folder.keep_on_sys_path(os.path.dirname(os.path.abspath(__file__)))

keras_reset.install()  # Streamlit's reset of Keras after each run, without a full gc.collect() each time

st.set_page_config(page_title="Transfer Lab", page_icon=":material/science:", layout="wide")
access.gate()  # the password or sign-in first, when TL_PASSWORD or [auth] is set (ui/access.py)

from ui import sidebar  # noqa: E402  (Keras and the models: only for visitors past the gate)

PAGES = {
    "Learn": [st.Page("../pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Reuse a pretrained network": [
        st.Page("../pages/predict.py", title="Predict", icon=":material/image_search:", url_path="predict"),
        st.Page("../pages/features.py", title="Features", icon=":material/scatter_plot:", url_path="features"),
        st.Page("../pages/layers.py", title="Layers", icon=":material/layers:", url_path="layers"),
        st.Page("../pages/build.py", title="Build", icon=":material/construction:", url_path="build"),
    ],
    "Train on your images": [
        st.Page("../pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        st.Page("../pages/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
    ],
}

page = st.navigation(PAGES)
sidebar.render(page.url_path)
try:
    page.run()
except Exception:  # Streamlit's own stop/rerun signals are BaseExceptions and pass through
    logging.getLogger("transfer_lab").exception("Unexpected error on the %s page", page.title)
    st.error(
        "Something went wrong on this page. The details are in the server log; nothing you "
        "saved is lost. Try again, or undo the last change you made."
    )
