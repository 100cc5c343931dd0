"""Widget state that lives in the URL, so a pasted link reopens the same view."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st


def from_url(key: str, default: Any, *, cast: Callable[[str], Any] = str,
             choices: Sequence[Any] | None = None) -> None:
    """Seed ``st.session_state[key]`` from the URL (once), for a widget with that key.

    A value the URL gives that cannot be cast, or is not among ``choices``,
    is ignored in favour of ``default``.
    """
    if key in st.session_state:
        return
    value = default
    raw = st.query_params.get(key)
    if raw is not None:
        try:
            value = cast(raw)
        except ValueError:
            value = default
        if choices is not None and value not in choices:
            value = default
    st.session_state[key] = value


def to_url(*keys: str) -> None:
    """Write these session-state values into the URL's query string."""
    for key in keys:
        value = st.session_state.get(key)
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)
