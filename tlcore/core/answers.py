"""What was answered to each request id: a click sent twice gets the first answer again.

A Streamlit page reruns on a second click and may have lost the first run's answer (``ui/clicks.py``);
the job queue and the task board keep their answers here, by the click's id. Plain Python; callers lock.
"""

from __future__ import annotations

from typing import Any

KEPT_ANSWERS = 1_000
"""Answers remembered, the oldest forgotten first."""


class Answers:
    """The answers to the last ``KEPT_ANSWERS`` request ids."""

    def __init__(self) -> None:
        self._by_request: dict[str, Any] = {}

    def get(self, request: str | None) -> Any | None:
        """The answer given to ``request``, or None (also for no request)."""
        return None if request is None else self._by_request.get(request)

    def keep(self, request: str | None, answer: Any) -> None:
        """Remember ``answer`` for ``request`` (nothing for no request)."""
        if request is None:
            return
        self._by_request[request] = answer
        while len(self._by_request) > KEPT_ANSWERS:
            self._by_request.pop(next(iter(self._by_request)))
