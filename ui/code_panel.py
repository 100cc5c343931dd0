"""The "Keras code" panel: the program behind what a page shows, to copy or download."""

from __future__ import annotations

import streamlit as st

import tlcore


@st.cache_data(max_entries=32, show_spinner=False)
def _notebook(program: str) -> bytes:
    return tlcore.as_notebook(program)


def code_panel(title: str, program: str, file_stem: str) -> None:
    """Show ``program`` (from ``tlcore.code``) in an expander, with .py and .ipynb downloads.

    Args:
        title: the expander's label.
        program: the program's text.
        file_stem: the downloaded files' name without the extension.
    """
    with st.expander(title, icon=":material/code:"):
        st.caption("The shortest Keras 3 program that does what this page shows with its current choices. "
                   "Copy it with the button at the code's corner, or download it.")
        st.code(program, language="python")
        left, right = st.columns(2)
        left.download_button("Download .py", program.encode(), f"{file_stem}.py", "text/x-python",
                             key=f"code-py-{file_stem}", on_click="ignore", icon=":material/download:")
        right.download_button("Download notebook (.ipynb)", _notebook(program), f"{file_stem}.ipynb",
                              "application/x-ipynb+json", key=f"code-ipynb-{file_stem}", on_click="ignore",
                              icon=":material/download:")
