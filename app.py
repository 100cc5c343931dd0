"""Transfer Lab: the router. Shared sidebar, then the chosen page."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import streamlit as st  # noqa: E402

from ui import sidebar  # noqa: E402

st.set_page_config(page_title="Transfer Lab", page_icon="🧪", layout="wide")

PAGES = {
    "Learn": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "Reuse a pretrained network": [
        st.Page("pages/predict.py", title="Predict", icon="🔮", url_path="predict"),
        st.Page("pages/features.py", title="Features", icon="🧬", url_path="features"),
        st.Page("pages/layers.py", title="Layers", icon="🧱", url_path="layers"),
        st.Page("pages/build.py", title="Build", icon="🛠️", url_path="build"),
    ],
}

page = st.navigation(PAGES)
sidebar.render()
page.run()
