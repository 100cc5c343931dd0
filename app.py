"""Transfer Lab: the router. Shared sidebar, then the chosen page."""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from ui import sidebar  # noqa: E402

st.set_page_config(page_title="Transfer Lab", page_icon=":material/science:", layout="wide")

PAGES = {
    "Learn": [st.Page("views/home.py", title="Home", icon=":material/home:", default=True)],
    "Reuse a pretrained network": [
        st.Page("views/predict.py", title="Predict", icon=":material/image_search:", url_path="predict"),
        st.Page("views/features.py", title="Features", icon=":material/scatter_plot:", url_path="features"),
        st.Page("views/layers.py", title="Layers", icon=":material/layers:", url_path="layers"),
        st.Page("views/build.py", title="Build", icon=":material/construction:", url_path="build"),
    ],
    "Train on your images": [
        st.Page("views/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        st.Page("views/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
    ],
}

page = st.navigation(PAGES)
sidebar.render()
try:
    page.run()
except Exception:  # Streamlit's own stop/rerun signals are BaseExceptions and pass through
    logging.getLogger("transfer_lab").exception("Unexpected error on the %s page", page.title)
    st.error(
        "Something went wrong on this page. The details are in the server log; nothing you "
        "saved is lost. Try again, or undo the last change you made."
    )
