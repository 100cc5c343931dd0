"""Transfer Lab: `streamlit run app.py` serves the dashboard (so does `uvicorn app:app`).

The router (navigation over pages/ and the shared sidebar) is app/streamlit_app.py. It lives
in a folder of its own because Streamlit 1.67 takes a ``pages/`` folder *beside* the script it
runs for its legacy multipage mode, which breaks a deep link opened first on a fresh server
and every AppTest (see that file). This file only names that script as the app.
"""

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

import tlcore
from ui import script_folder
from ui.upload_gate import UploadGate

script_folder.keep_on_sys_path()  # before the first script run: no run edits sys.path under a thread's import


@contextlib.asynccontextmanager
async def lifespan(_app: st.App) -> AsyncIterator[None]:
    """When the server stops, the local Ray instance it started for training stops with it, and its
    temporary files (TensorFlow's autograph sources among them) go with its temporary folder: stopped by
    a signal, the process ends without running exit handlers. A killed server's folder goes when the
    next one starts."""
    temporary = tlcore.own_temp_folder(tlcore.SERVER_TEMP_PREFIX)
    try:
        yield None
    finally:
        try:
            if "ray" in sys.modules:  # training ran here (stopping must not import TensorFlow for nothing)
                tlcore.disconnect_ray()
        finally:
            tlcore.give_back_temp_folder(temporary)


app = st.App(
    Path(__file__).resolve().parent / "app" / "streamlit_app.py",
    middleware=[Middleware(UploadGate)],  # no uploads before the password or sign-in (ui/upload_gate.py)
    lifespan=lifespan,
)
