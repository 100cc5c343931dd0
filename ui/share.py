"""A visible "Copy link" on every view that can be shared.

Every choice on a page lives in its address (``ui.state.to_url``), so the address *is* the share
link: the button copies what the browser shows at the moment it is clicked (a choice made after the
button was drawn is in it too), and says so. Where the browser refuses the clipboard (a page served
over plain http from another machine), the link is put in a text box, selected, to copy by hand.
"""

from __future__ import annotations

import re

import streamlit as st

LABEL = "Copy link"
HELP = "Copies this page's address: it opens this same view, with every choice made here, for whoever you send it to."
COPIED = "Link copied. Paste it to a teammate: it opens this view with every choice made here."

_STYLE = ("display:inline-flex;align-items:center;gap:.35rem;padding:.25rem .75rem;min-height:2.25rem;"
          "border:1px solid rgba(49,51,63,.2);border-radius:.5rem;background:#fff;color:inherit;"
          "font:inherit;cursor:pointer;white-space:nowrap")

_ICON = ('<svg aria-hidden="true" width="18" height="18" viewBox="0 0 24 24" fill="currentColor"><path d="M3.9 12c0-1.71 '
         '1.39-3.1 3.1-3.1h4V7H7c-2.76 0-5 2.24-5 5s2.24 5 5 5h4v-1.9H7c-1.71 0-3.1-1.39-3.1-3.1zM8 13h8v-2H8v2zm9-6'
         'h-4v1.9h4c1.71 0 3.1 1.39 3.1 3.1s-1.39 3.1-3.1 3.1h-4V17h4c2.76 0 5-2.24 5-5s-2.24-5-5-5z"/></svg>')
"""Material's "link" icon, drawn inline (no font or emoji needed)."""


def copy_link(key: str, what: str = "this view") -> None:
    """Draw the "Copy link" button for ``what`` (e.g. "this run"); ``key`` is unique on the page.

    Args:
        key: letters, digits and dashes naming this button on the page (its HTML id).
        what: what the link opens, in words, for the button's tooltip.
    """
    if not re.fullmatch(r"[A-Za-z0-9-]{1,40}", key):
        raise ValueError(f"A share button's key must be 1 to 40 letters, digits or dashes. Received: {key!r}")
    tip = HELP.replace("this same view", what).replace('"', "&quot;")
    st.html(f"""
<div class="tl-share" data-testid="tl-share">
  <button type="button" id="tl-share-{key}" title="{tip}" style="{_STYLE}">{_ICON}<span>{LABEL}</span></button>
  <span id="tl-share-{key}-said" role="status" style="margin-left:.6rem;font-size:.875rem;opacity:.8"></span>
</div>
<script>
(function () {{
  const button = document.getElementById("tl-share-{key}");
  const said = document.getElementById("tl-share-{key}-said");
  if (!button) return;
  button.onclick = async function () {{
    const link = window.location.href;
    try {{
      await navigator.clipboard.writeText(link);
      said.textContent = "{COPIED}";
    }} catch (refused) {{
      said.textContent = "";
      const box = document.createElement("input");
      box.value = link; box.readOnly = true; box.size = Math.min(link.length, 60);
      box.setAttribute("aria-label", "This view's link");
      said.appendChild(document.createTextNode("Copy this link: "));
      said.appendChild(box);
      box.select();
    }}
    button.dataset.copied = link;
  }};
}})();
</script>""", width="content", unsafe_allow_javascript=True)
