"""The click a page is handling, by id: a second click before the page changed is the same request.

Streamlit reruns the page on a second click and interrupts the first run between its Streamlit calls,
so work the first run queued may never reach its page. Queues and boards that take a ``request``
(``JobQueue.submit``, ``TaskBoard.start``) answer the same work for the same id.
"""

from __future__ import annotations

import uuid

import streamlit as st


def click_request(button: str) -> str:
    """The request id of a click on ``button``: the same until ``handled(button)``."""
    return st.session_state.setdefault(f"request-{button}", uuid.uuid4().hex)


def handled(button: str) -> None:
    """The click on ``button`` reached its page: the next one is a new request."""
    st.session_state[f"request-{button}"] = uuid.uuid4().hex


def render_request() -> str:
    """A request id for a button with a callback, made when the button is drawn: clicks on that drawing
    share it, clicks after the page is drawn again do not."""
    return uuid.uuid4().hex
