"""No uploads before sign-in: an ASGI middleware in front of Streamlit's upload endpoint.

Streamlit stores a file ``PUT`` to ``/_stcore/upload_file/<session id>/<file id>`` in the
server's memory for any live session that sends a matching XSRF cookie and header, which
the client itself sets: a visitor still on the password page could fill the server's
memory (6 x 200 MiB gave +1.26 GB, issue 23). With a password or a sign-in configured,
this middleware answers 403 to every upload from a session that has not passed the gate
(``ui.access.may_upload``), before the request's body is read. ``app.py`` installs it.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import PlainTextResponse

from ui import access

UPLOAD_PATH = re.compile(r"/_stcore/upload_file/(?P<session_id>[^/]+)/[^/]+/?$")
"""Streamlit's upload route (under any base URL path)."""
REFUSED = "Uploads are accepted once you have signed in. Received: an upload from a session that has not."


class UploadGate:
    """Pure ASGI middleware: refuse uploads from sessions that have not passed the gate."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("PUT", "POST"):
            found = UPLOAD_PATH.search(scope["path"])
            if found and not access.may_upload(found["session_id"]):
                await PlainTextResponse(REFUSED, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
