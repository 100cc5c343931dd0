"""Widget state that lives in the URL, so a pasted link reopens the same view."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

import streamlit as st


def boolean(raw: str) -> bool:
    """``"True"`` or ``"False"`` (what ``to_url`` writes for a toggle) as a bool."""
    if raw not in ("True", "False"):
        raise ValueError(f"not True or False: {raw!r}")
    return raw == "True"


def from_url(key: str, default: Any, *, cast: Callable[[str], Any] = str,
             choices: Sequence[Any] | None = None, bounds: tuple[float, float] | None = None,
             accepted: str | None = None) -> None:
    """Seed ``st.session_state[key]`` from the URL (once), for a widget with that key.

    A linked value the widget could not take (one that cannot be cast, is not among
    ``choices``, or lies outside ``bounds``, the widget's own (min, max)) is not used: the
    widget starts at ``default``, and a notice names the parameter, the value received and
    what is accepted, so the page still opens with the control that fixes it.

    Args:
        key: the widget's key and the URL parameter's name.
        default: the value used when the URL has none, or one that is not accepted.
        cast: turns the URL's text into the widget's type; raises ValueError if it cannot.
        choices: the values the widget offers, if it is a choice.
        bounds: the widget's (min_value, max_value), inclusive, if it is a number.
        accepted: what is accepted, in words, when the default wording would be unclear.
    """
    if key in st.session_state:
        return
    value = default
    raw = st.query_params.get(key)
    if raw is not None:
        try:
            value = cast(raw)
            ok = choices is None or value in choices
            if bounds is not None:
                ok = ok and not (isinstance(value, float) and math.isnan(value))
                ok = ok and bounds[0] <= value <= bounds[1]
        except (ValueError, TypeError):
            ok = False
        if not ok:
            value = default
            link_notice(key, raw, accepted or _accepted(cast, choices, bounds), default)
    st.session_state[key] = value


def link_notice(key: str, raw: str, accepted: str, default: Any) -> None:
    """Tell the user that the link's ``key=raw`` was not used, what is accepted, and what is used.

    Whoever made the link chose ``raw``: it is shown literally, as code (``code``), never read
    as Markdown, so ``?run=[sign in again](http://evil)`` shows those characters, not a link;
    a value whose spaces or unprintable characters would not show is quoted (``received``).
    """
    st.toast(f"**{code(f'{key}={received(raw)}')} in this link was not used:** `{key}` must be {accepted}. "
             f"Using {_shown(default)}.",
             icon=":material/link_off:", duration="infinite")


def gone_notice(what: str) -> None:
    """Tell the user that ``what`` this session had open is no longer on the server (deleted elsewhere)."""
    st.toast(f"{what} you had open is no longer on this server (deleted, perhaps in another tab or by someone "
             "else): showing another.", icon=":material/delete:")


def forget_gone(key: str, offered: Collection[Any], what: str) -> None:
    """Drop ``key``'s value when this session chose it and it is no longer offered (its run deleted since),
    with the copy ``to_url`` wrote into the address (not a link's value: ``from_url`` then judges none), and
    say so in those words rather than as a bad link."""
    if key in st.session_state and st.session_state[key] not in offered:
        gone = st.session_state.pop(key)
        if st.query_params.get(key) == str(gone):
            del st.query_params[key]
        gone_notice(what)


def received(raw: str) -> str:
    r"""A link's value as a notice shows it: as it is when every character shows, else quoted, Python style.

    A value that is empty, has spaces at either end or two in a row, holds a quote, or holds characters
    that do not print (a new line, a tab, a no-break space, a bidi override) is written as a Python
    string literal (``repr``): ``'128 '``, ``'max\n'``, ``'a\xa0b'``, with a space after a space as
    ``\x20`` (a browser shows a run of spaces as one). So ``?preset=128%20`` never reads as ``128``.
    A value longer than 60 characters is cut to 57 and followed by ``...``.
    """
    cut = raw if len(raw) <= 60 else raw[:57]
    more = "" if cut == raw else "..."
    if cut and cut.isprintable() and cut == cut.strip() and "  " not in cut and not {"'", '"'} & set(cut):
        return cut + more
    return re.sub("(?<= ) ", r"\\x20", repr(cut)) + more


def code(text: object) -> str:
    """``text`` as a Markdown code span that shows exactly its characters, on one line.

    The span's fence is one backtick longer than the longest run of backticks inside, so
    no backtick in ``text`` can end it (CommonMark); line breaks become spaces (a new line
    could start a heading or a list) and other characters that do not print become U+FFFD.
    """
    line = "".join(c if c.isprintable() else "\ufffd" for c in " ".join(str(text).split()))
    fence = "`" * (max((len(run) for run in re.findall("`+", line)), default=0) + 1)
    pad = " " if line[:1] == "`" or line[-1:] == "`" else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def _accepted(cast: Callable[[str], Any], choices: Sequence[Any] | None,
              bounds: tuple[float, float] | None) -> str:
    if choices is not None:
        shown = [str(c) for c in choices]
        if len(shown) > 12:
            return f"one of {len(shown)} values ({', '.join(shown[:3])}, ..., {shown[-1]})"
        return "one of " + ", ".join(shown)
    kind = "a whole number" if cast is int else "a number" if cast is float else "a value"
    if bounds is not None:
        return f"{kind} from {bounds[0]} to {bounds[1]}"
    return kind


def _shown(default: Any) -> str:
    return "the default" if default is None else f"the default, {code(default)}"


def to_url(*keys: str) -> None:
    """Write these session-state values into the URL's query string."""
    for key in keys:
        value = st.session_state.get(key)
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)
