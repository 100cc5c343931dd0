"""Long measurements that outlive a page: a transfer curve or a head sweep, in a server thread.

A page starts a ``Task`` on the server's ``TaskBoard`` and puts its id in the URL; the task
goes on when the page is left or the tab closed, and whoever opens the link sees its progress
and then its result (which is also kept on disk by its key, so a later link still opens it).
The task calls the function it was given (``transfer_curve``, ``head_sweep``) with
``use_ray=True``: the work itself runs in Ray tasks and trials.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from tlcore.core.answers import Answers
from tlcore.core.errors import TLError

RUNNING, DONE, FAILED = "running", "done", "failed"


class Task:
    """One call of ``function(**arguments, <progress>=...)`` in a daemon thread, with its last progress."""

    def __init__(self, kind: str, function: Callable[..., Any], arguments: dict[str, Any], *, progress: str,
                 owner: str = ""):
        self.id, self.kind, self.owner = uuid.uuid4().hex[:12], kind, owner
        self.state, self.progress, self.result, self.error = RUNNING, None, None, None
        self.started, self.finished_at = time.monotonic(), None
        self._thread = threading.Thread(target=self._run, args=(function, {**arguments, progress: self._report}),
                                        name=f"{kind}-{self.id}", daemon=True)
        self._thread.start()

    def _report(self, *values: Any) -> None:
        self.progress = values[0] if len(values) == 1 else values

    def _run(self, function: Callable[..., Any], arguments: dict[str, Any]) -> None:
        try:
            self.result = function(**arguments)
            self.state = DONE
        except TLError as exc:
            self.error, self.state = str(exc), FAILED
        except Exception as exc:  # a bug or the machine: log it, tell the user plainly
            traceback.print_exc()
            self.error = f"The {self.kind} failed unexpectedly ({type(exc).__name__}); the details are in the server log."
            self.state = FAILED
        self.finished_at = time.monotonic()

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started

    def wait(self, timeout: float | None = None) -> Task:
        self._thread.join(timeout)
        return self


class TaskBoard:
    """The server's tasks by id; at most ``max_running`` at once, the last ``keep`` finished ones kept."""

    def __init__(self, max_running: int = 2, keep: int = 16):
        self.max_running, self.keep = max_running, keep
        self._tasks: dict[str, Task] = {}
        self._answers = Answers()  # request id -> the task it started
        self._lock = threading.Lock()

    def start(self, kind: str, function: Callable[..., Any], arguments: dict[str, Any], *, progress: str,
              owner: str = "", request: str | None = None) -> Task:
        """Start a task, or raise ConfigError (in words) when ``max_running`` already run.

        ``request`` is the id of the click that asked for it: started again with the same id (a button
        clicked twice before the page changed), it returns the task the first call started."""
        from tlcore.core.errors import ConfigError

        with self._lock:
            if (answered := self._answers.get(request)) is not None:
                return answered
            running = [task for task in self._tasks.values() if task.state == RUNNING]
            if len(running) >= self.max_running:
                raise ConfigError(f"At most {self.max_running} curves and sweeps run at once on this server. "
                                  f"Received: a new {kind} while {len(running)} run; try again when one ends")
            task = Task(kind, function, arguments, progress=progress, owner=owner)
            self._tasks[task.id] = task
            self._answers.keep(request, task)
            finished = [old for old in self._tasks.values() if old.state != RUNNING]
            for old in finished[: max(0, len(finished) - self.keep)]:
                del self._tasks[old.id]
            return task

    def get(self, task_id: str | None) -> Task | None:
        return self._tasks.get(task_id or "")
