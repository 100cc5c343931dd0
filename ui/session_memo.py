"""Answers a session keeps: computed once per key, the most recently used few kept, the oldest forgotten.

Predict's top-5 and Grad-CAM heatmaps are worked out once per model, image, class, layer and fit in a
session (issue 18): a rerun, a page switch and back, or a choice made again shows the kept answer. Each
kind keeps a bounded number, so one session cannot hoard the server's memory. (``st.cache_data`` would
share answers across sessions and hash the model; these belong to one person's session.)
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

T = TypeVar("T")


def remembered(kind: str, key: Hashable, compute: Callable[[], T], *, keep: int) -> T:
    """``compute()``'s answer for ``key``, computed only when this session has none kept.

    Args:
        kind: which answers (their session-state key), e.g. "_grad_cam_heatmaps".
        key: what the answer depends on (model, image, class...); equal keys share it.
        compute: works the answer out; an error it raises is not kept.
        keep: how many answers of this kind the session keeps; beyond that the least recently
            used is forgotten.
    """
    kept = st.session_state.setdefault(kind, collections.OrderedDict())
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    answer = compute()
    kept[key] = answer
    while len(kept) > keep:
        kept.popitem(last=False)
    return answer
